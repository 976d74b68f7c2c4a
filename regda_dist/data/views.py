"""Views of a batch of images under known affine maps, batched on the images' device: the weak
and strong views of the mean teacher (engine/mean_teacher.py) and the label-free views of the
consistency proxy (engine/collect.py).

Conventions. Keypoints are continuous image coordinates p in [0, S) (pixel i covers [i, i+1));
normalised coordinates n = 2 p / S - 1 are grid_sample's (align_corners=False). A view is the
map `theta` (B, 2, 3) that affine_grid takes: view pixel u shows original point A u + t (both
normalised). Heatmap index c stands for image coordinate c * stride (the codec's convention,
data/heatmap.py), so heatmaps are resampled on grids built from that, not on grid_sample's own
pixel centres (half a heatmap pixel apart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def to_normalised(p: torch.Tensor, size: int) -> torch.Tensor:
    return 2 * p / size - 1


def to_pixels(n: torch.Tensor, size: int) -> torch.Tensor:
    return (n + 1) * size / 2


def view_map(angle_deg: float, zoom: float, shear_deg: float = 0.0) -> torch.Tensor:
    """(2, 2) linear part A of a view: rotation by `angle_deg` scaled by `zoom` (> 1: the view
    shows more of the image, smaller), after a horizontal shear by `shear_deg`."""
    a = math.radians(angle_deg)
    rotation = zoom * torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    if not shear_deg:
        return rotation
    return rotation @ torch.tensor([[1.0, math.tan(math.radians(shear_deg))], [0.0, 1.0]])


def inverse(theta: torch.Tensor) -> torch.Tensor:
    """The map back: original -> view, as (B, 2, 3)."""
    a_inv = torch.linalg.inv(theta[..., :2])
    return torch.cat((a_inv, -a_inv @ theta[..., 2:]), dim=-1)


def apply(theta: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Normalised points (B, K, 2) through theta (B, 2, 3)."""
    return n @ theta[..., :2].transpose(-1, -2) + theta[..., None, :, 2]


