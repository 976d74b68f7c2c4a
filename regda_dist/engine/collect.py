"""Collect what the proxies read from a model on one split (proxies/base.py: SplitOutputs).

Labelled splits (source) also give per-sample loss and PCK hits; a label-free split (target, an
`ImagesOnly` view) gives predictions only, plus predictions on augmented views. Each worker
collects its shard on the device; the shards are gathered in dataset order (every worker then
holds the whole split's outputs) and moved to the host once.

Views for consistency (VIEWS): the image rotated, scaled and shifted (zero padding: black, as in
training); predictions on a view are mapped back to the original frame, and a keypoint counts
for a view only where the original prediction lies inside the view's picture. Translation and
scale make a constant prediction disagree with itself (a rotation about the centre alone would
not).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from regda_dist.data import heatmap, views
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.engine.evaluate import Evaluation
from regda_dist.losses import joints_kl
from regda_dist.metrics import correct_keypoints
from regda_dist.proxies.base import SplitOutputs

# (degrees, zoom, shift x, shift y): view pixel u shows original pixel zoom * R u + shift, in
# normalised [-1, 1] image coordinates (zoom < 1: a closer crop; > 1: a wider one). Shifts of
# 10-12% of the image, over twice the PCK radius (5%): a prediction that ignores the image
# lands that far off in every view.
VIEWS = ((-15.0, 0.9, 0.2, -0.15), (15.0, 1.1, -0.15, 0.2), (0.0, 0.8, -0.2, -0.25))
MARGIN = 0.9  # of the view's half-width: keypoints near its border do not count


def _heads(model, x):
    feature = model.features(x)  # (B, C, H, W)
    return model.head(feature), model.head_adv(feature), feature.mean(dim=(2, 3))


@torch.no_grad()
def collect(model, dataset, ev: Evaluation, *, labelled: bool, sigma: float,
            spec: KeypointSpec | None = None) -> SplitOutputs:  # fmt: skip
    """Outputs of `model` (eval mode) on every sample of `dataset`, gathered over workers.
    labelled: items are (image, keypoints, visible), and loss/PCK hits are collected; otherwise
    images only, and the augmented views are collected."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    parts: dict[str, list] = {k: [] for k in SplitOutputs.__dataclass_fields__}
    parts.pop("spec"), parts.pop("radius")
    for item, indices in ev.batches(dataset):
        radius = ev.radius(dataset, indices, item[1], item[2]) if labelled else None
        for key, value in _outputs(model, item, ev, radius, sigma).items():
            parts[key].append(value)
    if not parts["coords"]:  # an empty shard still joins the gathers, with 0 rows
        first, _ = next(ev.batches(Subset(dataset, [0]), shard=False))
        radius = ev.threshold * ev.heatmap_size if labelled else None
        for key, value in _outputs(model, first, ev, radius, sigma).items():
            parts[key].append(value[:0])
    for m, mode in modes.items():
        m.train(mode)
    sizes = ev.sizes(dataset)
    out = {k: ev.runtime.comm.gather(torch.cat(v), sizes).cpu() for k, v in parts.items() if v}
    for key in ("coords_aug", "aug_valid"):
        if key in out:
            out[key] = out[key].transpose(0, 1)  # (V, N, K, ...)
    return SplitOutputs(**out, spec=spec, radius=ev.threshold * ev.heatmap_size)


def _outputs(model, item, ev: Evaluation, radius, sigma: float) -> dict:
    """One batch's outputs, rows first (coords_aug as (B, V, K, 2)); a labelled batch has its
    PCK `radius`, a label-free one None."""
    labelled = radius is not None
    x = item[0] if labelled else item
    with ev.runtime.autocast():
        y, y_adv, pooled = _heads(model, x)
    y, y_adv = y.float(), y_adv.float()
    out = {
        "coords": heatmap.decode(y)[0],
        "scores": F.softmax(y.flatten(2), dim=-1).amax(dim=-1),
        "coords_adv": heatmap.decode(y_adv)[0],
        "features": pooled.float(),
    }
    if labelled:
        kp, vis = item[1], item[2]
        target, weight = heatmap.encode(kp, vis, ev.image_size, y.shape[-1], sigma)
        out["loss"] = joints_kl(y, target, weight, reduce=False).mean(dim=1)
        centres, valid = heatmap.targets(kp, vis, ev.image_size, y.shape[-1])
        out["correct"] = correct_keypoints(y, centres, valid, radius)
        out["valid"] = valid
        out["keypoints"] = kp.float() * y.shape[-1] / ev.image_size  # heatmap px
    else:
        coords_aug, inside = _views(model, x, ev, out["coords"])
        out["coords_aug"], out["aug_valid"] = coords_aug.transpose(0, 1), inside.transpose(0, 1)
    return out


def _views(model, x, ev: Evaluation, coords: torch.Tensor):
    """((V, B, K, 2) keypoints predicted on the views of x, in the original heatmap frame;
    (V, B, K) whether the original prediction `coords` (B, K, 2) lies inside each view)."""
    out, inside = [], []
    size = ev.image_size
    pixels = x.float()  # zero padding: black, the training augmentation's padding
    for angle, zoom, *shift in VIEWS:
        theta = torch.cat((views.view_map(angle, zoom), torch.tensor(shift)[:, None]), dim=1)
        theta = theta.to(x.device).expand(len(x), 2, 3)
        with ev.runtime.autocast():
            y = model.head(model.features(views.warp_images(pixels, theta)))
        stride = size / y.shape[-1]
        seen = heatmap.decode(y.float())[0] * stride  # image px of the view
        out.append(views.points_from_view(seen, theta, size) / stride)  # -> original heatmap
        at = views.to_normalised(views.points_to_view(coords * stride, theta, size), size)
        inside.append((at.abs() < MARGIN).all(dim=-1))
    return torch.stack(out), torch.stack(inside)
