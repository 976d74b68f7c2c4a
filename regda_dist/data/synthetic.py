"""Procedural synthetic transfer tasks: articulated hands and bodies in two rendering domains.

The source domain is rendered flat and clean (like rendered training sets); the target domain
has textured backgrounds, distractor strokes, other colours, lighting ramps, blur, sensor noise
and shifted pose statistics (like real photographs). Both domains share the keypoint definition.
Everything is seeded and vectorised in torch; a split of a few thousand 64 px images takes
seconds on a CPU and is cached on disk.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from regda_dist.data.keypoints import BODY16, HAND21, KeypointSpec
from regda_dist.data.views import blur


@dataclass(frozen=True)
class PoseStats:
    """Pose distribution of one domain (angles in degrees)."""

    rotation: float  # global rotation ~ U(-rotation, rotation)
    flex: tuple[float, float]  # hand: per-joint flexion range; body: elbow/knee flexion range
    spread: float  # hand: finger abduction std; body: arm raise range upper bound


# --------------------------------------------------------------------------------------------
# Poses (canonical units: palm length 1 / torso length 1; y points down)


def _rot(angle: torch.Tensor) -> torch.Tensor:
    """Unit direction vectors for angles in radians measured from 'up' (0, -1), clockwise."""
    return torch.stack((torch.sin(angle), -torch.cos(angle)), dim=-1)


_FINGER_BASE = torch.tensor(
    [[-0.42, -0.38], [-0.33, -1.0], [-0.11, -1.06], [0.1, -1.0], [0.29, -0.9]]
)
_FINGER_DIR = torch.tensor([-55.0, -12.0, -3.0, 6.0, 15.0])
_FINGER_LEN = torch.tensor(
    [
        [0.42, 0.32, 0.27],
        [0.45, 0.28, 0.22],
        [0.5, 0.32, 0.24],
        [0.47, 0.3, 0.22],
        [0.37, 0.22, 0.2],
    ]
)


def hand_poses(n: int, stats: PoseStats, g: torch.Generator) -> torch.Tensor:
    """(n, 21, 2) canonical hand keypoints (left hand, palm towards the camera)."""
    kp = torch.zeros(n, 21, 2)
    spread = torch.randn(n, 5, generator=g) * stats.spread
    lo, hi = stats.flex
    flex = lo + (hi - lo) * torch.rand(n, 5, 3, generator=g)  # foreshortening by flexion
    bend = torch.randn(n, 5, 3, generator=g) * 6.0  # small in-plane curl per joint
    for f in range(5):
        pos = _FINGER_BASE[f].expand(n, 2)
        kp[:, 1 + 4 * f] = pos
        direction = torch.deg2rad(_FINGER_DIR[f] + spread[:, f])
        cum_flex = torch.zeros(n)
        for s in range(3):
            direction = direction + torch.deg2rad(bend[:, f, s])
            cum_flex = cum_flex + torch.deg2rad(flex[:, f, s])
            step = _FINGER_LEN[f, s] * torch.cos(cum_flex.clamp(max=2.6))
            pos = pos + step[:, None] * _rot(direction)
            kp[:, 2 + 4 * f + s] = pos
    return kp


def body_poses(n: int, stats: PoseStats, g: torch.Generator) -> torch.Tensor:
    """(n, 16, 2) canonical bodies in MPII order (the person's right is on the image left)."""

    def u(lo, hi, *shape):
        return torch.deg2rad(lo + (hi - lo) * torch.rand(n, *shape, generator=g))

    kp = torch.zeros(n, 16, 2)
    lean = u(-12, 12)
    kp[:, 7] = _rot(lean)  # thorax, 1 above the pelvis
    kp[:, 8] = kp[:, 7] + 0.25 * _rot(lean)
    kp[:, 9] = kp[:, 8] + 0.45 * _rot(lean + u(-15, 15))
    side = torch.tensor([-1.0, 1.0])  # right, left
    hips = torch.stack((side * 0.2, torch.zeros(2)), dim=-1)
    shoulders = torch.stack((side * 0.33, torch.full((2,), 0.05)), dim=-1) + kp[:, 7, None]
    kp[:, [2, 3]], kp[:, [12, 13]] = hips.expand(n, 2, 2), shoulders
    lo, hi = stats.flex
    arm = math.pi + side * u(-15, stats.spread, 2)  # from 'down', raised outwards
    elbow = arm + side * u(lo, hi, 2)
    leg = math.pi + side * u(-10, 35, 2)
    knee = leg - side * u(0, hi * 0.7, 2)
    for i, (hip, kn, an, sh, el, wr) in enumerate(((2, 1, 0, 12, 11, 10), (3, 4, 5, 13, 14, 15))):
        kp[:, kn] = kp[:, hip] + 0.7 * _rot(leg[:, i])
        kp[:, an] = kp[:, kn] + 0.65 * _rot(knee[:, i])
        kp[:, el] = kp[:, sh] + 0.55 * _rot(arm[:, i])
        kp[:, wr] = kp[:, el] + 0.5 * _rot(elbow[:, i])
    return kp


def place(kp: torch.Tensor, size: int, rotation: float, fill: float, g: torch.Generator):
    """Rotate, scale and translate canonical poses into the image. Returns (kp, pixels per unit)."""
    n = kp.shape[0]
    angle = torch.deg2rad((torch.rand(n, generator=g) * 2 - 1) * rotation)
    c, s = torch.cos(angle), torch.sin(angle)
    rotm = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # (n, 2, 2)
    kp = kp @ rotm.transpose(1, 2)
    lo, hi = kp.min(dim=1).values, kp.max(dim=1).values
    extent = (hi - lo).max(dim=1).values
    scale = size * fill * (0.85 + 0.25 * torch.rand(n, generator=g)) / extent
    shift = (torch.rand(n, 2, generator=g) - 0.5) * size * 0.12
    kp = (kp - (lo + hi)[:, None] / 2) * scale[:, None, None] + size / 2 + shift[:, None]
    return kp, scale


# --------------------------------------------------------------------------------------------
# Rendering with signed distance fields


def _segment_distance(grid: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of each pixel to segments a-b. grid (H, W, 2); a, b (n, 2) -> (n, H, W)."""
    ab = (b - a)[:, None, None]
    ap = grid[None] - a[:, None, None]
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
    return (ap - t[..., None] * ab).norm(dim=-1)


def _paint(canvas, grid, a, b, radius, colour, shade):
    """Alpha-composite shaded capsules (n,) onto canvas (n, 3, H, W)."""
    dist = _segment_distance(grid, a, b)
    r = radius[:, None, None]
    alpha = torch.sigmoid((r - dist) * 2.5)[:, None]
    light = torch.sqrt((1 - (dist / r) ** 2).clamp(0, 1))[:, None]  # cylinder shading
    paint = colour[:, :, None, None] * (shade + (1 - shade) * light)
    return canvas * (1 - alpha) + paint * alpha


def _smooth_noise(n: int, channels: int, size: int, cells: int, g: torch.Generator):
    return F.interpolate(
        torch.rand(n, channels, cells, cells, generator=g),
        size=size,
        mode="bicubic",
        align_corners=False,
    )


@dataclass(frozen=True)
class Figure:
    """How a keypoint skeleton is drawn: capsules between keypoints, with radii in pose units."""

    spec: KeypointSpec
    bones: tuple[
        tuple[int, int, float, int], ...
    ]  # (a, b, radius, side: 0 centre, 1 right, 2 left)
    fill: float  # fraction of the image the pose spans


HAND_FIGURE = Figure(
    HAND21,
    tuple((0, m, 0.16, 0) for m in (1, 5, 9, 13, 17))
    + ((5, 17, 0.13, 0), (1, 5, 0.12, 0))
    + tuple(
        (a, b, 0.085 - 0.012 * (b - a - 1 if a == 0 else (b - 1) % 4), 0)
        for a, b in HAND21.skeleton
        if a != 0
    ),
    fill=0.8,
)

BODY_FIGURE = Figure(
    BODY16,
    ((6, 7, 0.26, 0), (8, 9, 0.2, 0), (7, 8, 0.09, 0))
    + ((2, 1, 0.12, 1), (1, 0, 0.1, 1), (12, 11, 0.1, 1), (11, 10, 0.08, 1))
    + ((3, 4, 0.12, 2), (4, 5, 0.1, 2), (13, 14, 0.1, 2), (14, 15, 0.08, 2)),
    fill=0.85,
)


@dataclass(frozen=True)
class Style:
    """How far the target rendering departs from the flat source rendering (0 = not at all)."""

    background: float = 0.0  # contrast of the smooth random-colour background
    distractors: int = 0  # limb-like strokes in the background
    skin: float = 0.0  # how far skin colours spread from the source's
    lighting: float = 0.0  # strength of the brightness ramp across the image
    blur: float = 0.0  # max Gaussian blur std (px)
    noise: float = 0.0  # sensor noise std
    side_contrast: float = 0.4  # right limbs are darker by this fraction (a left/right cue)


SOURCE_STYLE = Style()
# Chosen so that source-only lands near the reference's regime (about 50-60 PCK on target):
# a much harsher style left source-only at 5 PCK, where pseudo labels carry no signal.
TARGET_STYLE = Style(
    background=0.4, distractors=1, skin=0.3, lighting=0.3, blur=0.5, noise=0.02, side_contrast=0.3
)


def render(kp, unit, figure: Figure, size: int, style: Style, g: torch.Generator) -> torch.Tensor:
    """Images (n, 3, size, size) in [0, 1] of poses kp (n, K, 2) in pixels, in the given style."""
    n = kp.shape[0]
    grid = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="xy"), -1)
    grid = grid.float() + 0.5
    flat = 0.25 + 0.5 * torch.rand(n, 3, 1, 1, generator=g)
    field = _smooth_noise(n, 3, size, 4, g) - 0.5
    canvas = (
        flat
        + style.background * field
        + 0.1 * style.background * (_smooth_noise(n, 1, size, 16, g) - 0.5)
    )
    for _ in range(style.distractors):
        a, b = torch.rand(n, 2, generator=g) * size, torch.rand(n, 2, generator=g) * size
        width = 0.6 + 1.2 * torch.rand(n, generator=g)
        canvas = _paint(canvas, grid, a, b, width, torch.rand(n, 3, generator=g), 0.5)
    base = torch.tensor([0.95, 0.75, 0.6]) * (0.85 + 0.15 * torch.rand(n, 1, generator=g))
    skin = (1 - style.skin) * base + style.skin * torch.rand(n, 3, generator=g)
    side_shade = torch.tensor([1.0, 1.0 - style.side_contrast, 1.0])
    for a, b, radius, side in figure.bones:
        canvas = _paint(
            canvas, grid, kp[:, a], kp[:, b], radius * unit, skin * side_shade[side], 0.45
        )
    if style.lighting:
        ramp = (grid[..., 0] - size / 2)[None] / size * torch.randn(n, 1, 1, generator=g)
        gain = 1 + style.lighting * (
            ramp[:, None] + 0.4 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
        )
        canvas = canvas * gain
    if style.blur:
        canvas = blur(canvas, 0.1 + style.blur * torch.rand(n, generator=g))
    if style.noise:
        canvas = canvas + style.noise * torch.randn(canvas.shape, generator=g)
    return canvas.clamp(0, 1)


# --------------------------------------------------------------------------------------------
# Tasks, splits and the on-disk cache


@dataclass(frozen=True)
class SyntheticTask:
    """A (source, target) pair of domains sharing one keypoint definition."""

    name: str
    figure: Figure
    poses: Callable[[int, PoseStats, torch.Generator], torch.Tensor]
    source_pose: PoseStats
    target_pose: PoseStats
    target_style: Style = TARGET_STYLE

    @property
    def spec(self) -> KeypointSpec:
        return self.figure.spec


TASKS = {
    t.name: t
    for t in (
        SyntheticTask(
            "synth_hand",
            HAND_FIGURE,
            hand_poses,
            PoseStats(rotation=180, flex=(0, 50), spread=6),
            PoseStats(rotation=180, flex=(10, 70), spread=9),
        ),
        SyntheticTask(
            "synth_body",
            BODY_FIGURE,
            body_poses,
            PoseStats(rotation=30, flex=(0, 120), spread=110),
            PoseStats(rotation=40, flex=(0, 140), spread=160),
        ),
    )
}

DOMAINS = ("source", "target")
SPLITS = ("train", "val", "test")
_SPLIT_INDEX = {(d, s): i for i, (d, s) in enumerate((d, s) for d in DOMAINS for s in SPLITS)}


def generate(task: SyntheticTask, domain: str, split: str, n: int, size: int, seed: int) -> dict:
    """One split: uint8 images (n, 3, S, S), keypoints (n, K, 2) in pixels, visible (n, K)."""
    g = torch.Generator().manual_seed(seed * 1000 + _SPLIT_INDEX[(domain, split)])
    target = domain == "target"
    stats = task.target_pose if target else task.source_pose
    style = task.target_style if target else SOURCE_STYLE
    kp, unit = place(task.poses(n, stats, g), size, stats.rotation, task.figure.fill, g)
    images = torch.cat(
        [
            render(kp[i : i + 256], unit[i : i + 256], task.figure, size, style, g)
            for i in range(0, n, 256)
        ]
    )
    visible = ((kp >= 0) & (kp < size)).all(dim=-1)
    return {"images": (images * 255).round().to(torch.uint8), "keypoints": kp, "visible": visible}


def load_split(
    task_name: str, domain: str, split: str, n: int, size: int, seed: int, cache: Path
) -> dict:
    """Generate a split once and cache it under `cache`; later calls read the file."""
    if task_name not in TASKS:
        raise ValueError(f"unknown synthetic task {task_name!r}; known: {', '.join(sorted(TASKS))}")
    file = cache / f"{task_name}-v{_VERSION}-s{size}-seed{seed}" / f"{domain}_{split}_{n}.pt"
    if file.is_file():
        return torch.load(file, weights_only=True)
    sys.stdout.write(f"{task_name}: generating {domain} {split} ({n} images, {size} px; cached)\n")
    sys.stdout.flush()
    data = generate(TASKS[task_name], domain, split, n, size, seed)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".tmp{os.getpid()}")
    torch.save(data, tmp)
    tmp.replace(file)  # atomic: concurrent trials never read a half-written split
    return data


_VERSION = 1  # bump when rendering changes, so stale caches are not reused
