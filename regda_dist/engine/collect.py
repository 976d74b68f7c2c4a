"""Collect what the proxies read from a model on one split (proxies/base.py: SplitOutputs).

Labelled splits (source) also give per-sample loss and PCK hits; a label-free split (target, an
`ImagesOnly` view) gives predictions only. Augmented views for consistency: the image rotated by
each angle in VIEW_ANGLES about its centre; predictions are mapped back to the original frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from regda_dist.data import heatmap
from regda_dist.engine.loader import ordered
from regda_dist.losses import joints_kl
from regda_dist.metrics import correct_keypoints
from regda_dist.proxies.base import SplitOutputs

VIEW_ANGLES = (-15.0, 15.0)  # degrees


def _view_matrix(angle_deg: float) -> torch.Tensor:
    """(2, 2) map from a view's normalised coordinates to the original image's."""
    a = math.radians(angle_deg)
    return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _to_normalised(coords: torch.Tensor, image_size: int, stride: float) -> torch.Tensor:
    return (2 * coords.float() * stride + 1) / image_size - 1  # align_corners=False convention


def _to_heatmap(normalised: torch.Tensor, image_size: int, stride: float) -> torch.Tensor:
    return ((normalised + 1) * image_size - 1) / 2 / stride


def _heads(model, x):
    feature = model.features(x)  # (B, C, H, W)
    return model.head(feature), model.head_adv(feature), feature.mean(dim=(2, 3))


@torch.no_grad()
def collect(
    model, dataset, *, labelled: bool, image_size: int, sigma: float, threshold: float,
    batch_size: int = 64,
) -> SplitOutputs:  # fmt: skip
    """Outputs of `model` (eval mode) on every sample of `dataset`. labelled: items are
    (image, keypoints, visible), and loss/PCK hits are collected; otherwise images only, and the
    rotated views are collected. threshold: PCK radius, heatmap px."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list] = {k: [] for k in SplitOutputs.__dataclass_fields__}
    for item in ordered(dataset, batch_size):
        x = (item[0] if labelled else item).to(device)
        y, y_adv, pooled = _heads(model, x)
        coords, _ = heatmap.decode(y)
        parts["coords"].append(coords.cpu())
        parts["scores"].append(F.softmax(y.flatten(2), dim=-1).amax(dim=-1).cpu())
        parts["coords_adv"].append(heatmap.decode(y_adv)[0].cpu())
        parts["features"].append(pooled.cpu())
        if labelled:
            kp, vis = item[1], item[2]
            target, weight = heatmap.encode(kp, vis, image_size, y.shape[-1], sigma)
            parts["loss"].append(joints_kl(y.cpu(), target, weight, reduce=False).mean(dim=1))
            centres, valid = heatmap.targets(kp, vis, image_size, y.shape[-1])
            parts["correct"].append(correct_keypoints(y.cpu(), centres, valid, threshold))
            parts["valid"].append(valid)
        else:
            parts["coords_aug"].append(_views(model, x, image_size, image_size / y.shape[-1]))
    for m, mode in modes.items():
        m.train(mode)
    out = {k: torch.cat(v, dim=1 if k == "coords_aug" else 0) for k, v in parts.items() if v}
    return SplitOutputs(**out)


def _views(model, x, image_size: int, stride: float) -> torch.Tensor:
    """(V, B, K, 2) keypoints predicted on rotated copies of x, in the original heatmap frame."""
    out = []
    for angle in VIEW_ANGLES:
        m = _view_matrix(angle).to(x.device)
        theta = torch.cat((m, torch.zeros(2, 1, device=x.device)), dim=1).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        y = model.head(model.features(F.grid_sample(x, grid, align_corners=False)))
        coords_view = _to_normalised(heatmap.decode(y)[0], image_size, stride)  # (B, K, 2)
        back = coords_view @ m.T  # view frame -> original frame (normalised)
        out.append(_to_heatmap(back, image_size, stride).cpu())
    return torch.stack(out)
