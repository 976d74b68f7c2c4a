"""PCK with evaluation groups, accumulated as a global correct / total ratio."""

from __future__ import annotations

import torch

from regda_dist.data import heatmap


def correct_keypoints(
    logits: torch.Tensor, target_centres: torch.Tensor, valid: torch.Tensor, radius
) -> torch.Tensor:
    """Per keypoint: 1 if the argmax lies within `radius` heatmap px of the target centre.

    Shape: logits (B, K, H, W), target_centres (B, K, 2), valid (B, K), radius a number or
    (B, 1) -> (B, K) bool (False where not valid). No sub-pixel refinement and no flip test, as
    in the reference.
    """
    pred, _ = heatmap.decode(logits)
    dist = (pred - target_centres).float().norm(dim=-1)
    return (dist < radius) & valid.bool()


def pck_radius(
    keypoints,
    valid,
    threshold: float,
    normalize: str,
    image_size: int,
    heatmap_size: int,
    box_side: torch.Tensor | None = None,
):
    """The PCK radius in heatmap px: threshold x the heatmap size ('heatmap', the reference's
    rule), or threshold x each sample's box ('bbox', COCO-style): the longer side of the
    annotation's box where the dataset gives one (box_side (B,), image px, NaN where not), else
    of the box of its labelled keypoints; as (B, 1). keypoints (B, K, 2) image px, valid (B, K)."""
    if not threshold > 0:  # also rejects NaN
        raise ValueError(f"PCK threshold must be > 0, got {threshold!r}")
    if normalize == "heatmap":
        return threshold * heatmap_size
    inf = torch.tensor(float("inf"), device=keypoints.device)
    mask = valid.bool().unsqueeze(-1)  # (B, K, 1)
    lo = torch.where(mask, keypoints, inf).amin(dim=1)
    hi = torch.where(mask, keypoints, -inf).amax(dim=1)
    side = (hi - lo).amax(dim=-1).nan_to_num(0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    if box_side is not None:
        box_side = box_side.to(side.device)
        side = torch.where(torch.isfinite(box_side), box_side, side)
    return (threshold * side * heatmap_size / image_size).unsqueeze(-1)


class PCK:
    """Correct / valid counts per keypoint, kept on the device of the updates; reports PCK per
    group and "all" (0-100 scale). Workers' counts add up (`counts`, summed by the caller)."""

    def __init__(self, groups: dict[str, tuple[int, ...]], num_keypoints: int):
        self.groups = groups
        self.counts = torch.zeros(2, num_keypoints, dtype=torch.long)  # (correct, total)

    def update(self, logits, target_centres, valid, radius):
        ok = correct_keypoints(logits, target_centres, valid, radius)
        self.counts = self.counts.to(ok.device)
        self.counts += torch.stack((ok.sum(dim=0), valid.bool().sum(dim=0)))

    def compute(self) -> dict[str, float]:
        correct, total = self.counts.cpu()
        out = {}
        for name, index in self.groups.items():
            n = int(total[list(index)].sum())
            out[name] = 100.0 * int(correct[list(index)].sum()) / n if n else float("nan")
        return out
