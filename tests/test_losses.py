import math

import pytest
import torch

from regda_dist.losses import (
    JointsKLLoss,
    JointsMSELoss,
    RegressionDisparity,
    joints_kl,
    pseudo_labels,
)


def _kl_by_hand(logits, target, eps=0.0):
    """KL(normalise(target + eps) || softmax(logits)) of one (H, W) map, with explicit ops."""
    lg = logits.flatten().tolist()
    tg = [v + eps for v in target.flatten().tolist()]
    log_z = math.log(sum(math.exp(v) for v in lg))
    mass = sum(tg)
    if mass == 0:
        return 0.0
    total = 0.0
    for t, lgt in zip(tg, lg, strict=True):
        t = t / mass
        if t > 0:
            total += t * (math.log(t) - (lgt - log_z))
    return total


def _gauss(x0, y0, sigma, size):
    r = int(3 * sigma)
    out = torch.zeros(size, size)
    for y in range(size):
        for x in range(size):
            if abs(x - x0) <= r and abs(y - y0) <= r:
                out[y, x] = math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    return out


def test_joints_kl_hand_computed_2x2():
    logits = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [3.0, 0.0]]]])
    z = math.exp(0) + math.exp(1) + math.exp(2) + math.exp(-1)
    q00, q10 = math.exp(0) / z, math.exp(2) / z
    expected = 0.25 * math.log(0.25 / q00) + 0.75 * math.log(0.75 / q10)
    loss = joints_kl(logits, target, torch.ones(1, 1))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_joints_kl_hand_computed_3x3_with_eps():
    logits = torch.tensor([[[[0.5, -0.2, 0.1], [1.5, 0.0, -1.0], [0.3, 0.3, 2.0]]]])
    target = torch.tensor([[[[0.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]]])
    loss = joints_kl(logits, target, torch.ones(1, 1), eps=0.1)
    assert loss.item() == pytest.approx(_kl_by_hand(logits[0, 0], target[0, 0], 0.1), rel=1e-5)
    # the module form uses the same eps
    module = JointsKLLoss(eps=0.1)(logits, target, torch.ones(1, 1))
    assert module.item() == pytest.approx(loss.item(), rel=1e-6)


def test_joints_kl_weight_and_mean_over_batch_and_keypoints():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.rand(2, 3, 4, 4)
    target[0, 1, :2] = 0.0  # some zero pixels
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 3.0]])
    per = [[_kl_by_hand(logits[b, k], target[b, k]) for k in range(3)] for b in range(2)]
    expected = sum(weight[b, k].item() * per[b][k] for b in range(2) for k in range(3)) / 6
    loss = joints_kl(logits, target, weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # doubling every weight doubles the loss; zero weights give zero
    assert joints_kl(logits, target, 2 * weight).item() == pytest.approx(2 * loss.item(), rel=1e-6)
    assert joints_kl(logits, target, torch.zeros(2, 3)).item() == 0.0
    # the target scale does not matter (it is normalised)
    assert joints_kl(logits, 7 * target, weight).item() == pytest.approx(loss.item(), rel=1e-5)


def test_joints_kl_empty_target_gives_zero_loss_and_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.rand(2, 3, 4, 4)
    target[0, 1] = 0.0  # empty maps with weight 1: must be masked, not NaN
    target[1, 2] = 0.0
    weight = torch.ones(2, 3)
    loss = joints_kl(logits, target, weight, eps=0.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    assert torch.equal(logits.grad[0, 1], torch.zeros(4, 4))
    assert torch.equal(logits.grad[1, 2], torch.zeros(4, 4))
    assert logits.grad[0, 0].abs().sum() > 0  # non-empty maps still get a gradient
    nonempty = [(b, k) for b in range(2) for k in range(3) if (b, k) not in ((0, 1), (1, 2))]
    expected = sum(_kl_by_hand(logits[b, k].detach(), target[b, k]) for b, k in nonempty) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_joints_kl_all_empty_targets_give_exactly_zero():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = joints_kl(logits, torch.zeros(2, 3, 4, 4), torch.ones(2, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_joints_kl_with_eps_is_finite_on_empty_map():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    target = torch.zeros(1, 2, 3, 3)
    target[0, 0, 1, 1] = 1.0
    loss = joints_kl(logits, target, torch.ones(1, 2), eps=1e-7)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # with eps the empty map becomes the uniform distribution
    expected = (
        _kl_by_hand(logits[0, 0].detach(), target[0, 0], 1e-7)
        + _kl_by_hand(logits[0, 1].detach(), target[0, 1], 1e-7)
    ) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    uniform = -math.log(9) - torch.log_softmax(logits[0, 1].detach().flatten(), 0).mean().item()
    assert _kl_by_hand(logits[0, 1].detach(), target[0, 1], 1e-7) == pytest.approx(uniform)


def test_joints_kl_perfect_prediction_is_zero():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 4, 4) + 0.1
    logits = torch.log(target / target.sum(dim=(-2, -1), keepdim=True))
    loss = joints_kl(logits, target, torch.ones(2, 3))
    assert abs(loss.item()) < 1e-6
    # shifting the logits by a constant does not change the softmax
    assert abs(joints_kl(logits + 5.0, target, torch.ones(2, 3)).item()) < 1e-6


def test_joints_kl_perfect_prediction_of_sparse_target_with_eps():
    target = _gauss(1, 2, 1.0, 8)[None, None]  # zeros outside the window
    eps = 1e-7
    t = target + eps
    logits = torch.log(t / t.sum())
    loss = joints_kl(logits, target, torch.ones(1, 1), eps=eps)
    assert abs(loss.item()) < 1e-6


def test_joints_kl_loss_rejects_negative_eps():
    with pytest.raises(ValueError):
        JointsKLLoss(eps=-1e-3)


def test_joints_mse_hand_computed():
    pred = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]], [[0.5, 0.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    target = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    weight = torch.tensor([[2.0, 1.0]])
    # map 0: 0.5 * (1 + 4 + 0 + 1) * 2 = 6; map 1: 0.5 * (0.25 + 1) * 1 = 0.625; mean over 8 pixels
    expected = (6.0 + 0.625) / 8
    assert JointsMSELoss()(pred, target, weight).item() == pytest.approx(expected)
    assert JointsMSELoss()(pred, target, torch.zeros(1, 2)).item() == 0.0


def _peaked_logits(points, size=16, batch=1):
    """Logits with a single positive maximum at each (x, y); random small values elsewhere."""
    logits = torch.rand(batch, len(points), size, size) - 1.0
    for k, (x, y) in enumerate(points):
        logits[:, k, y, x] = 3.0
    return logits


def _ground_false_by_loop(truth):
    b_, k_ = truth.shape[:2]
    out = torch.zeros_like(truth)
    for b in range(b_):
        for k in range(k_):
            acc = torch.zeros_like(truth[b, k])
            for j in range(k_):
                if j != k:
                    acc = acc + truth[b, j]
            out[b, k] = acc.clamp(0.0, 1.0)
    return out


def test_pseudo_labels_ground_truth_is_gaussian_at_argmax():
    torch.manual_seed(0)
    points = [(2, 3), (12, 4), (7, 13)]
    logits = _peaked_logits(points)
    truth, false = pseudo_labels(logits, sigma=2.0)
    assert truth.shape == false.shape == (1, 3, 16, 16)
    for k, (x, y) in enumerate(points):
        assert truth[0, k, y, x].item() == 1.0
        assert truth[0, k].max().item() == 1.0
        torch.testing.assert_close(truth[0, k], _gauss(x, y, 2.0, 16), rtol=1e-6, atol=1e-7)


def test_pseudo_labels_ground_false_is_clipped_sum_of_others():
    torch.manual_seed(0)
    points_b0 = [(2, 3), (12, 4), (7, 13)]
    points_b1 = [(5, 5), (6, 6), (9, 2)]  # overlapping Gaussians
    logits = torch.cat([_peaked_logits(points_b0), _peaked_logits(points_b1)])
    truth, false = pseudo_labels(logits, sigma=2.0)
    torch.testing.assert_close(false, _ground_false_by_loop(truth), rtol=0, atol=1e-6)
    assert false.min().item() >= 0.0
    assert false.max().item() <= 1.0


def test_pseudo_labels_ground_false_is_zero_at_own_argmax_when_others_far():
    torch.manual_seed(0)
    points = [(1, 1), (14, 1), (1, 14), (14, 14)]  # > int(3 sigma) = 6 apart in x or y
    logits = _peaked_logits(points)
    truth, false = pseudo_labels(logits, sigma=2.0)
    for k, (x, y) in enumerate(points):
        assert abs(false[0, k, y, x].item()) < 1e-6
        # and it peaks (at 1) where the other keypoints were predicted
        for j, (xj, yj) in enumerate(points):
            if j != k:
                assert false[0, k, yj, xj].item() == pytest.approx(1.0, abs=1e-6)


def test_pseudo_labels_overlapping_ground_false_clipped_at_one():
    torch.manual_seed(0)
    points = [(8, 8), (9, 8), (8, 9)]  # keypoints 1 and 2 overlap keypoint 0's position
    logits = _peaked_logits(points)
    truth, false = pseudo_labels(logits, sigma=2.0)
    raw = truth[0, 1] + truth[0, 2]
    assert raw.max().item() > 1.5  # without clipping it would exceed 1
    torch.testing.assert_close(false[0, 0], raw.clamp(max=1.0), rtol=0, atol=1e-6)
    assert false.max().item() == pytest.approx(1.0, abs=1e-6)
    assert false.max().item() <= 1.0


def test_pseudo_labels_do_not_propagate_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    truth, false = pseudo_labels(logits, sigma=2.0)
    assert not truth.requires_grad
    assert not false.requires_grad
    other = torch.randn(2, 3, 8, 8, requires_grad=True)
    (
        joints_kl(other, truth, torch.ones(2, 3)) + joints_kl(other, false, torch.ones(2, 3))
    ).backward()
    assert logits.grad is None
    assert other.grad is not None


@pytest.mark.parametrize("mode", ["min", "max"])
def test_regression_disparity_matches_kl_to_pseudo_labels(mode):
    torch.manual_seed(0)
    y = torch.randn(2, 3, 16, 16, requires_grad=True)
    y_adv = torch.randn(2, 3, 16, 16, requires_grad=True)
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.5]])
    truth, false = pseudo_labels(y, sigma=2.0)
    target = truth if mode == "min" else false
    expected = joints_kl(y_adv, target, weight, 1e-7)
    got = RegressionDisparity()(y, y_adv, weight, mode)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    other = joints_kl(y_adv, false if mode == "min" else truth, weight, 1e-7)
    assert got.item() != pytest.approx(other.item(), rel=1e-3)  # the two modes differ
    got.backward()
    assert y.grad is None  # pseudo labels are detached
    assert y_adv.grad is not None and y_adv.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["avg", "MIN", ""])
def test_regression_disparity_bad_mode_raises(mode):
    y = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match=repr(mode)):
        RegressionDisparity()(y, y.clone(), torch.ones(1, 2), mode)
