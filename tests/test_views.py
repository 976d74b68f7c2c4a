"""Views under known affine maps: points, images and heatmaps move alike, and come back."""

import torch

from regda_dist.data import heatmap, views

SIZE, H = 64, 32  # image and heatmap size (stride 2)


def _thetas() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    geometry = views.Geometry(rotation=40, zoom=(0.8, 1.2), shift=0.08)
    return torch.stack([geometry.sample(g) for _ in range(6)])


def _points(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 20 + 24 * torch.rand(n, 3, 2, generator=g)  # (B, K, 2) inside the middle


def test_points_go_to_a_view_and_back_exactly():
    theta, p = _thetas(), _points()
    back = views.points_from_view(views.points_to_view(p, theta, SIZE), theta, SIZE)
    assert torch.allclose(back, p, atol=1e-4)
    assert torch.allclose(views.inverse(views.inverse(theta)), theta, atol=1e-5)


def test_a_view_of_an_image_shows_a_point_where_the_point_maps():
    theta, p = _thetas(), _points()[:, :1]  # one bright dot per image
    grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
    d2 = (grid[None, None, :] - p[:, 0, 0, None, None]) ** 2 + (
        grid[None, :, None] - p[:, 0, 1, None, None]
    ) ** 2
    images = torch.exp(-d2 / 4.0)[:, None].expand(-1, 3, -1, -1)
    seen = views.warp_images(images, theta)[:, 0]
    flat = seen.flatten(1).argmax(dim=1)
    found = torch.stack((flat % SIZE, flat // SIZE), dim=-1).float() + 0.5
    expected = views.points_to_view(p, theta, SIZE)[:, 0]
    assert (found - expected).norm(dim=-1).max() <= 1.0


def test_a_heatmap_mapped_into_a_view_and_back_returns_to_itself():
    theta, p = _thetas(), _points()
    maps, _ = heatmap.encode(p, torch.ones(p.shape[:2]), SIZE, H, sigma=2.0)
    there = views.heatmaps_to_view(maps, theta, SIZE)
    back = views.heatmaps_from_view(there, theta, SIZE)
    assert (back - maps).abs().max() < 0.15  # bilinear interpolation, twice
    assert torch.equal(heatmap.decode(back)[0], heatmap.decode(maps)[0])  # same peaks


def test_a_heatmap_in_a_view_peaks_where_its_keypoint_maps():
    theta, p = _thetas(), _points()
    maps, _ = heatmap.encode(p, torch.ones(p.shape[:2]), SIZE, H, sigma=2.0)
    there = heatmap.decode(views.heatmaps_to_view(maps, theta, SIZE))[0].float()
    expected = heatmap.keypoint_centres(views.points_to_view(p, theta, SIZE), SIZE / H).float()
    assert (there - expected).norm(dim=-1).max() <= 1.5  # one heatmap pixel, either axis


def test_occlusion_replaces_a_square_by_content_from_elsewhere_and_nan_leaves_it():
    x = torch.rand(2, 3, SIZE, SIZE)
    centres = torch.tensor([[32.0, 32.0], [float("nan"), float("nan")]])
    out = views.occlude(x, centres, side=0.25, offsets=torch.tensor([[0.25, 0.0], [0.25, 0.0]]))
    assert torch.equal(out[1], x[1])
    assert torch.equal(out[0, :, :8, :], x[0, :, :8, :])  # outside the square
    inside = out[0, :, 26:38, 26:38]
    assert torch.allclose(inside, x[0, :, 26:38, 42:54], atol=1e-5)  # 16 px to the right


def test_colour_factors_of_one_change_nothing():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(views.colour(x, torch.ones(2, 3)), x, atol=1e-6)
