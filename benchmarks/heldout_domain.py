"""A held-out domain pair for the proxy study: a 13-keypoint quadruped seen from the side,
rendered by the synthetic renderer (capsules, the source and target styles of the embedded
tasks) but with its own keypoint set, pose statistics and shape, written as COCO folders and
read back through the `coco` reader with `data.keypoints: from_data`. No proxy or default was
designed on it: it checks that what holds on hands and bodies holds elsewhere.

    python -m benchmarks heldout_domain OUT   # OUT/source, OUT/target: {train,val,test}.json
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks import record
from regda_dist.data.coco import export_split
from regda_dist.data.datasets import KeypointDataset
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.data.synthetic import SOURCE_STYLE, TARGET_STYLE, Figure, PoseStats, place, render

NAMES = (
    "nose", "head", "neck", "tail_base", "tail_tip", "front_left_knee", "front_left_paw",
    "front_right_knee", "front_right_paw", "back_left_knee", "back_left_paw", "back_right_knee",
    "back_right_paw",
)  # fmt: skip
BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (2, 5), (5, 6), (2, 7), (7, 8), (3, 9), (9, 10), (3, 11),
         (11, 12))  # fmt: skip
QUADRUPED = KeypointSpec(
    "quadruped13",
    NAMES,
    {"paws": (6, 8, 10, 12), "knees": (5, 7, 9, 11), "all": tuple(range(13))},
    BONES,
)
FIGURE = Figure(
    QUADRUPED,
    ((2, 3, 0.32, 0), (1, 2, 0.17, 0), (0, 1, 0.11, 0), (3, 4, 0.06, 0))
    + ((2, 5, 0.1, 2), (5, 6, 0.07, 2), (3, 9, 0.12, 2), (9, 10, 0.08, 2))
    + ((2, 7, 0.1, 1), (7, 8, 0.07, 1), (3, 11, 0.12, 1), (11, 12, 0.08, 1)),
    fill=0.8,
)
VERSION = 1  # of the data written: bump when the rendering changes
SOURCE_POSE = PoseStats(rotation=10, flex=(-25, 25), spread=20)  # flex: leg swing; spread: tail
TARGET_POSE = PoseStats(rotation=20, flex=(-40, 40), spread=60)


def _direction(degrees: torch.Tensor) -> torch.Tensor:
    """Unit vectors for angles measured from 'down' (0, 1), counter-clockwise in the image."""
    a = torch.deg2rad(degrees)
    return torch.stack((torch.sin(a), torch.cos(a)), dim=-1)


def quadruped_poses(n: int, stats: PoseStats, g: torch.Generator) -> torch.Tensor:
    """(n, 13, 2) side views in canonical units (body length 2, y down), facing right or left."""

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    kp = torch.zeros(n, 13, 2)
    kp[:, 3] = torch.tensor([-1.0, 0.0])  # tail base (hips)
    kp[:, 2] = torch.stack((0.9 + 0.1 * u(-1, 1), -0.15 + 0.1 * u(-1, 1)), -1)  # neck
    kp[:, 1] = kp[:, 2] + 0.55 * _direction(180 - u(20, 70))  # head: up and forward
    kp[:, 0] = kp[:, 1] + 0.35 * _direction(90 + u(-30, 30))  # nose
    kp[:, 4] = kp[:, 3] + 0.8 * _direction(-90 - u(-stats.spread, stats.spread))  # tail
    lo, hi = stats.flex
    for (top, knee, paw), depth in (
        ((2, 5, 6), 0.08),
        ((2, 7, 8), -0.08),
        ((3, 9, 10), 0.08),
        ((3, 11, 12), -0.08),
    ):
        hip = kp[:, top] + torch.tensor([depth, 0.15])
        kp[:, knee] = hip + 0.55 * _direction(u(lo, hi))
        kp[:, paw] = kp[:, knee] + 0.5 * _direction(u(lo, hi) - 0.5 * u(0, hi - lo))
    facing_left = torch.rand(n, generator=g) < 0.5
    kp[facing_left, :, 0] *= -1
    return kp


def split(domain: str, name: str, n: int, size: int, seed: int) -> KeypointDataset:
    index = {"train": 0, "val": 1, "test": 2}[name] + (3 if domain == "target" else 0)
    g = torch.Generator().manual_seed(seed * 1000 + 500 + index)
    stats, style = (
        (TARGET_POSE, TARGET_STYLE) if domain == "target" else (SOURCE_POSE, SOURCE_STYLE)
    )
    kp, unit = place(quadruped_poses(n, stats, g), size, stats.rotation, FIGURE.fill, g)
    images = torch.cat(
        [
            render(kp[i : i + 256], unit[i : i + 256], FIGURE, size, style, g)
            for i in range(0, n, 256)
        ]
    )
    visible = ((kp >= 0) & (kp < size)).all(dim=-1)
    return KeypointDataset((images * 255).round().to(torch.uint8), kp, visible)


def write(out: Path, size: int = 64, sizes=(2000, 300, 300), seed: int = 0) -> dict[str, Path]:
    """out/source and out/target, each train/val/test as COCO JSON + PNGs (once)."""
    folders = {d: out / d for d in ("source", "target")}
    if all((f / "test.json").is_file() for f in folders.values()):
        return folders
    for domain, folder in folders.items():
        for name, n in zip(("train", "val", "test"), sizes, strict=True):
            export_split(split(domain, name, n, size, seed), QUADRUPED, folder, name)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("out", help="the pair's folder: OUT/source, OUT/target")
    print(write(Path(parser.parse_args(argv).out)))
    return 0
