"""COCO keypoint folders of synthetic photographs, written by the benchmarks themselves (no
dataset on the machines): 1000 x 1000 JPEGs like Human3.6M frames and 320 x 320 PNGs like RHD
crops, with a Body16-named person box in each. Image content is smooth colour noise with shapes,
so JPEG decoding costs about what it costs on photographs (not on flat images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from regda_dist.data.keypoints import BODY16

KINDS = {"jpeg1000": (1000, "JPEG", ".jpg"), "png320": (320, "PNG", ".png")}


def _image(rng: np.random.Generator, size: int) -> Image.Image:
    coarse = rng.integers(0, 256, (size // 25 + 2, size // 25 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 40, size // 8))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return image


def write_folder(root: Path, kind: str, n: int, seed: int = 0) -> Path:
    """root/<kind>/{train,test}.json + images/: n train and n // 4 test annotations."""
    size, fmt, suffix = KINDS[kind]
    folder = root / kind
    rng = np.random.default_rng(seed)
    category = {
        "id": 1,
        "name": "person",
        "keypoints": list(BODY16.names),
        "skeleton": [[a + 1, b + 1] for a, b in BODY16.skeleton],
    }
    for split, count in (("train", n), ("test", max(1, n // 4))):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            name = f"{split}/{i:05d}{suffix}"
            _image(rng, size).save(folder / "images" / name, format=fmt, quality=90)
            side = rng.uniform(0.3, 0.6) * size  # the person's box
            x0, y0 = rng.uniform(0, size - side, 2)
            kp = np.column_stack([rng.uniform(x0, x0 + side, 16), rng.uniform(y0, y0 + side, 16)])
            triples = np.column_stack([kp, np.full(16, 2)]).ravel().tolist()
            images.append({"id": i, "file_name": name, "width": size, "height": size})
            annotations.append(
                {
                    "id": i,
                    "image_id": i,
                    "category_id": 1,
                    "keypoints": triples,
                    "bbox": [x0, y0, side, side],
                    "iscrowd": 0,
                }
            )
        data = {"images": images, "annotations": annotations, "categories": [category]}
        (folder / f"{split}.json").write_text(json.dumps(data))
    return folder
