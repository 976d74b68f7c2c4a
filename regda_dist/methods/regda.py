"""adapt.method regda: RegDA's steps A, B, C (REGDA_SPEC.md section 3), and its `regda:` knobs."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from regda_dist.fields import bounded
from regda_dist.losses import JointsKLLoss, RegressionDisparity
from regda_dist.methods.base import (
    Autocast,
    Domain,
    Method,
    Sync,
    adaptation_optimizers,
    epochs_until,
    no_domain,
    no_sync,
    step_optimizer,
)


@dataclass
class RegDAConfig:
    """RegDA's trade-offs and the warm-start of its adversarial head's gradient layer:
    lambda(i) = lo + (hi - lo) (2 / (1 + e^(-alpha i / N)) - 1), N = warm_max_iters."""

    margin: float = field(default=4.0, metadata=bounded(0.0))
    trade_off: float = field(default=1.0, metadata=bounded(0.0))
    warm_lo: float = field(default=0.0, metadata=bounded(0.0))
    warm_hi: float = field(default=0.1, metadata=bounded(0.0))
    warm_alpha: float = field(default=1.0, metadata=bounded(0.0))
    warm_max_iters: int = field(default=1000, metadata=bounded(1))

    def problems(self) -> list[str]:
        """What the section cannot hold whatever the method (config/validate.py)."""
        if self.warm_hi < self.warm_lo:
            return [f"regda.warm_hi ({self.warm_hi}) < regda.warm_lo"]
        return []


class RegDAStep:
    """Steps A, B, C of one adaptation iteration (REGDA_SPEC.md section 3)."""

    def __init__(
        self,
        model,
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
    def from_config(cls, model, cfg, runtime, domain: Domain = no_domain, sync=None):
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
    def evaluated(self):
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
            step_optimizer(opt, self.sync)
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
        step_optimizer(self.opt_h_adv, self.sync)
        return loss_b.detach()

    def step_c(self, x_t, weight_t) -> torch.Tensor:
        """psi only, on target: make f' agree with f's pseudo labels (RD_min). The gradient
        reaches psi only through head_adv and the warm-start gradient layer."""
        self.opt_f.zero_grad(set_to_none=True)
        with self.autocast(), self.domain("target"):
            y_t, y_t_adv = self.model(x_t)
        loss_c = self.trade_off * self.disparity(y_t.float(), y_t_adv.float(), weight_t, "min")
        loss_c.backward()
        step_optimizer(self.opt_f, self.sync)
        return loss_c.detach()

    def __call__(self, x_s, target_s, weight_s, x_t, extra=None, target_weights=None) -> dict:
        """One iteration; `target_weights()` (after step A): (B, K) weights of the target
        keypoints in steps B and C (default: every keypoint counts)."""
        logs = self.step_a(x_s, target_s, weight_s, extra)
        # Target weights never come from target labels: every keypoint counts (w_t = 1), or
        # those `target_weights` (label-free: a teacher's pseudo-label mask) keeps.
        weight_t = torch.ones(x_t.shape[0], target_s.shape[1], device=x_t.device)
        if target_weights is not None:
            weight_t = target_weights().to(weight_t.dtype)
        logs["train/loss_b"] = self.step_b(x_t, weight_t)
        logs["train/loss_c"] = self.step_c(x_t, weight_t)
        logs["train/lambda"] = self.model.grl.coeff
        self.model.grl.step()
        return logs


def warm_start_epochs(cfg, share: float) -> int:
    """The first epoch by whose end the warm-start lambda has risen by `share` of its way from
    regda.warm_lo to regda.warm_hi: lambda(i) = lo + (hi - lo) (2 / (1 + e^(-alpha i / N)) - 1)
    reaches it at i = N / alpha ln((1 + share) / (1 - share)) iterations. Before it, the
    adversarial head has barely begun to move the features."""
    r = cfg.regda
    if r.warm_hi <= r.warm_lo or r.warm_alpha <= 0:  # lambda never rises: nothing to wait for
        return 1
    iters = r.warm_max_iters / r.warm_alpha * math.log((1 + share) / (1 - share))
    return epochs_until(iters, cfg.adapt.iters_per_epoch)


def same_head_as_phase1(cfg) -> str:
    """RegDA's main head starts from phase 1's where phase 1 trains the same head (no cost at
    3 seeds; benchmarks/results/ablation.md), else fresh (the reference)."""
    same = (cfg.pretrain.head_layers or cfg.model.num_head_layers) == cfg.model.num_head_layers
    return "phase1" if same else "fresh"


METHOD = Method(
    name="regda",
    label="RegDA",
    step=RegDAStep,
    sections=("regda",),
    declares={"regda": RegDAConfig},
    space={  # ranges around the reference defaults of REGDA_SPEC.md
        "regda.trade_off": {"loguniform": [0.1, 10.0]},
        "regda.margin": {"uniform": [1.0, 8.0]},
        "regda.warm_hi": {"loguniform": [0.03, 0.3]},
    },
    head_init=same_head_as_phase1,
    judge_from=warm_start_epochs,
    waits_for="warm-start lambda",
    rung_fields=("regda.warm_alpha", "regda.warm_max_iters"),
)
