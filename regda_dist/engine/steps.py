"""One adaptation iteration per method (adapt.method: a registered step class), and one
supervised iteration, with their optimisers.

A step class is built by `create_step(name, model, cfg, runtime, domain, sync)` and gives the
trainer:
`optimizers` and `schedules` (checkpointed), `target_data(split)` (what its target loader
yields), `__call__(x_s, target_s, weight_s, batch_t) -> logs`, `evaluated` (the model that is
evaluated and exported) and `state_dict()` / `load_state_dict(state)` for what else it keeps.

`sync` all-reduces the gradients of exactly the parameters an optimiser is about to update; it
is a no-op in one process and an all-reduce under Ray Train (engine/overlap.py: launched during
backward). Every step zeroes with set_to_none exactly the optimisers it steps, as
OverlappedSync expects. No step depends on DDP's bookkeeping
of which parameters received gradients, so none can hang on an unused parameter.

Forward passes run under `autocast` (bf16 on CUDA by default); losses are computed in float32.
Steps return their losses as detached device tensors: nothing waits on the device per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from regda_dist.engine.mean_teacher import MeanTeacher, TeacherViews
from regda_dist.losses import JointsKLLoss, RegressionDisparity
from regda_dist.models.regda import RegDAModel
from regda_dist.registry import Registry

Sync = Callable[[Sequence[nn.Parameter]], None]
Autocast = Callable[[], AbstractContextManager]
Domain = Callable[[str], AbstractContextManager]  # the context of a pass on "source"/"target"


def no_domain(name: str) -> AbstractContextManager:
    del name
    return nullcontext()


def no_sync(params: Sequence[nn.Parameter]) -> None:
    del params


def _params(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


def _step(opt: torch.optim.Optimizer, sync: Sync) -> None:
    sync(_params(opt))
    opt.step()


def sgd(param_groups: list[dict], optim_cfg) -> torch.optim.SGD:
    return torch.optim.SGD(
        param_groups,
        momentum=optim_cfg.momentum,
        nesterov=optim_cfg.nesterov,
        weight_decay=optim_cfg.weight_decay,
    )


def adaptation_optimizers(model: RegDAModel, optim_cfg):
    """(optimizer_f, optimizer_h, optimizer_h_adv) and their per-iteration lr schedules."""
    opt_f = sgd([{"params": model.feature_parameters(), "lr": optim_cfg.backbone_lr}], optim_cfg)
    opt_h = sgd([{"params": list(model.head.parameters()), "lr": optim_cfg.lr}], optim_cfg)
    opt_h_adv = sgd([{"params": list(model.head_adv.parameters()), "lr": optim_cfg.lr}], optim_cfg)
    decay = lambda i: (1 + optim_cfg.lr_gamma * i) ** (-optim_cfg.lr_decay)  # noqa: E731
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_f, opt_h, opt_h_adv)]
    return (opt_f, opt_h, opt_h_adv), schedules


def supervised_step(
    model: RegDAModel,
    opt,
    x,
    target,
    weight,
    sync: Sync = no_sync,
    autocast: Autocast = nullcontext,
) -> torch.Tensor:
    """Phase 1 (and oracle): backbone + upsampling + head on labelled images."""
    opt.zero_grad(set_to_none=True)
    with autocast():
        y = model.head(model.features(x))
    loss = JointsKLLoss()(y.float(), target, weight)
    loss.backward()
    _step(opt, sync)
    return loss.detach()


class RegDAStep:
    """Steps A, B, C of one adaptation iteration (REGDA_SPEC.md section 3)."""

    def __init__(
        self,
        model: RegDAModel,
        optimizers,
        margin: float,
        trade_off: float,
        sigma: float,
        sync: Sync = no_sync,
        autocast: Autocast = nullcontext,
        domain: Domain = no_domain,
    ):
        self.model, self.sync, self.autocast, self.domain = model, sync, autocast, domain
        self.opt_f, self.opt_h, self.opt_h_adv = optimizers
        self.margin, self.trade_off = margin, trade_off
        self.kl, self.disparity = JointsKLLoss(), RegressionDisparity(sigma)

    @classmethod
    def from_config(cls, model: RegDAModel, cfg, runtime, domain: Domain = no_domain, sync=None):
        """The step of `cfg` (regda:, optim:) for `model`, with its optimisers and schedules."""
        optimizers, schedules = adaptation_optimizers(model, cfg.optim)
        r, rt = cfg.regda, runtime
        step = cls(model, optimizers, r.margin, r.trade_off, cfg.adapt_sigma,
                   sync or rt.comm.sync, rt.autocast, domain)  # fmt: skip
        step.schedules = schedules
        return step

    @property
    def optimizers(self) -> tuple:
        return self.opt_f, self.opt_h, self.opt_h_adv

    @property
    def evaluated(self) -> RegDAModel:
        """The model evaluated and exported: the trained one."""
        return self.model

    def target_data(self, split):
        """What the target loader yields: the images."""
        return split

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state

    def step_a(self, x_s, target_s, weight_s, extra=None) -> dict[str, torch.Tensor]:
        """All parameters, on labelled source: supervised KL + margin * trade_off * RD_min
        (+ `extra()`: a further (loss, logs) of the same update, e.g. a consistency loss)."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        with self.autocast(), self.domain("source"):
            y_s, y_s_adv = self.model(x_s)
        y_s, y_s_adv = y_s.float(), y_s_adv.float()
        loss_s = self.kl(y_s, target_s, weight_s)
        loss_a = loss_s + self.margin * self.trade_off * self.disparity(
            y_s, y_s_adv, weight_s, "min"
        )
        loss_extra, logs = extra() if extra is not None else (0.0, {})
        (loss_a + loss_extra).backward()
        for opt in self.optimizers:
            _step(opt, self.sync)
        return {"train/loss_s": loss_s.detach(), "train/loss_a": loss_a.detach(), **logs}

    def step_b(self, x_t, weight_t) -> torch.Tensor:
        """head_adv only, on target: move f' towards the ground-false distribution (RD_max).
        psi gets no update in this step, so its forward runs without autograd."""
        self.opt_h_adv.zero_grad(set_to_none=True)
        with self.autocast(), self.domain("target"):
            with torch.no_grad():
                feature_t = self.model.features(x_t)
                y_t = self.model.head(feature_t)
            y_t_adv = self.model.head_adv(feature_t)
        loss_b = self.trade_off * self.disparity(y_t.float(), y_t_adv.float(), weight_t, "max")
        loss_b.backward()
        _step(self.opt_h_adv, self.sync)
        return loss_b.detach()

    def step_c(self, x_t, weight_t) -> torch.Tensor:
        """psi only, on target: make f' agree with f's pseudo labels (RD_min). The gradient
        reaches psi only through head_adv and the warm-start gradient layer."""
        self.opt_f.zero_grad(set_to_none=True)
        with self.autocast(), self.domain("target"):
            y_t, y_t_adv = self.model(x_t)
        loss_c = self.trade_off * self.disparity(y_t.float(), y_t_adv.float(), weight_t, "min")
        loss_c.backward()
        _step(self.opt_f, self.sync)
        return loss_c.detach()

    def __call__(self, x_s, target_s, weight_s, x_t, extra=None) -> dict:
        logs = self.step_a(x_s, target_s, weight_s, extra)
        # Target weights never come from target labels: every keypoint counts (w_t = 1).
        weight_t = torch.ones(x_t.shape[0], target_s.shape[1], device=x_t.device)
        logs["train/loss_b"] = self.step_b(x_t, weight_t)
        logs["train/loss_c"] = self.step_c(x_t, weight_t)
        logs["train/lambda"] = self.model.grl.coeff
        self.model.grl.step()
        return logs


