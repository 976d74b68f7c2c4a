"""RHD (Rendered Hand Pose, synthetic, 21 keypoints), the RHD_published_v2 layout.

training/ and evaluation/ each hold color/%05d.png and anno_<set>.pickle: id -> {'uv_vis' 42x3
(left hand rows 0-20, right hand 21-41, per finger tip -> MCP), 'xyz', 'K'}. Each hand that
passes the reference's filter is a sample: its 1.5x square box is > 64 px (clipped to the
320 px image), > 16 of its 21 keypoints are visible, and the box overlaps the other hand's
keypoint box by < 30%. Keypoints are re-indexed so each finger runs MCP -> tip; right hands are
flipped to look like left ones. The crop is the square 1.5x box (zero padding outside the image,
where the reference squeezes the clipped box). train = training/ minus a seeded val carve-out
(samples.carve_val), test = evaluation/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regda_dist.data.io import field_array, read_pickle, require_dir
from regda_dist.data.keypoints import HAND21, KeypointSpec
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample, carve_val, square_box

IMAGE_SIZE = 320
# RHD runs each finger tip -> MCP; ours runs MCP -> tip.
LEFT = np.array([0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17])
RIGHT = LEFT + 21


def _clipped(box: tuple[int, int, int]) -> tuple[float, float, float, float]:
    x0, y0, side = box
    return max(x0, 0), max(y0, 0), min(x0 + side, IMAGE_SIZE), min(y0 + side, IMAGE_SIZE)


def _area(x0, y0, x1, y1) -> float:
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def keep_hand(uv: np.ndarray, vis: np.ndarray, other: np.ndarray) -> bool:
    """The reference's sample filter for one hand (uv (21, 2), vis (21,)) next to `other`."""
    box = _clipped(square_box(uv, np.ones(21), 1.5))
    size = max(box[2] - box[0], box[3] - box[1])
    lo, hi = other.min(axis=0), other.max(axis=0)
    inter = (max(box[0], lo[0]), max(box[1], lo[1]), min(box[2], hi[0]), min(box[3], hi[1]))
    overlap = _area(*inter) / max(_area(*box), 1e-9)
    return size > 64 and vis.sum() > 16 and overlap < 0.3


def read_set(root: Path, name: str) -> list[Sample]:
    """Samples of one set ('training' or 'evaluation')."""
    folder = require_dir(root / name, f"RHD {name} set")
    anno_file = folder / f"anno_{name}.pickle"
    annotations = read_pickle(anno_file, f"RHD {name} annotations")
    if not isinstance(annotations, dict):
        raise DatasetError(f"{anno_file}: expected a dict id -> annotation")
    samples = []
    for key in sorted(annotations):
        where = f"{anno_file}: sample {key}"
        anno = annotations[key]
        if not isinstance(anno, dict) or "uv_vis" not in anno:
            raise DatasetError(f"{where}: no 'uv_vis'")
        uv_vis = field_array(anno["uv_vis"], (42, 3), where, "uv_vis")
        image = folder / "color" / f"{int(key):05d}.png"
        for rows, other, flip in ((LEFT, RIGHT, False), (RIGHT, LEFT, True)):
            uv, vis = uv_vis[rows, :2], uv_vis[rows, 2]
            if keep_hand(uv, vis, uv_vis[other, :2]):
                box = square_box(uv, np.ones(21), 1.5)
                samples.append(Sample(image, uv, (vis > 0).astype(np.float32), box, flip))
    return samples


@register_dataset("rhd", HAND21, "RHD_published_v2/{training,evaluation}/anno_*.pickle + color/")
def read(root: Path, spec: KeypointSpec) -> Domain:
    if (root / "RHD_published_v2").is_dir():
        root = root / "RHD_published_v2"
    train, val = carve_val(read_set(root, "training"))
    test = read_set(root, "evaluation")
    notes = ["train = training/ minus val (a seeded 10% carve-out, <= 1000); test = evaluation/"]
    return Domain("rhd", spec, {"train": train, "val": val, "test": test}, notes)
