import math

import pytest
import torch

from regda_dist.data import heatmap

IMAGE, SIZE = 64, 16  # stride 4, as 256 -> 64 in the reference


def _encode_one(x, y, visible=1.0, sigma=2.0):
    maps, weights = heatmap.encode(
        torch.tensor([[[x, y]]]), torch.tensor([[visible]]), IMAGE, SIZE, sigma
    )
    assert maps.shape == (1, 1, SIZE, SIZE)
    assert weights.shape == (1, 1)
    return maps[0, 0], weights[0, 0]


def _expected_map(mu_x, mu_y, sigma, size=SIZE):
    radius = int(3 * sigma)
    out = torch.zeros(size, size)
    for y in range(size):
        for x in range(size):
            if abs(x - mu_x) <= radius and abs(y - mu_y) <= radius:
                out[y, x] = math.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / (2 * sigma**2))
    return out


@pytest.mark.parametrize(
    "coord, mu",
    [(0.0, 0), (1.9, 0), (2.0, 1), (5.9, 1), (6.0, 2), (29.0, 7), (30.0, 8), (-2.0, 0), (-2.1, -1)],
)
def test_keypoint_centres_is_floor_of_scaled_plus_half(coord, mu):
    centres = heatmap.keypoint_centres(torch.tensor([[coord, 33.0]]), 4.0)
    assert centres.dtype == torch.long
    assert centres.tolist() == [[mu, 8]]  # 33 / 4 + 0.5 = 8.75 -> 8


