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


class _Recorded:
    """A disparity loss that records the (mode, keypoint weights) of every call."""

    def __init__(self, loss, calls: list):
        self.loss, self.calls = loss, calls

    def __call__(self, y, y_adv, weight, mode):
        self.calls.append((mode, weight))
        return self.loss(y, y_adv, weight, mode)


def test_regda_mt_steps_b_and_c_learn_only_from_the_teachers_pseudo_labels_when_asked(tiny_cfg):
    """regda_mt.pseudo_labels teacher: steps B and C weigh the target keypoints by the mask of
    the teacher's pseudo labels of the same batch; all (RegDA's own): every keypoint."""
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.build import model_for
    from regda_dist.engine.runtime import Runtime
    from regda_dist.methods.mean_teacher import TeacherViews
    from regda_dist.methods.regda_mean_teacher import RegDAMeanTeacherStep

    task = build_task(tiny_cfg.data)
    tiny_cfg.adapt.method, tiny_cfg.mean_teacher.keep = "regda+mean_teacher", 0.3
    seen = {}
    for labels in ("all", "teacher"):
        tiny_cfg.regda_mt.pseudo_labels = labels
        torch.manual_seed(0)
        step = RegDAMeanTeacherStep.from_config(
            model_for(tiny_cfg, Runtime(), task.spec.num_keypoints), tiny_cfg, Runtime()
        )
        weights = []
        step.disparity = _Recorded(step.disparity, weights)
        views = TeacherViews(task.target_train, step.teacher.cfg)
        batch = [views[(i, 100 + i)] for i in range(4)]
        x_t = torch.stack([b[0] for b in batch])
        params = {k: torch.stack([b[1][k] for b in batch]) for k in batch[0][1]}
        source = [task.source_train[i] for i in range(4)]
        x_s, kp, vis = (torch.stack(t) for t in zip(*source, strict=True))
        d = tiny_cfg.data
        target, weight = heatmap.encode(kp, vis, d.image_size, d.heatmap_size, 2.0)
        step(x_s.float(), target, weight, (x_t, params))
        mask = step.teacher.last_mask.float()
        seen[labels] = weights[-2:]  # steps B (max) and C (min), after step A's own
        assert 0 < mask.mean() < 1
        for _, w in seen[labels]:
            expected = mask if labels == "teacher" else torch.ones_like(mask)
            assert torch.equal(w.float(), expected)
    assert [m for m, _ in seen["teacher"]] == ["max", "min"]
