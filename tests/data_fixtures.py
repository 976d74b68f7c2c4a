"""Tiny datasets in the public layouts (real file formats), for the reader tests.

Each image is black with a white 5 x 5 marker centred on one keypoint (the "marked" one), so a
test can find where a crop moved it. Keypoints are given in continuous pixel coordinates: the
marker covering pixels p-2..p+2 has its centre at p + 0.5.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def marked_image(path: Path, size: tuple[int, int], point, fmt: str | None = None) -> None:
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    px, py = int(point[0]), int(point[1])
    pixels[max(py - 2, 0) : py + 3, max(px - 2, 0) : px + 3] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt, quality=100 if fmt == "JPEG" else None)


def hand(origin, scale: float) -> np.ndarray:
    """A (21, 2) hand in OUR order (wrist, then each finger MCP -> tip), spread out."""
    kp = np.zeros((21, 2))
    kp[0] = origin
    for f in range(5):
        for j in range(4):
            kp[1 + 4 * f + j] = origin + scale * np.array([(f - 2) * 0.3, -0.4 - 0.25 * j])
    return kp + 0.5  # centres of pixels


def _rhd_order(kp: np.ndarray) -> np.ndarray:
    """Our hand order -> RHD's (each finger tip -> MCP)."""
    out = kp.copy()
    for f in range(5):
        out[1 + 4 * f : 5 + 4 * f] = kp[1 + 4 * f : 5 + 4 * f][::-1]
    return out


def write_rhd(root: Path) -> dict:
    """training: 0 = a big left hand (kept) + tiny right hand (too small); 1 = a big right hand
    (kept, flipped) + a left hand with 16 visible keypoints (dropped); 2 = two overlapping hands
    (both dropped). evaluation: 0 = one left hand. Returns our-order keypoints by (set, id)."""
    base = root / "RHD_published_v2"
    far = hand(np.array([300.0, 300.0]), 10)
    big_left, big_right = hand(np.array([100.0, 200.0]), 100), hand(np.array([220.0, 220.0]), 90)
    layouts = {
        "training": [
            (big_left, far, 21, 21),
            (big_right - [100, 0], big_right, 16, 21),
            (big_left, big_left + 5, 21, 21),
        ],
        "evaluation": [(big_left, far, 21, 21)],
    }
    for name, hands in layouts.items():
        anno = {}
        for i, (left, right, vis_l, vis_r) in enumerate(hands):
            uv_vis = np.zeros((42, 3))
            uv_vis[:21, :2], uv_vis[21:, :2] = _rhd_order(left), _rhd_order(right)
            uv_vis[:vis_l, 2], uv_vis[21 : 21 + vis_r, 2] = 1, 1
            anno[i] = {"uv_vis": uv_vis, "xyz": np.zeros((42, 3)), "K": np.eye(3)}
            marked = left if i == 0 else right
            marked_image(base / name / "color" / f"{i:05d}.png", (320, 320), marked[0])
        with (base / name / f"anno_{name}.pickle").open("wb") as f:
            pickle.dump(anno, f)
    return {"left": big_left, "right": big_right}


def write_h3d(root: Path, n: int = 10) -> list[np.ndarray]:
    """n kept samples (without_object 1) + 1 dropped; 80 x 60 images, marker on the wrist."""
    base = root / "H3D_crop"
    entries, kps = [], []
    for i in range(n + 1):
        kp = hand(np.array([30.0 + i, 50.0]), 30)
        name = f"part{1 + i % 5}/{i:04d}.png"
        marked_image(base / name, (80, 60), kp[0])
        entries.append(
            {
                "name": name,
                "keypoint2d": kp.tolist(),
                "keypoint3d": [[0, 0, 1]] * 21,
                "intrinsic_matrix": np.eye(3).tolist(),
                "without_object": int(i < n),
            }
        )
        kps.append(kp)
    (base / "annotation.json").write_text(json.dumps(entries))
    return kps[:n]


def write_freihand(root: Path, frames: int = 5, versions: int = 2) -> list[np.ndarray]:
    """training_K/xyz.json with 2D = K xyz projected; JPEGs for `versions` colourisations."""
    k = np.array([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 1]])
    ks, xyzs, uvs = [], [], []
    for i in range(frames):
        uv = hand(np.array([60.0 + 3 * i, 90.0]), 60)
        xyz = np.concatenate([uv / 100.0 * 2.0, np.full((21, 1), 2.0)], axis=1)
        ks.append(k.tolist())
        xyzs.append(xyz.tolist())
        uvs.append(uv)
        for v in range(versions):
            path = root / "training" / "rgb" / f"{i + frames * v:08d}.jpg"
            marked_image(path, (224, 224), uv[0], "JPEG")
    (root / "training_K.json").write_text(json.dumps(ks))
    (root / "training_xyz.json").write_text(json.dumps(xyzs))
    return uvs


