"""H3D (Hand-3D-Studio, real, 21 keypoints), the pre-cropped H3D_crop layout.

annotation.json: a list of {name, keypoint2d 21x2, keypoint3d, intrinsic_matrix,
without_object}; images under part1..part5/ (`name` is relative to the folder). Keeps
without_object == 1 (the reference's default); every keypoint is visible; the whole crop is the
image. Split: the reference's seed-42 rule (test = first min(20%, 3200)); val is carved from
train (samples.carve_val).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regda_dist.data.io import field_array, read_json
from regda_dist.data.keypoints import HAND21, KeypointSpec
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample, carve_val, reference_split


def read_annotations(root: Path) -> list[Sample]:
    file = root / "annotation.json"
    entries = read_json(file, "H3D annotations")
    if not isinstance(entries, list):
        raise DatasetError(f"{file}: expected a list of samples")
    samples = []
    for i, entry in enumerate(entries):
        where = f"{file}: sample {i}"
        if not isinstance(entry, dict) or not {"name", "keypoint2d"} <= entry.keys():
            raise DatasetError(f"{where}: needs 'name' and 'keypoint2d'")
        if int(entry.get("without_object", 1)) != 1:
            continue
        kp = field_array(entry["keypoint2d"], (21, 2), where, "keypoint2d")
        samples.append(Sample(root / entry["name"], kp, np.ones(21, np.float32)))
    return samples


@register_dataset("h3d", HAND21, "H3D_crop/annotation.json + part1..part5/")
def read(root: Path, spec: KeypointSpec) -> Domain:
    if (root / "H3D_crop").is_dir():
        root = root / "H3D_crop"
    train, test = reference_split(read_annotations(root))
    train, val = carve_val(train)
    notes = ["without_object == 1 only; split: seed-42 shuffle, test = first min(20%, 3200)"]
    return Domain("h3d", spec, {"train": train, "val": val, "test": test}, notes)
