"""What a real-dataset reader produces: labelled samples of one domain, split, plus the shared
box and split rules of the reference (REGDA_SPEC.md section 5)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regda_dist.data.keypoints import KeypointSpec

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or malformed; the message names the file."""


@dataclass
class Sample:
    """One labelled crop: the image file, keypoints (K, 2) in the file's pixels, per-keypoint
    weights (K,) (0 = invisible or not labelled), the square crop box (x0, y0, side) in the
    file's pixels (it may reach outside the image: zero padding; None = the whole image,
    aspect-preserving resize + pad), a horizontal flip of the crop (right hands made left), and
    the longer side of the annotation's own box in the file's pixels, where the dataset gives
    one (COCO's bbox: the PCK normaliser of train.pck_normalize 'bbox')."""

    image: Path
    keypoints: np.ndarray
    weight: np.ndarray
    box: tuple[int, int, int] | None = None
    flip: bool = False
    bbox_side: float | None = None


@dataclass
class Domain:
    """Every split of one dataset on disk, in one keypoint definition."""

    name: str
    spec: KeypointSpec
    splits: dict[str, list[Sample]]
    notes: list[str] = field(default_factory=list)  # how splits were made, caveats


def square_box(keypoints: np.ndarray, weight: np.ndarray, scale: float) -> tuple[int, int, int]:
    """Square box around the labelled keypoints: side = scale x the longer side of their box,
    centred on it; integer so that crops and keypoints move by exactly the same offset."""
    pts = keypoints[weight > 0] if (weight > 0).any() else keypoints
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2
    side = max(1, int(round(scale * float((hi - lo).max()))))
    return int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2)), side


def image_box(width: int, height: int) -> tuple[int, int, int]:
    """The whole image as a square box: aspect-preserving resize + zero pad (centred)."""
    side = max(width, height)
    return (width - side) // 2, (height - side) // 2, side


def reference_split(items: list, seed: int = 42) -> tuple[list, list]:
    """(train, test): a seed-42 shuffle; test = the first min(20%, 3200), train = the rest.
    Python's `random` as the reference uses it, so the same input order gives its test set."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_test = min(int(len(items) * 0.2), 3200)
    return items[n_test:], items[:n_test]


def carve_val(train: list, seed: int = 43) -> tuple[list, list]:
    """(train, val) for datasets without a val split: val = min(10%, 1000) (at least 1) of a
    seeded shuffle of train; train keeps its order without them."""
    n_val = max(1, min(len(train) // 10, 1000))
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    return [s for i, s in enumerate(train) if i not in held], [train[i] for i in order[:n_val]]