def points_to_view(p: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Image points (B, K, 2) of the original -> where the view shows them (its pixels)."""
    return to_pixels(apply(inverse(theta), to_normalised(p, size)), size)


def points_from_view(p: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Points (B, K, 2) in a view's pixels -> the original image's pixels."""
    return to_pixels(apply(theta, to_normalised(p, size)), size)


def warp_images(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The views (B, C, S, S) of images x (float), zero (black) outside the original."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _heatmap_grid(theta: torch.Tensor, size: int, image_size: int) -> torch.Tensor:
    """(B, H, H, 2) grid_sample coordinates, in the heatmaps to be read, of every heatmap index
    c of the heatmaps to be written, where `theta` maps written -> read (normalised)."""
    stride = image_size / size
    c = torch.arange(size, dtype=theta.dtype, device=theta.device) * stride  # image px
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    points = torch.stack((xx, yy), dim=-1).reshape(1, -1, 2).expand(len(theta), -1, -1)
    read = to_pixels(apply(theta, to_normalised(points, image_size)), image_size) / stride
    return ((2 * read + 1) / size - 1).reshape(len(theta), size, size, 2)


def heatmaps_from_view(h: torch.Tensor, theta: torch.Tensor, image_size: int) -> torch.Tensor:
    """Heatmaps (B, K, H, H) predicted on a view -> the original's frame (0 where the view did
    not see)."""
    grid = _heatmap_grid(inverse(theta), h.shape[-1], image_size)
    return F.grid_sample(h, grid.to(h.dtype), align_corners=False, padding_mode="zeros")


def heatmaps_to_view(h: torch.Tensor, theta: torch.Tensor, image_size: int) -> torch.Tensor:
    """Heatmaps (B, K, H, H) in the original's frame -> a view's frame."""
    grid = _heatmap_grid(theta, h.shape[-1], image_size)
    return F.grid_sample(h, grid.to(h.dtype), align_corners=False, padding_mode="zeros")


@dataclass(frozen=True)
class Geometry:
    """Ranges of a random view: rotation U(-r, r) degrees, zoom U(lo, hi) (the view's extent
    over the image's), shift U(-t, t) of the image size along each axis, shear U(-s, s)
    degrees (drawn only where s > 0: a view without shear takes the same random numbers as
    before shear existed)."""

    rotation: float
    zoom: tuple[float, float]
    shift: float
    shear: float = 0.0

    def sample(self, g: torch.Generator) -> torch.Tensor:
        """One view's theta (2, 3)."""
        u = torch.rand(4, generator=g, dtype=torch.float64)
        angle = (2 * u[0] - 1) * self.rotation
        zoom = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * u[1]
        shift = (2 * u[2:] - 1) * self.shift * 2  # of the image size, normalised (2 = S)
        shear = 0.0
        if self.shear > 0:
            shear = float((2 * torch.rand((), generator=g, dtype=torch.float64) - 1) * self.shear)
        linear = view_map(float(angle), float(zoom), shear)
        return torch.cat((linear, shift[:, None]), 1).float()


def colour(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation of images x (B, 3, S, S) in [0, 1], each multiplied
    by its factor (B, 3) (1 = unchanged)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    b, c, s = (factors[:, i, None, None, None].to(x.dtype) for i in range(3))
    x = x * b
    mean = (x * weights[:, None, None]).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * c + mean
    grey = (x * weights[:, None, None]).sum(1, keepdim=True)
    return ((x - grey) * s + grey).clamp(0, 1)


def blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur with std sigma (n,) in px (5x5 separable kernel)."""
    x = torch.arange(-2, 3, dtype=images.dtype, device=images.device)
    k = torch.exp(-(x**2)[None] / (2 * sigma.to(images.dtype).clamp_min(1e-3)[:, None] ** 2))
    k = k / k.sum(-1, keepdim=True)  # (n, 5)
    n, c, h, w = images.shape
    out = images.reshape(1, n * c, h, w)
    kx = k.repeat_interleave(c, 0)[:, None, None, :]
    out = F.conv2d(F.pad(out, (2, 2, 0, 0), mode="replicate"), kx, groups=n * c)
    out = F.conv2d(F.pad(out, (0, 0, 2, 2), mode="replicate"), kx.transpose(2, 3), groups=n * c)
    return out.reshape(n, c, h, w)


def offsets_from_inside(centres: torch.Tensor, side: float, size: int, u: torch.Tensor):
    """The offsets (B, 2) (in image sizes) from patches of side `side` x `size` centred at
    `centres` (B, 2) (px) to patches lying wholly inside the frame, their centres placed by
    u (B, 2) in [0, 1): what `occlude` pastes never comes from beyond the frame's border (a
    warped view's own corners can still be black where the view shows beyond its image)."""
    half = side * size / 2
    source = half + u.to(centres.dtype) * max(size - 2 * half, 0.0)
    return (source - centres) / size


def occlude(x: torch.Tensor, centres: torch.Tensor, side: float, offsets: torch.Tensor):
    """Images x (B, C, S, S) with a square of side `side` x S centred at centres (B, 2) (px)
    replaced by the same image's content `offsets` (B, 2) (in image sizes) away; rows whose
    centre is NaN are left as they are."""
    size = x.shape[-1]
    grid = torch.arange(size, device=x.device, dtype=x.dtype) + 0.5
    half = side * size / 2
    cx, cy = (centres[:, i, None, None].to(x.dtype) for i in (0, 1))
    inside = ((grid[None, None, :] - cx).abs() <= half) & ((grid[None, :, None] - cy).abs() <= half)
    eye = torch.eye(2, device=x.device, dtype=x.dtype).expand(len(x), 2, 2)
    shifted = warp_images(x, torch.cat((eye, 2 * offsets.to(x.dtype)[..., None]), dim=-1))
    return torch.where(inside[:, None], shifted, x)
