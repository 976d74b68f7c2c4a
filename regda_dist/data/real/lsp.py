"""LSP (Leeds Sports Pose, real bodies, target only): images/im0001.jpg.. + joints.mat.

joints.mat holds 'joints' 3 x 14 x N (x, y, invisible flag): weight = 1 - flag. LSP-14 ->
Body16 by (0,1,2,3,4,5,13,13,12,13,6,7,8,9,10,11); pelvis and thorax have no LSP joint and are
weight-0 fillers. Each image is resized whole, aspect preserved, and zero-padded to a square.
Like the reference, every split is the whole dataset: LSP's target-train set IS its test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regda_dist.data.io import read_mat, require_dir
from regda_dist.data.keypoints import BODY16, KeypointSpec
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample

JOINTS = (0, 1, 2, 3, 4, 5, 13, 13, 12, 13, 6, 7, 8, 9, 10, 11)
FILLERS = (6, 7)  # pelvis, thorax


@register_dataset("lsp", BODY16, "images/im%04d.jpg + joints.mat ('joints' 3x14xN)")
def read(root: Path, spec: KeypointSpec) -> Domain:
    images = require_dir(root / "images", "LSP images")
    file = root / "joints.mat"
    joints = read_mat(file, "joints", "LSP annotations")
    if joints.ndim != 3 or joints.shape[:2] != (3, 14):
        shape = "x".join(map(str, joints.shape))
        raise DatasetError(f"{file}: 'joints' must be 3x14xN (x, y, flag; 14 joints), got {shape}")
    samples = []
    for i in range(joints.shape[2]):
        kp = joints[:2, JOINTS, i].T  # (16, 2)
        weight = (1 - joints[2, JOINTS, i]).astype(np.float32)
        weight[list(FILLERS)] = 0
        samples.append(Sample(images / f"im{i + 1:04d}.jpg", kp, weight))
    notes = ["train = val = test = all images: LSP's target-train set is its test set"]
    return Domain("lsp", spec, {"train": samples, "val": samples, "test": samples}, notes)
