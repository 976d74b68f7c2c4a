"""One RegDA iteration (steps A, B, C) and one supervised iteration, with their optimisers.

`sync` all-reduces the gradients of exactly the parameters an optimiser is about to update; it
is a no-op in one process and an all-reduce under Ray Train. No step depends on DDP's bookkeeping
of which parameters received gradients, so none can hang on an unused parameter.

Forward passes run under `autocast` (bf16 on CUDA by default); losses are computed in float32.
Steps return their losses as detached device tensors: nothing waits on the device per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from regda_dist.losses import JointsKLLoss, RegressionDisparity
from regda_dist.models.regda import RegDAModel

Sync = Callable[[Sequence[nn.Parameter]], None]
Autocast = Callable[[], AbstractContextManager]


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
    ):
        self.model, self.sync, self.autocast = model, sync, autocast
        self.opt_f, self.opt_h, self.opt_h_adv = optimizers
        self.margin, self.trade_off = margin, trade_off
        self.kl, self.disparity = JointsKLLoss(), RegressionDisparity(sigma)

    def step_a(self, x_s, target_s, weight_s) -> dict[str, torch.Tensor]:
        """All parameters, on labelled source: supervised KL + margin * trade_off * RD_min."""
        for opt in (self.opt_f, self.opt_h, self.opt_h_adv):
            opt.zero_grad(set_to_none=True)
        with self.autocast():
            y_s, y_s_adv = self.model(x_s)
        y_s, y_s_adv = y_s.float(), y_s_adv.float()
        loss_s = self.kl(y_s, target_s, weight_s)
        loss_a = loss_s + self.margin * self.trade_off * self.disparity(
            y_s, y_s_adv, weight_s, "min"
        )
        loss_a.backward()
        for opt in (self.opt_f, self.opt_h, self.opt_h_adv):
            _step(opt, self.sync)
        return {"train/loss_s": loss_s.detach(), "train/loss_a": loss_a.detach()}

    def step_b(self, x_t, weight_t) -> torch.Tensor:
        """head_adv only, on target: move f' towards the ground-false distribution (RD_max).
        psi gets no update in this step, so its forward runs without autograd."""
        self.opt_h_adv.zero_grad(set_to_none=True)
        with self.autocast():
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
        with self.autocast():
            y_t, y_t_adv = self.model(x_t)
        loss_c = self.trade_off * self.disparity(y_t.float(), y_t_adv.float(), weight_t, "min")
        loss_c.backward()
        _step(self.opt_f, self.sync)
        return loss_c.detach()

    def __call__(self, x_s, target_s, weight_s, x_t) -> dict:
        logs = self.step_a(x_s, target_s, weight_s)
        # Target weights never come from target labels: every keypoint counts (w_t = 1).
        weight_t = torch.ones(x_t.shape[0], target_s.shape[1], device=x_t.device)
        logs["train/loss_b"] = self.step_b(x_t, weight_t)
        logs["train/loss_c"] = self.step_c(x_t, weight_t)
        logs["train/lambda"] = self.model.grl.coeff
        self.model.grl.step()
        return logs
