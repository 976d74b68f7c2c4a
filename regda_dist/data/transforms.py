"""Image normalisation and the reference's keypoint-aware training augmentation (REGDA_SPEC.md
section 3): random rotation, square random-resized crop, colour jitter and Gaussian blur.

Geometry is one affine map applied to the image (grid_sample, zero padding) and to the
keypoints alike; keypoints that leave the image get weight 0 later, in the heatmap encoder.
Random numbers come from torch's global generator, which the trainer seeds and checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from regda_dist.config import AugmentConfig

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, ImageNet-normalised."""
    return (images_uint8.float() / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def is_active(cfg: AugmentConfig) -> bool:
    return bool(
        cfg.rotation or cfg.scale_min != 1 or cfg.scale_max != 1 or cfg.color_jitter or cfg.blur
    )


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


class Augment:
    """(uint8 image (3, S, S), keypoints (K, 2) in its pixels) -> (normalised float image,
    keypoints in the augmented image's pixels)."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __call__(self, image: torch.Tensor, keypoints: torch.Tensor):
        x = image.float() / 255.0
        x, keypoints = self.geometry(x, keypoints)
        x = self.colour(x)
        x = self.blur(x)
        return (x - IMAGENET_MEAN) / IMAGENET_STD, keypoints

    def geometry(self, x: torch.Tensor, keypoints: torch.Tensor):
        """Rotate by U(-r, r) degrees and crop a square of area U(scale_min, scale_max) x the
        image's (beyond the image for > 1: zero padding) at a random position, back to S x S."""
        c = self.cfg
        if not (c.rotation or c.scale_min != 1 or c.scale_max != 1):
            return x, keypoints
        size = x.shape[-1]
        angle = math.radians(_uniform(-c.rotation, c.rotation))
        zoom = math.sqrt(_uniform(c.scale_min, c.scale_max))  # crop side / image side
        room = abs(1 - zoom) / 2  # the crop's centre moves within the slack, in image sides
        centre = torch.tensor([_uniform(-room, room), _uniform(-room, room)]) * size + size / 2
        cos, sin = math.cos(angle), math.sin(angle)
        rot = torch.tensor([[cos, -sin], [sin, cos]])
        # Output pixel p maps to input centre + zoom * rot @ (p - S/2).
        theta = torch.cat((zoom * rot, (2 * centre / size - 1)[:, None]), dim=1)
        grid = F.affine_grid(theta[None], [1, 3, size, size], align_corners=False)
        x = F.grid_sample(x[None], grid, align_corners=False, padding_mode="zeros")[0]
        keypoints = (keypoints - centre) @ rot / zoom + size / 2  # rot^-1 = rot^T
        return x, keypoints.to(torch.float32)

    def colour(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast and saturation, each x U(1 - j, 1 + j)."""
        j = self.cfg.color_jitter
        if not j:
            return x
        x = x * _uniform(1 - j, 1 + j)
        grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
        x = (x - grey.mean()) * _uniform(1 - j, 1 + j) + grey.mean()
        grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
        x = (x - grey) * _uniform(1 - j, 1 + j) + grey
        return x.clamp(0, 1)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian blur with radius (std) U(0, blur) px."""
        sigma = _uniform(0, self.cfg.blur) if self.cfg.blur else 0.0
        if sigma < 0.05:
            return x
        r = max(1, math.ceil(3 * sigma))
        t = torch.arange(-r, r + 1, dtype=x.dtype)
        k = torch.exp(-(t**2) / (2 * sigma**2))
        k = (k / k.sum()).repeat(3, 1)[:, None]  # (3, 1, 2r+1)
        x = F.conv2d(F.pad(x[None], (r, r, 0, 0), mode="replicate"), k[..., None, :], groups=3)
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[..., None], groups=3)
        return x[0]
