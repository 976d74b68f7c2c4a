"""FreiHAND (real, 21 keypoints), the FreiHAND_pub_v2 training set.

training_K.json (N intrinsics 3x3) and training_xyz.json (N x 21x3, camera space, already
MCP -> tip per finger); images training/rgb/%08d.jpg, where frame i exists in up to four
colourisations, ids i + N * v (v = 0..3). 2D keypoints = K @ xyz projected. Crop: the square
1.5x keypoint box; FreiHAND hands are right hands, so every crop is flipped to look left (as the
reference does). Split: the seed-42 rule over FRAMES (test = first min(20%, 3200)), so the
colourisations of a frame never straddle train and test (the reference splits images and lets
them leak); val is carved from the training frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regda_dist.data.io import field_array, read_json, require_dir
from regda_dist.data.keypoints import HAND21, KeypointSpec
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import (
    DatasetError,
    Domain,
    Sample,
    carve_val,
    reference_split,
    square_box,
)


def project(xyz: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Camera-space points (21, 3) -> pixels (21, 2)."""
    uvw = xyz @ k.T
    return uvw[:, :2] / uvw[:, 2:]


def read_frames(root: Path) -> list[np.ndarray]:
    """2D keypoints of every frame."""
    ks = read_json(root / "training_K.json", "FreiHAND intrinsics")
    xyzs = read_json(root / "training_xyz.json", "FreiHAND 3D keypoints")
    if not isinstance(ks, list) or not isinstance(xyzs, list) or len(ks) != len(xyzs):
        raise DatasetError(
            f"{root / 'training_xyz.json'}: must be a list as long as training_K.json's"
        )
    frames = []
    for i, (k, xyz) in enumerate(zip(ks, xyzs, strict=True)):
        k = field_array(k, (3, 3), f"{root / 'training_K.json'}: frame {i}", "K")
        xyz = field_array(xyz, (21, 3), f"{root / 'training_xyz.json'}: frame {i}", "xyz")
        frames.append(project(xyz, k))
    return frames


def samples_of(frames: list[int], uv: list[np.ndarray], rgb: Path, versions: list[int]):
    n, out = len(uv), []
    for v in versions:
        for i in frames:
            box = square_box(uv[i], np.ones(21), 1.5)
            out.append(
                Sample(rgb / f"{i + n * v:08d}.jpg", uv[i], np.ones(21, np.float32), box, True)
            )
    return out


@register_dataset("freihand", HAND21, "training_K.json, training_xyz.json, training/rgb/%08d.jpg")
def read(root: Path, spec: KeypointSpec) -> Domain:
    uv = read_frames(root)
    rgb = require_dir(root / "training" / "rgb", "FreiHAND images")
    versions = [v for v in range(4) if (rgb / f"{len(uv) * v:08d}.jpg").is_file()]
    if not versions:
        raise DatasetError(f"{rgb / '00000000.jpg'}: missing image (first frame)")
    train, test = reference_split(range(len(uv)))
    train, val = carve_val(train)
    splits = {
        name: samples_of(frames, uv, rgb, versions)
        for name, frames in (("train", train), ("val", val), ("test", test))
    }
    notes = [f"{len(uv)} frames x {len(versions)} colourisations; split by frame (seed 42)"]
    return Domain("freihand", spec, splits, notes)
