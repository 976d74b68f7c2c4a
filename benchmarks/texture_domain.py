"""A second held-out domain pair: a 10-keypoint lizard seen from above, whose target differs
from its source mostly at the LOW LEVEL (colour and texture), written as COCO folders and read
back through the `coco` reader with `data.keypoints: from_data`.

Source: the flat, clean rendering of the embedded tasks. Target: the same renderer with a mild
version of the embedded target style, then every image's colour channels rotated (skin and
background take other hues) and a high-frequency stripe texture at a random angle laid over
the whole picture; the pose statistics shift only a little. No default of the project was
chosen on it: with benchmarks/heldout_domain.py (a 13-keypoint quadruped, shape and pose
shift) it is where benchmarks/ablation.py looks for why RegDA can trail AdaBN.

    python -m benchmarks texture_domain OUT   # OUT/source, OUT/target: {train,val,test}.json
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from benchmarks import record
from regda_dist.data.coco import export_split
from regda_dist.data.datasets import KeypointDataset
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.data.synthetic import SOURCE_STYLE, Figure, PoseStats, Style, _rot, place, render

NAMES = (
    "snout", "head", "shoulders", "hips", "tail_middle", "tail_tip", "front_left_foot",
    "front_right_foot", "back_left_foot", "back_right_foot",
)  # fmt: skip
BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6), (2, 7), (3, 8), (3, 9))
LIZARD = KeypointSpec(
    "lizard10",
    NAMES,
    {"feet": (6, 7, 8, 9), "spine": (0, 1, 2, 3, 4, 5), "all": tuple(range(10))},
    BONES,
)
FIGURE = Figure(
    LIZARD,
    ((0, 1, 0.1, 0), (1, 2, 0.12, 0), (2, 3, 0.16, 0), (3, 4, 0.1, 0), (4, 5, 0.05, 0))
    + ((2, 6, 0.06, 2), (3, 8, 0.06, 2), (2, 7, 0.06, 1), (3, 9, 0.06, 1)),
    fill=0.8,
)
SOURCE_POSE = PoseStats(rotation=180, flex=(-20, 20), spread=10)  # flex: legs; spread: spine
TARGET_POSE = PoseStats(rotation=180, flex=(-30, 30), spread=18)
TARGET_STYLE = Style(
    background=0.25, distractors=0, skin=0.2, lighting=0.15, blur=0.3, noise=0.02,
    side_contrast=0.3,
)  # fmt: skip
# Texture contrast (pixels x (1 - s/2 + s/2 sin(...))) and stripe period (px at 64 px), chosen
# so that the gap is wide but not hopeless: with the embedded recipe's phase 1 (seed 0),
# source-only 12, AdaBN 66 on target; stripes 0.5 with periods of 3-6 px left source-only at
# 2 and AdaBN at 13 (pseudo labels would carry no signal).
STRIPES = 0.15
PERIOD = (4.0, 8.0)
VERSION = 2  # of the data written: bump when the rendering changes


def lizard_poses(n: int, stats: PoseStats, g: torch.Generator) -> torch.Tensor:
    """(n, 10, 2) top views in canonical units (hips to shoulders 0.9, y down, head up)."""

    def deg(lo, hi):
        return torch.deg2rad(lo + (hi - lo) * torch.rand(n, generator=g))

    s, (lo, hi) = stats.spread, stats.flex
    bend = [deg(-s, s) for _ in range(4)]
    kp = torch.zeros(n, 10, 2)
    kp[:, 3] = torch.tensor([0.0, 0.45])
    kp[:, 2] = kp[:, 3] + 0.9 * _rot(bend[0])
    kp[:, 1] = kp[:, 2] + 0.35 * _rot(bend[0] + bend[1])
    kp[:, 0] = kp[:, 1] + 0.3 * _rot(bend[0] + 2 * bend[1])
    kp[:, 4] = kp[:, 3] + 0.55 * _rot(math.pi + bend[2])
    kp[:, 5] = kp[:, 4] + 0.55 * _rot(math.pi + bend[2] + bend[3])
    for foot, top, base in ((6, 2, -55), (7, 2, 55), (8, 3, -125), (9, 3, 125)):
        kp[:, foot] = kp[:, top] + 0.45 * _rot(
            bend[0] + torch.deg2rad(torch.tensor(base)) + deg(lo, hi)
        )
    return kp


def texture(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The target's low-level shift: colour channels rotated (R, G, B) -> (G, B, R) and
    stripes of a random angle and period laid over the picture. (n, 3, S, S) in [0, 1]."""
    n, _, size, _ = images.shape
    grid = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    angle = torch.rand(n, 1, 1, generator=g) * math.pi
    period = PERIOD[0] + (PERIOD[1] - PERIOD[0]) * torch.rand(n, 1, 1, generator=g)
    phase = 2 * math.pi * (xx * torch.cos(angle) + yy * torch.sin(angle)) / period
    stripes = 1 - STRIPES / 2 + STRIPES / 2 * torch.sin(phase)  # (n, S, S)
    return (images[:, [1, 2, 0]] * stripes[:, None]).clamp(0, 1)


def split(domain: str, name: str, n: int, size: int, seed: int) -> KeypointDataset:
    index = {"train": 0, "val": 1, "test": 2}[name] + (3 if domain == "target" else 0)
    g = torch.Generator().manual_seed(seed * 1000 + 700 + index)
    target = domain == "target"
    stats, style = (TARGET_POSE, TARGET_STYLE) if target else (SOURCE_POSE, SOURCE_STYLE)
    kp, unit = place(lizard_poses(n, stats, g), size, stats.rotation, FIGURE.fill, g)
    images = torch.cat(
        [
            render(kp[i : i + 256], unit[i : i + 256], FIGURE, size, style, g)
            for i in range(0, n, 256)
        ]
    )
    if target:
        images = texture(images, g)
    visible = ((kp >= 0) & (kp < size)).all(dim=-1)
    return KeypointDataset((images * 255).round().to(torch.uint8), kp, visible)


def write(out: Path, size: int = 64, sizes=(2000, 300, 300), seed: int = 0) -> dict[str, Path]:
    """out/source and out/target, each train/val/test as COCO JSON + PNGs (once)."""
    folders = {d: out / d for d in ("source", "target")}
    if all((f / "test.json").is_file() for f in folders.values()):
        return folders
    for domain, folder in folders.items():
        for name, n in zip(("train", "val", "test"), sizes, strict=True):
            export_split(split(domain, name, n, size, seed), LIZARD, folder, name)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("out", help="the pair's folder: OUT/source, OUT/target")
    print(write(Path(parser.parse_args(argv).out)))
    return 0