class _WithTeacher:
    """What a step with a mean teacher (`self.teacher`) gives the trainer."""

    teacher: MeanTeacher

    def _add_teacher(self, model: RegDAModel, cfg, runtime) -> None:
        mt = cfg.mean_teacher
        self.teacher = MeanTeacher(model, mt, cfg.adapt_sigma, cfg.data.image_size, runtime)

    @property
    def evaluated(self) -> RegDAModel:
        """The teacher is evaluated and exported."""
        return self.teacher.teacher

    def target_data(self, split):
        """Target images with the parameters of their views (per-sample seeds)."""
        return TeacherViews(split, self.teacher.cfg)

    def state_dict(self) -> dict:
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state)


class MeanTeacherStep(_WithTeacher):
    """adapt.method mean_teacher: the student (psi + main head; optim's SGD and schedule) on
    labelled source plus the teacher's consistency loss on target (engine/mean_teacher.py);
    then the teacher's EMA update."""

    def __init__(self, model: RegDAModel, cfg, runtime, domain: Domain = no_domain, sync=None):
        optimizers, schedules = adaptation_optimizers(model, cfg.optim)
        self.model, self.domain, self.runtime = model, domain, runtime
        self.sync = sync or runtime.comm.sync
        self.optimizers, self.schedules = optimizers[:2], schedules[:2]
        self.kl = JointsKLLoss()
        self._add_teacher(model, cfg, runtime)

    @classmethod
    def from_config(cls, model: RegDAModel, cfg, runtime, domain: Domain = no_domain, sync=None):
        return cls(model, cfg, runtime, domain, sync)

    def __call__(self, x_s, target_s, weight_s, batch_t) -> dict:
        x_t, params = batch_t
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        with self.runtime.autocast(), self.domain("source"):
            y_s = self.model.head(self.model.features(x_s))
        loss_s = self.kl(y_s.float(), target_s, weight_s)
        loss_c, logs = self.teacher.consistency(x_t, params, self.domain)
        (loss_s + loss_c).backward()
        for opt in self.optimizers:
            _step(opt, self.sync)
        self.teacher.update()
        return {"train/loss_s": loss_s.detach(), **logs}


class RegDAMeanTeacherStep(_WithTeacher, RegDAStep):
    """adapt.method regda+mean_teacher: RegDA's steps A, B, C with the teacher's consistency
    loss added to step A (the update of every part); the teacher follows the RegDA model."""

    @classmethod
    def from_config(cls, model: RegDAModel, cfg, runtime, domain: Domain = no_domain, sync=None):
        step = super().from_config(model, cfg, runtime, domain, sync)
        step._add_teacher(model, cfg, runtime)
        return step

    def __call__(self, x_s, target_s, weight_s, batch_t, extra=None) -> dict:
        x_t, params = batch_t
        logs = super().__call__(
            x_s, target_s, weight_s, x_t, lambda: self.teacher.consistency(x_t, params, self.domain)
        )
        self.teacher.update()
        return logs


STEPS: Registry[type] = Registry("adapt.method")
STEPS.register("regda", RegDAStep)
STEPS.register("mean_teacher", MeanTeacherStep)
STEPS.register("regda+mean_teacher", RegDAMeanTeacherStep)


def create_step(
    method: str, model: RegDAModel, cfg, runtime, domain: Domain = no_domain, sync: Sync = None
):
    """The step class of adapt.method `method`, built for `model` from `cfg`; `sync` (default:
    the runtime's synchronous one) all-reduces gradients before each optimiser step."""
    return STEPS.get(method).from_config(model, cfg, runtime, domain, sync)