def smpl_pose(i: int) -> np.ndarray:
    """(24, 2): joint j at a distinct position inside a 64 x 64 image."""
    j = np.arange(24)
    return np.stack([4.0 + 2 * j + i, 10.0 + j], axis=1) + 0.5


def write_surreal(root: Path, sizes=(("train", 4), ("val", 2), ("test", 5))) -> None:
    for split, n in sizes:
        entries = []
        for i in range(n):
            kp = smpl_pose(i)
            name = f"img_{i}.png"
            marked_image(root / split / "run0" / name, (64, 64), kp[16])
            entries.append(
                {
                    "name": name,
                    "keypoint2d": kp.tolist(),
                    "keypoint3d": [[0, 0, 1]] * 24,
                    "intrinsic_matrix": np.eye(3).tolist(),
                }
            )
        (root / split / "run0.json").write_text(json.dumps(entries))
        for run in ("run1", "run2"):  # the release has three runs; the reader needs all three
            (root / split / f"{run}.json").write_text("[]")


def write_lsp(root: Path, n: int = 3) -> np.ndarray:
    """60 x 40 images; joints 3 x 14 x n with flag 1 (invisible) on joint 2 of image 0."""
    from scipy.io import savemat

    joints = np.zeros((3, 14, n))
    for i in range(n):
        joints[0, :, i] = 5 + 3 * np.arange(14) + i + 0.5
        joints[1, :, i] = 8 + np.arange(14) + 0.5
        marked_image(root / "images" / f"im{i + 1:04d}.jpg", (60, 40), joints[:2, 0, i], "JPEG")
    joints[2, 2, 0] = 1
    savemat(root / "joints.mat", {"joints": joints})
    return joints


H36M_SUBJECTS = (1, 5, 6, 7, 8, 9, 11)


def write_human36m(root: Path, images_per_subject: int = 6) -> None:
    """Camera R = I, t = 0, f = 100, c = 50: a world joint (x, y, 5) lands at 20 (x, y) + 50.
    Joint j of image i projects to the pixel centre (34.5 + 2j + i, 20.5 + 3j); the marker
    sits on joint 3 (H36M's right foot)."""
    ann = root / "annotations"
    ann.mkdir(parents=True)
    j = np.arange(17)
    for s in H36M_SUBJECTS:
        images, joints = [], {"2": {"1": {}}}
        for i in range(images_per_subject):
            uv = np.stack([34.5 + 2 * j + i, 20.5 + 3 * j], 1)
            world = np.concatenate([(uv - 50) / 20, np.full((17, 1), 5.0)], 1)
            joints["2"]["1"][str(i)] = world.tolist()
            name = f"s_{s:02d}/{i:06d}.png"
            images.append(
                {"id": i, "file_name": name, "action_idx": 2, "subaction_idx": 1,
                 "frame_idx": i, "cam_idx": 1}
            )  # fmt: skip
            marked_image(root / "images" / name, (100, 100), uv[3])
        (ann / f"Human36M_subject{s}_data.json").write_text(json.dumps({"images": images}))
        camera = {"1": {"R": np.eye(3).tolist(), "t": [0, 0, 0], "f": [100, 100], "c": [50, 50]}}
        (ann / f"Human36M_subject{s}_camera.json").write_text(json.dumps(camera))
        (ann / f"Human36M_subject{s}_joint_3d.json").write_text(json.dumps(joints))


COCO_PERSON = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]


def write_coco(root: Path, splits=("train", "test"), n: int = 3) -> None:
    """COCO person keypoints (17) on 50 x 40 images: bbox on even annotations, none on odd."""
    for split in splits:
        images, anns = [], []
        for i in range(n):
            kp = np.stack([10 + 2 * np.arange(17) + 0.5, 5 + np.arange(17) + 0.5], 1)
            v = np.full(17, 2)
            v[0] = 0
            name = f"{split}_{i}.png"
            marked_image(root / "images" / name, (50, 40), kp[15])  # left_ankle
            images.append({"id": 10 + i, "file_name": name, "width": 50, "height": 40})
            triples = np.concatenate([kp, v[:, None]], 1).ravel().tolist()
            ann = {"id": 100 + i, "image_id": 10 + i, "category_id": 1, "keypoints": triples}
            if i % 2 == 0:
                ann["bbox"] = [10, 5, 32, 16]
            anns.append(ann)
        anns.append(
            {"id": 999, "image_id": 10, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 51}
        )
        cat = {"id": 1, "name": "person", "keypoints": COCO_PERSON, "skeleton": [[16, 14]]}
        data = {"images": images, "annotations": anns, "categories": [cat]}
        (root / f"{split}.json").write_text(json.dumps(data))
