"""The reference's keypoint-aware training augmentation (REGDA_SPEC.md section 3): random
rotation, square random-resized crop, colour jitter and Gaussian blur, on uint8 images.

Geometry is one affine map applied to the image (grid_sample, zero padding: black) and to the
keypoints alike; keypoints that leave the image get weight 0 later, in the heatmap encoder.
Random numbers come from the generator passed with each sample (data/loader.py seeds it from
the sample's global position), never from torch's global generator. ImageNet normalisation is
the model's first step (models/regda.py), on the training device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from regda_dist.data import views

if TYPE_CHECKING:  # data.augment: passed in (data sits below config)
    from regda_dist.config import AugmentConfig


def is_active(cfg: AugmentConfig) -> bool:
    return bool(
        cfg.rotation or cfg.scale_min != 1 or cfg.scale_max != 1 or cfg.color_jitter or cfg.blur
    )


Uniform = Callable[[float, float], float]

# A sample's random numbers (Augment.draw), in this order; identity values where switched off.
PARAMS = ("angle", "zoom", "shift_x", "shift_y", "brightness", "contrast", "saturation", "blur")


class Augment:
    """(uint8 image (3, S, S), keypoints (K, 2) in its pixels, generator) -> (augmented uint8
    image, keypoints in its pixels). Every random number comes from the generator: draw() takes
    them all first, so a batch of samples can also be augmented at once on the training device
    (augment_batch) from each sample's own numbers."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __call__(self, image: torch.Tensor, keypoints: torch.Tensor, g: torch.Generator):
        return self.apply(image, keypoints, self.draw(g).tolist())

    def draw(self, g: torch.Generator) -> torch.Tensor:
        """(8,) float64: rotation (radians), zoom (crop side / image side), the crop centre's
        shift (image sides), brightness, contrast and saturation factors, blur sigma (px)."""
        c = self.cfg

        def uniform(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=g))

        angle, zoom, shift_x, shift_y = 0.0, 1.0, 0.0, 0.0
        if _geometry(c):
            angle = math.radians(uniform(-c.rotation, c.rotation))
            zoom = math.sqrt(uniform(c.scale_min, c.scale_max))
            room = abs(1 - zoom) / 2  # the crop's centre moves within the slack
            shift_x, shift_y = uniform(-room, room), uniform(-room, room)
        j = c.color_jitter
        colour = [uniform(1 - j, 1 + j) for _ in range(3)] if j else [1.0, 1.0, 1.0]
        sigma = uniform(0, c.blur) if c.blur else 0.0
        return torch.tensor([angle, zoom, shift_x, shift_y, *colour, sigma], dtype=torch.float64)

    def apply(self, image: torch.Tensor, keypoints: torch.Tensor, p: list[float]):
        """The augmentation with drawn numbers `p` (draw().tolist())."""
        x = image.float() / 255.0
        if _geometry(self.cfg):
            x, keypoints = self.geometry(x, keypoints, p[:4])
        if self.cfg.color_jitter:
            x = self.colour(x, p[4:7])
        if p[7] >= 0.05:
            x = self.blur(x, p[7])
        return (x * 255).round_().clamp_(0, 255).to(torch.uint8), keypoints

    def geometry(self, x: torch.Tensor, keypoints: torch.Tensor, p: list[float]):
        """Rotate by U(-r, r) degrees and crop a square of area U(scale_min, scale_max) x the
        image's (beyond the image for > 1: zero padding) at a random position, back to S x S."""
        angle, zoom, shift_x, shift_y = p
        size = x.shape[-1]
        centre = torch.tensor([shift_x, shift_y]) * size + size / 2
        cos, sin = math.cos(angle), math.sin(angle)
        rot = torch.tensor([[cos, -sin], [sin, cos]])
        # Output pixel p maps to input centre + zoom * rot @ (p - S/2).
        theta = torch.cat((zoom * rot, (2 * centre / size - 1)[:, None]), dim=1)
        grid = F.affine_grid(theta[None], [1, 3, size, size], align_corners=False)
        x = F.grid_sample(x[None], grid, align_corners=False, padding_mode="zeros")[0]
        keypoints = (keypoints - centre) @ rot / zoom + size / 2  # rot^-1 = rot^T
        return x, keypoints.to(torch.float32)

    def colour(self, x: torch.Tensor, factors: list[float]) -> torch.Tensor:
        """Brightness, contrast and saturation, each x U(1 - j, 1 + j)."""
        return views.colour(x[None], torch.tensor([factors]))[0]

    def blur(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """Gaussian blur with radius (std) U(0, blur) px (none below 0.05)."""
        r = max(1, math.ceil(3 * sigma))
        t = torch.arange(-r, r + 1, dtype=x.dtype)
        k = torch.exp(-(t**2) / (2 * sigma**2))
        k = (k / k.sum()).repeat(3, 1)[:, None]  # (3, 1, 2r+1)
        x = F.conv2d(F.pad(x[None], (r, r, 0, 0), mode="replicate"), k[..., None, :], groups=3)
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[..., None], groups=3)
        return x[0]


def _geometry(c: AugmentConfig) -> bool:
    return bool(c.rotation or c.scale_min != 1 or c.scale_max != 1)


def augment_batch(cfg: AugmentConfig, images: torch.Tensor, keypoints: torch.Tensor,
                  params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Augment.apply for a batch at once, on the batch's device: uint8 images (B, 3, S, S),
    keypoints (B, K, 2), each sample's drawn numbers (B, 8) (Augment.draw) -> (uint8 images,
    float32 keypoints). The per-sample path's result up to float rounding: a GPU worker can
    augment on its device, its loader processes only decoding and cropping."""
    x, p = images.float() / 255.0, params.to(images.device, torch.float64)
    if _geometry(cfg):
        x, keypoints = _batch_geometry(x, keypoints, p[:, :4])
    if cfg.color_jitter:
        x = views.colour(x, p[:, 4:7])
    if bool((p[:, 7] >= 0.05).any()):
        x = _batch_blur(x, p[:, 7])
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8), keypoints


def _batch_geometry(x: torch.Tensor, keypoints: torch.Tensor, p: torch.Tensor):
    size = x.shape[-1]
    angle, zoom = p[:, 0], p[:, 1].float()
    centre = p[:, 2:4].float() * size + size / 2  # (B, 2)
    cos, sin = torch.cos(angle).float(), torch.sin(angle).float()
    rot = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)
    theta = torch.cat((zoom[:, None, None] * rot, (2 * centre / size - 1)[..., None]), dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    moved = (keypoints.float() - centre[:, None]) @ rot / zoom[:, None, None] + size / 2
    return x, moved


def _batch_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur (std sigma (B,) px; none below 0.05): kernels zero beyond each
    sample's radius on the batch's largest, which replicate padding makes the same blur."""
    b, c, size, _ = x.shape
    on = sigma >= 0.05
    radius = torch.where(on, torch.ceil(3 * sigma).clamp(min=1), torch.zeros_like(sigma))
    r = int(radius.max())
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)  # (2R+1,)
    s2 = (2 * sigma.clamp(min=0.05) ** 2).to(x.dtype)[:, None]
    k = torch.exp(-(t**2) / s2) * (t.abs() <= radius.to(x.dtype)[:, None])
    k = torch.where(on[:, None], k / k.sum(1, keepdim=True), (t == 0).to(x.dtype))  # (B, 2R+1)
    k = k.repeat_interleave(c, dim=0)[:, None]  # (B * 3, 1, 2R+1)
    x = x.reshape(1, b * c, size, size)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k[..., None, :], groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[..., None], groups=b * c)
    return x.reshape(b, c, size, size)
