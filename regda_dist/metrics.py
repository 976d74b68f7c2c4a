"""PCK with evaluation groups, accumulated as a global correct / total ratio."""

from __future__ import annotations

import torch

from regda_dist.data import heatmap


def correct_keypoints(
    logits: torch.Tensor, target_centres: torch.Tensor, valid: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Per keypoint: 1 if the argmax lies within `threshold` heatmap px of the target centre.

    Shape: logits (B, K, H, W), target_centres (B, K, 2), valid (B, K) -> (B, K) bool (False where
    not valid). No sub-pixel refinement and no flip test, as in the reference.
    """
    pred, _ = heatmap.decode(logits)
    dist = (pred - target_centres).float().norm(dim=-1)
    return (dist < threshold) & valid.bool()


class PCK:
    """Correct / valid counts per keypoint; reports PCK per group and "all" (0-100 scale)."""

    def __init__(self, groups: dict[str, tuple[int, ...]], num_keypoints: int, threshold: float):
        if not threshold > 0:  # also rejects NaN
            raise ValueError(f"PCK threshold must be > 0, got {threshold!r}")
        self.groups, self.threshold = groups, threshold
        self.correct = torch.zeros(num_keypoints, dtype=torch.long)
        self.total = torch.zeros(num_keypoints, dtype=torch.long)

    def update(self, logits, target_centres, valid):
        ok = correct_keypoints(logits, target_centres, valid, self.threshold)
        self.correct += ok.sum(dim=0).cpu()
        self.total += valid.bool().sum(dim=0).cpu()

    def compute(self) -> dict[str, float]:
        out = {}
        for name, index in self.groups.items():
            total = int(self.total[list(index)].sum())
            correct = int(self.correct[list(index)].sum())
            out[name] = 100.0 * correct / total if total else float("nan")
        return out
