"""What an adaptation method is (`Method`), and the parts its step classes share: optimisers,
their schedule, and the supervised step of phase 1.

A method's step class is built by `from_config(model, cfg, runtime, domain, sync)` and gives the
trainer: `optimizers` and `schedules` (checkpointed), `target_data(split)` (what its target
loader yields), `__call__(x_s, target_s, weight_s, batch_t) -> logs`, `evaluated` (the model
that is evaluated and exported) and `state_dict()` / `load_state_dict(state)` for what else it
keeps.

`sync` all-reduces the gradients of exactly the parameters an optimiser is about to update; it
is a no-op in one process and an all-reduce under Ray Train (engine/overlap.py: launched during
backward). Every step zeroes with set_to_none exactly the optimisers it steps, as OverlappedSync
expects. No step depends on DDP's bookkeeping of which parameters received gradients, so none
can hang on an unused parameter.

Forward passes run under `autocast` (bf16 on CUDA by default); losses are computed in float32.
Steps return their losses as detached device tensors: nothing waits on the device per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from regda_dist.losses import JointsKLLoss

if TYPE_CHECKING:  # the config is passed in; this layer sits below it
    from regda_dist.config import Config

Sync = Callable[[Sequence[nn.Parameter]], None]
Autocast = Callable[[], AbstractContextManager]
Domain = Callable[[str], AbstractContextManager]  # the context of a pass on "source"/"target"


@dataclass(frozen=True)
class Method:
    """One value of adapt.method, declared once in its own module (methods/<name>.py).

    name: its adapt.method value. label: how users read it. step: its step class (None for a
    baseline: no phase 2, the run is phase 1's model). sections: the config sections it reads
    (its own knobs; a trial of it samples only those and the shared ones), `declares` the
    dataclasses of the sections this module owns (Config is composed of them). space: its knobs
    in the default search space. teacher: it evaluates and exports a teacher, not the model it
    trains. head_init: adapt.head_init 'auto' for it ('phase1' or 'fresh'). problems: what it
    cannot run with, one line each. judge_from: the first epoch a scheduler may judge a trial
    of it by (its adaptation has begun: `waits_for` says on what), and rung_fields the fields
    that epoch is computed from (a search cannot vary them under ASHA). blind_proxies: the
    proxies that mean nothing for it ({name: why}; refused as its selection metric).
    needs_bones: it reads the keypoint set's skeleton (refused on a set without bones).
    searched_by_default: it is among the default search space's methods (a method joins it
    once measured to help: docs/methods.md)."""

    name: str
    label: str
    step: type | None = None
    sections: tuple[str, ...] = ()
    declares: dict[str, type] = field(default_factory=dict)
    space: dict[str, dict] = field(default_factory=dict)
    teacher: bool = False
    head_init: Callable[[Config], str] = lambda cfg: "phase1"
    problems: Callable[[Config], list[str]] = lambda cfg: []
    judge_from: Callable[[Config, float], int] = lambda cfg, share: 1
    waits_for: str = ""
    rung_fields: tuple[str, ...] = ()
    blind_proxies: dict[str, str] = field(default_factory=dict)
    needs_bones: bool = False
    searched_by_default: bool = True

    @property
    def baseline(self) -> bool:
        return self.step is None

    @property
    def shown_as(self) -> str:
        """The adapted model as users read it: a teacher method's model is its teacher."""
        return f"{self.label} (teacher)" if self.teacher else self.label


def epochs_until(iterations: float, iters_per_epoch: int) -> int:
    """The first epoch by whose end `iterations` iterations have run (at least 1)."""
    return max(1, math.ceil(iterations / iters_per_epoch - 1e-9))


def no_domain(name: str) -> AbstractContextManager:
    del name
    return nullcontext()


def no_sync(params: Sequence[nn.Parameter]) -> None:
    del params


def _params(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


def step_optimizer(opt: torch.optim.Optimizer, sync: Sync) -> None:
    """All-reduce the gradients `opt` is about to apply, then step it."""
    sync(_params(opt))
    opt.step()


def sgd(param_groups: list[dict], optim_cfg: Any) -> torch.optim.SGD:
    return torch.optim.SGD(
        param_groups,
        momentum=optim_cfg.momentum,
        nesterov=optim_cfg.nesterov,
        weight_decay=optim_cfg.weight_decay,
    )


def adaptation_optimizers(model: nn.Module, optim_cfg: Any):
    """(optimizer_f, optimizer_h, optimizer_h_adv) and their per-iteration lr schedules."""
    opt_f = sgd([{"params": model.feature_parameters(), "lr": optim_cfg.backbone_lr}], optim_cfg)
    opt_h = sgd([{"params": list(model.head.parameters()), "lr": optim_cfg.lr}], optim_cfg)
    opt_h_adv = sgd([{"params": list(model.head_adv.parameters()), "lr": optim_cfg.lr}], optim_cfg)
    decay = lambda i: (1 + optim_cfg.lr_gamma * i) ** (-optim_cfg.lr_decay)  # noqa: E731
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_f, opt_h, opt_h_adv)]
    return (opt_f, opt_h, opt_h_adv), schedules


def supervised_step(
    model: nn.Module,
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
    step_optimizer(opt, sync)
    return loss.detach()
