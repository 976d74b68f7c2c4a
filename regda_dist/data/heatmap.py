"""Heatmap codec: keypoints <-> Gaussian heatmaps, vectorised on the tensors' device.

Conventions of the reference (REGDA_SPEC.md section 2): a keypoint at image coordinate c maps to
the integer heatmap centre mu = int(c / stride + 0.5); its map is an un-normalised Gaussian with
peak 1 at mu, cut to the (2 * int(3 sigma) + 1)^2 window around mu.
"""

from __future__ import annotations

import torch


def keypoint_centres(keypoints: torch.Tensor, stride: float) -> torch.Tensor:
    """Integer heatmap centres of image-space keypoints. (..., 2) float -> (..., 2) long."""
    return torch.floor(keypoints / stride + 0.5).long()


def encode(
    keypoints: torch.Tensor, visible: torch.Tensor, image_size: int, heatmap_size: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label heatmaps and weights for keypoints in image pixels.

    Shape: keypoints (..., K, 2) as (x, y); visible (..., K)
        -> heatmaps (..., K, H, H), weights (..., K).
    A keypoint that is invisible or whose centre falls outside the heatmap gets an empty map and
    weight 0.
    """
    centres, valid = targets(keypoints, visible, image_size, heatmap_size)
    return gaussians(centres, valid, heatmap_size, sigma), valid.to(keypoints.dtype)


def targets(keypoints: torch.Tensor, visible: torch.Tensor, image_size: int, heatmap_size: int):
    """Heatmap centres (..., K, 2) long and validity (..., K) bool: visible and inside the map."""
    centres = keypoint_centres(keypoints, image_size / heatmap_size)
    inside = ((centres >= 0) & (centres < heatmap_size)).all(dim=-1)
    return centres, inside & (visible > 0)


def gaussians(centres: torch.Tensor, valid: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Truncated Gaussians (peak 1) at integer centres; empty where not valid.

    Shape: centres (..., K, 2) long, valid (..., K) bool -> (..., K, size, size) float32.
    """
    grid = torch.arange(size, device=centres.device)
    dx = grid - centres[..., 0:1]  # (..., K, W)
    dy = grid - centres[..., 1:2]  # (..., K, H)
    radius = int(3 * sigma)
    gx = torch.exp(-(dx.float() ** 2) / (2 * sigma**2)) * (dx.abs() <= radius)
    gy = torch.exp(-(dy.float() ** 2) / (2 * sigma**2)) * (dy.abs() <= radius)
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)  # (..., K, H, W): separable Gaussian
    return maps * valid.unsqueeze(-1).unsqueeze(-1)


def decode(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax per heatmap: (..., K, H, W) -> (x, y) coordinates (..., K, 2) long, peaks (..., K)."""
    width = heatmaps.shape[-1]
    peaks, index = heatmaps.flatten(-2).max(dim=-1)
    return torch.stack((index % width, index // width), dim=-1), peaks
