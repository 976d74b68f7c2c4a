"""Steps A, B, C: each updates exactly the part of the model the spec says, nothing else."""

import math

import torch

from regda_dist.config import ModelConfig, OptimConfig
from regda_dist.data import heatmap
from regda_dist.methods.base import adaptation_optimizers
from regda_dist.methods.regda import RegDAStep
from regda_dist.models.regda import build_model

K = 3


def _setup(trade_off=1.0):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="small_resnet", upsample_channels=8), K,
                        {"max_iters": 10})  # fmt: skip
    model.grl.load_state_dict({"iters": torch.tensor(50)})  # lambda > 0: step C reaches psi
    model.train()
    opts, schedules = adaptation_optimizers(model, OptimConfig())
    step = RegDAStep(model, opts, margin=4.0, trade_off=trade_off, sigma=2.0)
    x_s, x_t = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    kp = torch.rand(2, K, 2) * 60
    target, weight = heatmap.encode(kp, torch.ones(2, K), 64, 32, 2.0)
    return model, step, x_s, target, weight, x_t


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _changed(model, before):
    parts = set()
    for name, p in model.named_parameters():
        if not torch.equal(p, before[name]):
            parts.add(name.split(".")[0])
    return parts


def test_step_a_updates_every_part():
    model, step, x_s, target, weight, _ = _setup()
    before = _snapshot(model)
    step.step_a(x_s, target, weight)
    assert _changed(model, before) == {"backbone", "upsampling", "head", "head_adv"}


def test_step_b_updates_only_head_adv():
    model, step, x_s, target, weight, x_t = _setup()
    step.step_a(x_s, target, weight)  # momentum buffers exist for every optimiser
    before = _snapshot(model)
    step.step_b(x_t, torch.ones(2, K))
    assert _changed(model, before) == {"head_adv"}


def test_step_c_updates_only_feature_generator():
    model, step, x_s, target, weight, x_t = _setup()
    step.step_a(x_s, target, weight)
    before = _snapshot(model)
    step.step_c(x_t, torch.ones(2, K))
    assert _changed(model, before) == {"backbone", "upsampling"}


def test_step_c_gradient_reaches_psi_only_through_head_adv_scaled_by_lambda():
    model, step, _, _, _, x_t = _setup()
    grads = {}
    for iters in (0, 50):
        model.grl.load_state_dict({"iters": torch.tensor(iters)})
        step.opt_f.zero_grad()
        y_t, y_t_adv = model(x_t)
        step.disparity(y_t, y_t_adv, torch.ones(2, K), "min").backward()
        grads[iters] = model.upsampling[0].weight.grad.clone()
    assert torch.count_nonzero(grads[0]) == 0  # lambda(0) = 0: no gradient reaches psi
    assert torch.count_nonzero(grads[50]) > 0


def test_full_iteration_advances_warm_start_counter_and_logs_losses():
    model, step, x_s, target, weight, x_t = _setup()
    logs = step(x_s, target, weight, x_t)
    assert int(model.grl.iters) == 51
    assert set(logs) == {
        "train/loss_s",
        "train/loss_a",
        "train/loss_b",
        "train/loss_c",
        "train/lambda",
    }
    assert all(math.isfinite(float(v)) for v in logs.values())


def test_trade_off_zero_gives_zero_adversarial_losses():
    model, step, x_s, target, weight, x_t = _setup(trade_off=0.0)
    logs = step(x_s, target, weight, x_t)
    assert logs["train/loss_b"] == 0.0 and logs["train/loss_c"] == 0.0
    assert logs["train/loss_a"] == logs["train/loss_s"]


def test_sync_hook_sees_exactly_the_parameters_each_optimiser_steps():
    seen = []
    model, step, x_s, target, weight, x_t = _setup()
    step.sync = lambda params: seen.append({id(p) for p in params})
    step(x_s, target, weight, x_t)
    ids = lambda module: {id(p) for p in module.parameters()}  # noqa: E731
    psi = ids(model.backbone) | ids(model.upsampling)
    assert seen == [psi, ids(model.head), ids(model.head_adv), ids(model.head_adv), psi]
