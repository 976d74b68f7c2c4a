"""Human3.6M (real bodies, manual download), the per-subject annotation layout:
annotations/Human36M_subject{S}_data.json ('images': [{file_name, action_idx, subaction_idx,
frame_idx, cam_idx}]), _camera.json (cam_idx -> {R, t, f, c}) and _joint_3d.json
(action -> subaction -> frame -> 17x3 world joints), images under images/.

The reference's pre-cropped copy is read too, where a subject has no _data.json:
annotations/keypoints2d_{S}.json (a list of {name, keypoint2d 16x2 in Body16 order}) with images
under crop_images/; each such image is its own crop.

Every 5th image of a subject's list is a sample (as the reference). World joints are projected
with the camera; H36M-17 -> Body16 by (3,2,1,4,5,6,0,_,8,10,16,15,14,11,12,13), thorax = the
midpoint of the shoulders; every keypoint has weight 1. The crop is the square 1.5x keypoint
box, cut at load time (no pre-cropped copy is written). Subjects 1, 5, 6, 7, 8 train (a seeded
val carve-out), 9 and 11 test: a seed-42 shuffle, first 3200 (the reference draws 3200 WITH
replacement).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from regda_dist.data.io import field_array, read_json, require_dir
from regda_dist.data.keypoints import BODY16, KeypointSpec
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample, carve_val, square_box

TRAIN_SUBJECTS = (1, 5, 6, 7, 8)
TEST_SUBJECTS = (9, 11)
JOINTS = (3, 2, 1, 4, 5, 6, 0, 0, 8, 10, 16, 15, 14, 11, 12, 13)  # index 7 (thorax) replaced


def project(world: np.ndarray, camera: dict, where: str) -> np.ndarray:
    """World joints (17, 3) -> pixels (17, 2)."""
    r = field_array(camera.get("R"), (3, 3), where, "R")
    t = field_array(camera.get("t"), (3,), where, "t")
    f = field_array(camera.get("f"), (2,), where, "f")
    c = field_array(camera.get("c"), (2,), where, "c")
    cam = world @ r.T + t
    return cam[:, :2] / cam[:, 2:] * f + c


def _lookup(joints: dict, image: dict, where: str):
    try:
        return joints[str(image["action_idx"])][str(image["subaction_idx"])][
            str(image["frame_idx"])
        ]
    except (KeyError, TypeError):
        raise DatasetError(
            f"{where}: no 3D joints for this image's action/subaction/frame"
        ) from None


def read_cropped(root: Path, subject: int) -> list[Sample]:
    """The reference's preprocessed subject: keypoints2d_{S}.json + crop_images/."""
    file = root / "annotations" / f"keypoints2d_{subject}.json"
    entries = read_json(file, f"Human3.6M subject {subject} (pre-cropped)")
    if not isinstance(entries, list):
        raise DatasetError(f"{file}: expected a list of samples")
    samples = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "keypoint2d"} <= entry.keys():
            raise DatasetError(f"{file}: sample {i}: needs 'name' and 'keypoint2d'")
        kp = field_array(entry["keypoint2d"], (16, 2), f"{file}: sample {i}", "keypoint2d")
        samples.append(Sample(root / "crop_images" / entry["name"], kp, np.ones(16, np.float32)))
    return samples


def read_subject(root: Path, subject: int) -> list[Sample]:
    ann = root / "annotations"
    stem = f"Human36M_subject{subject}"
    if (
        not (ann / f"{stem}_data.json").is_file()
        and (ann / f"keypoints2d_{subject}.json").is_file()
    ):
        return read_cropped(root, subject)
    data = read_json(ann / f"{stem}_data.json", f"Human3.6M subject {subject} images")
    cameras = read_json(ann / f"{stem}_camera.json", f"Human3.6M subject {subject} cameras")
    joints = read_json(ann / f"{stem}_joint_3d.json", f"Human3.6M subject {subject} joints")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{ann / f'{stem}_data.json'}: needs an 'images' list")
    samples = []
    for i, image in enumerate(data["images"][::5]):
        where = f"{ann / f'{stem}_data.json'}: image {5 * i}"
        if not isinstance(image, dict) or "file_name" not in image:
            raise DatasetError(f"{where}: needs 'file_name'")
        world = field_array(_lookup(joints, image, where), (17, 3), where, "3D joints")
        camera = cameras.get(str(image.get("cam_idx"))) if isinstance(cameras, dict) else None
        if not isinstance(camera, dict):
            raise DatasetError(f"{where}: camera {image.get('cam_idx')!r} not in _camera.json")
        kp = project(world, camera, f"{ann / f'{stem}_camera.json'}: camera")[list(JOINTS)]
        kp[7] = (kp[12] + kp[13]) / 2  # thorax
        box = square_box(kp, np.ones(16), 1.5)
        samples.append(
            Sample(root / "images" / image["file_name"], kp, np.ones(16, np.float32), box)
        )
    return samples


@register_dataset(
    "human36m", BODY16, "annotations/Human36M_subject{S}_{data,camera,joint_3d}.json + images/"
)
def read(root: Path, spec: KeypointSpec) -> Domain:
    require_dir(root / "annotations", "Human3.6M annotations")
    train = [s for subject in TRAIN_SUBJECTS for s in read_subject(root, subject)]
    test = [s for subject in TEST_SUBJECTS for s in read_subject(root, subject)]
    random.Random(42).shuffle(test)
    train, val = carve_val(train)
    notes = ["train subjects 1,5,6,7,8 (val carved out), test subjects 9,11 (<= 3200, seed 42)"]
    return Domain("human36m", spec, {"train": train, "val": val, "test": test[:3200]}, notes)
