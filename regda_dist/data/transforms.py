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

import torch
import torch.nn.functional as F

from regda_dist.config import AugmentConfig
from regda_dist.data import views


def is_active(cfg: AugmentConfig) -> bool:
    return bool(
        cfg.rotation or cfg.scale_min != 1 or cfg.scale_max != 1 or cfg.color_jitter or cfg.blur
    )


Uniform = Callable[[float, float], float]


class Augment:
    """(uint8 image (3, S, S), keypoints (K, 2) in its pixels, generator) -> (augmented uint8
    image, keypoints in its pixels). Every random number comes from the generator."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __call__(self, image: torch.Tensor, keypoints: torch.Tensor, g: torch.Generator):
        def uniform(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=g))

        x = image.float() / 255.0
        x, keypoints = self.geometry(x, keypoints, uniform)
        x = self.blur(self.colour(x, uniform), uniform)
        return (x * 255).round_().clamp_(0, 255).to(torch.uint8), keypoints

    def geometry(self, x: torch.Tensor, keypoints: torch.Tensor, uniform: Uniform):
        """Rotate by U(-r, r) degrees and crop a square of area U(scale_min, scale_max) x the
        image's (beyond the image for > 1: zero padding) at a random position, back to S x S."""
        c = self.cfg
        if not (c.rotation or c.scale_min != 1 or c.scale_max != 1):
            return x, keypoints
        size = x.shape[-1]
        angle = math.radians(uniform(-c.rotation, c.rotation))
        zoom = math.sqrt(uniform(c.scale_min, c.scale_max))  # crop side / image side
        room = abs(1 - zoom) / 2  # the crop's centre moves within the slack, in image sides
        centre = torch.tensor([uniform(-room, room), uniform(-room, room)]) * size + size / 2
        cos, sin = math.cos(angle), math.sin(angle)
        rot = torch.tensor([[cos, -sin], [sin, cos]])
        # Output pixel p maps to input centre + zoom * rot @ (p - S/2).
        theta = torch.cat((zoom * rot, (2 * centre / size - 1)[:, None]), dim=1)
        grid = F.affine_grid(theta[None], [1, 3, size, size], align_corners=False)
        x = F.grid_sample(x[None], grid, align_corners=False, padding_mode="zeros")[0]
        keypoints = (keypoints - centre) @ rot / zoom + size / 2  # rot^-1 = rot^T
        return x, keypoints.to(torch.float32)

    def colour(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        """Brightness, contrast and saturation, each x U(1 - j, 1 + j)."""
        j = self.cfg.color_jitter
        if not j:
            return x
        factors = torch.tensor([[uniform(1 - j, 1 + j) for _ in range(3)]])
        return views.colour(x[None], factors)[0]

    def blur(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        """Gaussian blur with radius (std) U(0, blur) px."""
        sigma = uniform(0, self.cfg.blur) if self.cfg.blur else 0.0
        if sigma < 0.05:
            return x
        r = max(1, math.ceil(3 * sigma))
        t = torch.arange(-r, r + 1, dtype=x.dtype)
        k = torch.exp(-(t**2) / (2 * sigma**2))
        k = (k / k.sum()).repeat(3, 1)[:, None]  # (3, 1, 2r+1)
        x = F.conv2d(F.pad(x[None], (r, r, 0, 0), mode="replicate"), k[..., None, :], groups=3)
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[..., None], groups=3)
        return x[0]
