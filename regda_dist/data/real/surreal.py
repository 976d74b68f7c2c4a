"""SURREAL (synthetic bodies), the reference's processed crops: {train,val,test}/run{0,1,2}.json
(lists of {name, keypoint2d 24x2, keypoint3d, intrinsic_matrix}) with images under
{split}/run{i}/. SMPL-24 joints -> Body16 (MPII order); every keypoint has weight 1 (keypoints
outside the crop drop out in the heatmap encoder); the whole image is the crop.

Joint mapping. The reference maps (7,4,1,2,5,8,0,9,12,15,20,18,13,14,19,21): SMPL "L_*" joints
to MPII "r_*" for every limb. That left/right swap is consistent over all twelve limb joints and
matches a swap users report between SURREAL's stored 2D joints and SMPL's joint names
(gulvarol/surreal#10); with no SURREAL copy here to look at, it is kept as the reference has it.
Its shoulders are wrong: 13/14 are SMPL's collar (clavicle) joints, between the neck and the
shoulder; the shoulders are 16/17. `surreal` uses 16/17; `surreal_faithful` keeps the collars.

Splits: train = train/, val = val/, test = the reference's seed-42 rule on test/ (first
min(20%, 3200)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regda_dist.data.io import field_array, read_json, require_dir
from regda_dist.data.keypoints import BODY16, KeypointSpec
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample, reference_split

FAITHFUL = (7, 4, 1, 2, 5, 8, 0, 9, 12, 15, 20, 18, 13, 14, 19, 21)
CLEAN = (7, 4, 1, 2, 5, 8, 0, 9, 12, 15, 20, 18, 16, 17, 19, 21)  # shoulders, not collars


def read_split(root: Path, split: str, joints: tuple[int, ...]) -> list[Sample]:
    folder = require_dir(root / split, f"SURREAL {split} split")
    files = [folder / f"run{i}.json" for i in range(3)]
    missing = [f for f in files if not f.is_file()]
    if missing:  # a partial copy would silently train on part of the data
        raise DatasetError(f"{missing[0]}: missing file (SURREAL {split} annotations, run0-2)")
    samples = []
    for file in files:
        entries = read_json(file, f"SURREAL {split} annotations")
        if not isinstance(entries, list):
            raise DatasetError(f"{file}: expected a list of samples")
        for i, entry in enumerate(entries):
            where = f"{file}: sample {i}"
            if not isinstance(entry, dict) or not {"name", "keypoint2d"} <= entry.keys():
                raise DatasetError(f"{where}: needs 'name' and 'keypoint2d'")
            kp = field_array(entry["keypoint2d"], (24, 2), where, "keypoint2d")[list(joints)]
            image = folder / file.stem / entry["name"]
            samples.append(Sample(image, kp, np.ones(16, np.float32)))
    return samples


def _read(root: Path, spec: KeypointSpec, joints: tuple[int, ...], name: str) -> Domain:
    _, test = reference_split(read_split(root, "test", joints))
    splits = {
        "train": read_split(root, "train", joints),
        "val": read_split(root, "val", joints),
        "test": test,
    }
    notes = [f"SMPL-24 -> Body16 with shoulders from joints {joints[12]}/{joints[13]}"]
    return Domain(name, spec, splits, notes)


_LAYOUT = "{train,val,test}/run{0,1,2}.json + {split}/run{i}/ images"


@register_dataset("surreal", BODY16, _LAYOUT)
def read(root: Path, spec: KeypointSpec) -> Domain:
    return _read(root, spec, CLEAN, "surreal")


@register_dataset("surreal_faithful", BODY16, _LAYOUT + " (reference mapping: collars)")
def read_faithful(root: Path, spec: KeypointSpec) -> Domain:
    return _read(root, spec, FAITHFUL, "surreal_faithful")