def test_encode_centre_and_peak():
    # x = 32 -> 8.5 -> 8; y = 21 -> 5.75 -> 5
    maps, weight = _encode_one(32.0, 21.0)
    assert weight.item() == 1.0
    assert maps[5, 8].item() == 1.0
    assert maps.max().item() == 1.0
    assert (maps == 1.0).nonzero().tolist() == [[5, 8]]  # (row = y, col = x)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_encode_gaussian_values(sigma):
    maps, _ = _encode_one(32.0, 21.0, sigma=sigma)  # mu = (8, 5)
    one_step = math.exp(-1 / (2 * sigma**2))
    assert maps[5, 9].item() == pytest.approx(one_step, rel=1e-6)  # offset (1, 0)
    assert maps[5, 7].item() == pytest.approx(one_step, rel=1e-6)  # offset (-1, 0)
    assert maps[6, 8].item() == pytest.approx(one_step, rel=1e-6)  # offset (0, 1)
    assert maps[6, 9].item() == pytest.approx(math.exp(-2 / (2 * sigma**2)), rel=1e-6)
    torch.testing.assert_close(maps, _expected_map(8, 5, sigma), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_encode_truncated_beyond_int_three_sigma(sigma):
    maps, _ = _encode_one(32.0, 21.0, sigma=sigma)  # mu = (8, 5)
    r = int(3 * sigma)
    # inside the (2r + 1)^2 square window: positive, including its corners
    assert maps[5, 8 + r].item() > 0
    assert maps[5, 8 - r].item() > 0
    assert maps[5 + r, 8].item() > 0
    assert maps[5 + r, 8 + r].item() > 0
    # one step beyond in x or y: exactly zero
    assert maps[5, 8 + r + 1].item() == 0.0
    assert maps[5, 8 - r - 1].item() == 0.0
    assert maps[5 + r + 1, 8].item() == 0.0
    assert maps[:, : 8 - r].abs().sum().item() == 0.0
    assert maps[:, 8 + r + 1 :].abs().sum().item() == 0.0
    assert maps[5 + r + 1 :, :].abs().sum().item() == 0.0
    assert int((maps > 0).sum()) == (2 * r + 1) * min(2 * r + 1, 5 + r + 1)


def test_encode_invisible_keypoint_is_empty():
    maps, weight = _encode_one(32.0, 21.0, visible=0.0)
    assert weight.item() == 0.0
    assert maps.abs().sum().item() == 0.0


@pytest.mark.parametrize(
    "x, y",
    [(62.0, 20.0), (20.0, 62.0), (-2.1, 20.0), (20.0, -2.1), (100.0, 100.0), (-40.0, 10.0)],
)
def test_encode_centre_outside_map_is_empty(x, y):
    maps, weight = _encode_one(x, y)
    assert weight.item() == 0.0
    assert maps.abs().sum().item() == 0.0


def test_encode_invalid_keypoint_does_not_affect_others():
    kps = torch.tensor([[[32.0, 21.0], [100.0, 5.0], [10.0, 10.0]]])
    vis = torch.tensor([[1.0, 1.0, 0.0]])
    maps, weights = heatmap.encode(kps, vis, IMAGE, SIZE, 2.0)
    assert weights.tolist() == [[1.0, 0.0, 0.0]]
    torch.testing.assert_close(maps[0, 0], _expected_map(8, 5, 2.0), rtol=1e-6, atol=1e-7)
    assert maps[0, 1:].abs().sum().item() == 0.0


@pytest.mark.parametrize(
    "x, y, mu",
    [(0.0, 0.0, (0, 0)), (-2.0, -2.0, (0, 0)), (61.9, 61.9, (15, 15)), (0.0, 61.0, (0, 15))],
)
def test_encode_border_keypoint_is_truncated_with_weight_one(x, y, mu):
    sigma = 2.0
    maps, weight = _encode_one(x, y, sigma=sigma)
    assert weight.item() == 1.0
    assert maps[mu[1], mu[0]].item() == 1.0
    r = int(3 * sigma)
    assert int((maps > 0).sum()) == (r + 1) ** 2  # a quarter window survives in a corner
    torch.testing.assert_close(maps, _expected_map(mu[0], mu[1], sigma), rtol=1e-6, atol=1e-7)


def test_encode_batch_dims():
    torch.manual_seed(0)
    kps = torch.rand(2, 3, 4, 2) * 80 - 8  # some fall outside the image
    vis = (torch.rand(2, 3, 4) > 0.3).float()
    maps, weights = heatmap.encode(kps, vis, IMAGE, SIZE, 2.0)
    assert maps.shape == (2, 3, 4, SIZE, SIZE)
    assert weights.shape == (2, 3, 4)
    for i in range(2):
        for j in range(3):
            m, w = heatmap.encode(kps[i, j], vis[i, j], IMAGE, SIZE, 2.0)
            assert torch.equal(maps[i, j], m)
            assert torch.equal(weights[i, j], w)
            for k in range(4):
                mu_x, mu_y = (math.floor(v / 4 + 0.5) for v in kps[i, j, k].tolist())
                ok = vis[i, j, k] > 0 and 0 <= mu_x < SIZE and 0 <= mu_y < SIZE
                assert weights[i, j, k].item() == float(ok)
                expected = _expected_map(mu_x, mu_y, 2.0) if ok else torch.zeros(SIZE, SIZE)
                torch.testing.assert_close(maps[i, j, k], expected, rtol=1e-6, atol=1e-7)


def test_decode_returns_x_y_of_argmax_and_peak():
    maps = torch.zeros(1, 2, 5, 7)  # H = 5, W = 7: rows are y, columns are x
    maps[0, 0, 3, 6] = 2.5  # x = 6, y = 3
    maps[0, 1] = -1.0
    maps[0, 1, 4, 1] = -0.5  # x = 1, y = 4: an all-negative map still decodes its argmax
    coords, peaks = heatmap.decode(maps)
    assert coords.dtype == torch.long
    assert coords.tolist() == [[[6, 3], [1, 4]]]
    assert peaks.tolist() == [[2.5, -0.5]]


def test_decode_batch_dims_match_loop():
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 4, 5, 7)
    coords, peaks = heatmap.decode(maps)
    assert coords.shape == (2, 3, 4, 2)
    assert peaks.shape == (2, 3, 4)
    for idx in torch.cartesian_prod(torch.arange(2), torch.arange(3), torch.arange(4)).tolist():
        m = maps[tuple(idx)]
        flat = int(m.argmax())
        assert coords[tuple(idx)].tolist() == [flat % 7, flat // 7]
        assert peaks[tuple(idx)].item() == m.max().item()


def test_encode_decode_round_trip():
    kps = torch.tensor([[[32.0, 21.0], [3.0, 58.0], [61.0, 1.0]]])
    maps, _ = heatmap.encode(kps, torch.ones(1, 3), IMAGE, SIZE, 2.0)
    coords, peaks = heatmap.decode(maps)
    assert coords.tolist() == [[[8, 5], [1, 15], [15, 0]]]
    assert peaks.tolist() == [[1.0, 1.0, 1.0]]
