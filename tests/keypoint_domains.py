"""Tiny COCO keypoint domains of sets that are neither hands nor bodies, for the tests.

`write_arm_pair` renders a 7-keypoint robot arm (its own names, bones and groups) as a source
domain (flat grey background, white links) and a target domain (random colours, noise, blur,
other poses); `write_points` writes any list of names (e.g. 68 numbered face landmarks);
`write_categories` writes one folder whose categories share the arm's keypoints, each rendered in
its own style, the way published files hold several species (0-based skeleton, nested keypoints
optional).
Keypoints are drawn as coloured dots whose colour says which keypoint they are, so a small
network can learn them in a few iterations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ARM_NAMES = ["base", "shoulder", "elbow", "wrist", "left_claw", "right_claw", "tool"]
ARM_BONES = [[0, 1], [1, 2], [2, 3], [3, 4], [3, 5], [3, 6]]  # 0-based
ARM_SET = {  # the same set as data.keypoint_set (YAML), by name and by index
    "name": "arm7",
    "names": ARM_NAMES,
    "groups": {"joints": ["shoulder", "elbow", "wrist"], "claws": [4, 5, "tool"]},
    "skeleton": [["base", "shoulder"], ["shoulder", "elbow"], [2, 3], [3, 4], [3, 5], [3, 6]],
    "flip_pairs": [["left_claw", "right_claw"]],
}
SIZE = 32
_DOTS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
         (255, 128, 0)]  # fmt: skip


def arm_poses(n: int, rng: np.random.Generator, spread: float) -> np.ndarray:
    """(n, 7, 2) arms in pixels: a chain base -> shoulder -> elbow -> wrist, two claws and a
    tool at the wrist; `spread` (degrees) is how far the joints bend."""
    out = np.zeros((n, 7, 2))
    for i in range(n):
        p = np.array([rng.uniform(0.35, 0.65) * SIZE, rng.uniform(0.8, 0.9) * SIZE])
        angle = -90 + rng.uniform(-25, 25)
        out[i, 0] = p
        for k, length in ((1, 0.14), (2, 0.2), (3, 0.18)):
            angle += rng.uniform(-spread, spread) if k > 1 else 0
            p = p + length * SIZE * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
            out[i, k] = p
        for k, turn, length in ((4, -45, 0.1), (5, 45, 0.1), (6, 0, 0.13)):
            a = np.radians(angle + turn)
            out[i, k] = p + length * SIZE * np.array([np.cos(a), np.sin(a)])
    return out


def _render(kp: np.ndarray, bones, target: bool, rng: np.random.Generator) -> Image.Image:
    back = tuple(int(c) for c in rng.integers(0, 256, 3)) if target else (90, 90, 90)
    image = Image.new("RGB", (SIZE, SIZE), back)
    draw = ImageDraw.Draw(image)
    link = (220, 200, 60) if target else (255, 255, 255)
    for a, b in bones:
        draw.line([tuple(kp[a]), tuple(kp[b])], fill=link, width=2)
    for k, (x, y) in enumerate(kp):
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=_DOTS[k % len(_DOTS)])
    if not target:
        return image
    noisy = np.asarray(image, np.float64) + rng.normal(0, 18, (SIZE, SIZE, 3))
    image = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(0.5))


def _annotation(i: int, kp: np.ndarray, category_id: int, nested: bool) -> tuple[dict, dict]:
    """(image, annotation) of image i: keypoints visible (v=2) where inside the image, written
    flat [x, y, v, ...] or nested [[x, y, v], ...]."""
    inside = ((kp >= 0) & (kp < SIZE)).all(axis=1)
    triples = [[float(x), float(y), 2] if ok else [0, 0, 0]
               for (x, y), ok in zip(kp, inside, strict=True)]  # fmt: skip
    image = {"id": i, "file_name": f"{i:04d}.png", "width": SIZE, "height": SIZE}
    return image, {"id": i, "image_id": i, "category_id": category_id, "iscrowd": 0,
                   "keypoints": triples if nested else [v for t in triples for v in t],
                   "num_keypoints": int(inside.sum())}  # fmt: skip


def write_coco(
    folder: Path, names: list, bones, poses: dict, *, name: str, target: bool = False, seed: int = 0
) -> Path:
    """folder/{split}.json + folder/images/: one annotation per image, keypoints visible (v=2)
    where inside the image; `poses` maps split -> (n, K, 2) pixels. COCO bones are 1-based."""
    rng = np.random.default_rng(seed)
    category = {"id": 1, "name": name, "keypoints": names,
                "skeleton": [[a + 1, b + 1] for a, b in bones]}  # fmt: skip
    for split, kps in poses.items():
        images, annotations = [], []
        for i, kp in enumerate(kps):
            image, annotation = _annotation(i, kp, 1, nested=False)
            image["file_name"] = f"{split}_{i:03d}.png"
            (folder / "images").mkdir(parents=True, exist_ok=True)
            _render(kp, bones, target, rng).save(folder / "images" / image["file_name"])
            images.append(image)
            annotations.append(annotation)
        data = {"images": images, "annotations": annotations, "categories": [category]}
        (folder / f"{split}.json").write_text(json.dumps(data))
    return folder


# (id, name, target style, joint spread in degrees) of write_categories' two arm "species"
ARM_SPECIES = ((1, "factory_arm", False, 30.0), (2, "field_arm", True, 45.0))


def write_categories(
    folder: Path, n: int = 24, n_eval: int = 8, *, zero_based: bool = True, nested: bool = False
) -> Path:
    """One COCO folder (train, val, test) whose categories (ARM_SPECIES) share the arm's 7
    keypoints, each with n (n_eval) annotations rendered in its own style, plus annotations of a
    category without keypoints ("cable", one per split); skeleton 0-based by default."""
    rng = np.random.default_rng(7)
    base = 0 if zero_based else 1
    categories = [{"id": cid, "name": name, "supercategory": "arm", "keypoints": ARM_NAMES,
                   "skeleton": [[a + base, b + base] for a, b in ARM_BONES]}
                  for cid, name, _, _ in ARM_SPECIES] + [{"id": 9, "name": "cable"}]  # fmt: skip
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for split, m in (("train", n), ("val", n_eval), ("test", n_eval)):
        images, annotations = [], []
        for cid, _, target, spread in ARM_SPECIES:
            for kp in arm_poses(m, rng, spread):
                image, annotation = _annotation(len(images), kp, cid, nested)
                image["file_name"] = f"{split}_{image['file_name']}"
                _render(kp, ARM_BONES, target, rng).save(folder / "images" / image["file_name"])
                images.append(image)
                annotations.append(annotation)
        annotations.append({"id": 999, "image_id": 0, "category_id": 9, "bbox": [1, 1, 4, 4]})
        data = {"images": images, "annotations": annotations, "categories": categories}
        (folder / f"{split}.json").write_text(json.dumps(data))
    return folder


def write_arm_pair(root: Path, n: int = 24, n_eval: int = 8) -> dict[str, Path]:
    """root/source and root/target: the arm rendered plain and styled (train, val, test)."""
    out = {}
    for seed, (domain, spread) in enumerate((("source", 30.0), ("target", 45.0))):
        rng = np.random.default_rng(100 + seed)
        poses = {s: arm_poses(m, rng, spread) for s, m in (("train", n), ("val", n_eval),
                                                          ("test", n_eval))}  # fmt: skip
        out[domain] = write_coco(
            root / domain, ARM_NAMES, ARM_BONES, poses, name="arm7", target=seed == 1, seed=seed
        )
    return out


def write_points(folder: Path, names: list, n: int = 3) -> Path:
    """A domain of len(names) keypoints on an ellipse (e.g. numbered face landmarks), bones
    joining neighbours; train and test."""
    k = len(names)
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ring = np.stack([16 + 12 * np.cos(t), 16 + 9 * np.sin(t)], axis=1)
    bones = [[i, (i + 1) % k] for i in range(k)]
    poses = {s: np.stack([ring + 0.3 * j for j in range(n)]) for s in ("train", "test")}
    return write_coco(folder, list(names), bones, poses, name="points")
