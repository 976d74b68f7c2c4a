"""BatchNorm in phase 2 (adapt.batchnorm): which running statistics each domain is evaluated
and exported with.

Training normalises every pass with its own batch in every mode but `frozen`, so the weights a
run learns do not depend on the mode; the running statistics do, and they decide what the
weights are worth at evaluation. The reference keeps BatchNorm in train mode in its source pass
and its two target passes, so its running statistics mix both domains (`mixed`); a model
adapted that way can lose to plain AdaBN (BatchNorm statistics re-estimated on target images)
only because of the statistics it ends with (benchmarks/results/ablation.md).

- mixed: the running statistics training left (the reference).
- target: before every evaluation, re-estimated on the un-augmented train images of each domain
  (AdaBN on the current weights): target splits are evaluated with the target's, source splits
  with the source's. What selection, the proxies and the export see is the model a user gets.
- domain: running statistics tracked per domain during training (a source pass updates the
  source's, a target pass the target's; no extra pass); each domain evaluated with its own.
- frozen: BatchNorm normalises with its running statistics in every pass, training included
  (phase 1's for the feature generator); evaluation uses them too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

MODES = ("mixed", "target", "domain", "frozen")
DOMAINS = ("source", "target")


def norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze(model: nn.Module) -> nn.Module:
    """BatchNorm layers in eval mode (running statistics in every pass), the rest as it is."""
    for m in norms(model):
        m.eval()
    return model


class DomainStatistics(nn.Module):
    """Running mean and variance of every BatchNorm layer of a model, one set per domain, as
    buffers (checkpointed and broadcast like a model). While a domain is active (`track`), each
    BatchNorm layer in train mode folds its input batch's statistics into that domain's set with
    the layer's own momentum; the layers' own running statistics are left as they are."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._layers = norms(model)
        for domain in DOMAINS:
            for i, m in enumerate(self._layers):
                self.register_buffer(f"{domain}_{i}_mean", m.running_mean.detach().clone())
                self.register_buffer(f"{domain}_{i}_var", m.running_var.detach().clone())
        self.active: str | None = None
        for i, m in enumerate(self._layers):
            m.register_forward_pre_hook(self._hook(i))

    def _hook(self, i: int):
        def track(module: nn.Module, inputs: tuple) -> None:
            if self.active is None or not module.training:
                return
            x = inputs[0].detach().float()  # (B, C, H, W)
            dims = [d for d in range(x.dim()) if d != 1]
            n = x.numel() // x.shape[1]
            mean, var = x.mean(dims), x.var(dims, unbiased=n > 1)
            momentum = 0.1 if module.momentum is None else module.momentum
            getattr(self, f"{self.active}_{i}_mean").lerp_(mean, momentum)
            getattr(self, f"{self.active}_{i}_var").lerp_(var, momentum)

        return track

    @contextmanager
    def track(self, domain: str) -> Iterator[None]:
        """Forward passes inside update `domain`'s statistics."""
        self.active = domain
        try:
            yield
        finally:
            self.active = None

    def applied(self, model: nn.Module, domain: str) -> nn.Module:
        """A copy of `model` (the tracked one, or a copy of it) whose BatchNorm layers carry
        `domain`'s statistics."""
        out = copy.deepcopy(model)
        for i, m in enumerate(norms(out)):
            m.running_mean.copy_(getattr(self, f"{domain}_{i}_mean"))
            m.running_var.copy_(getattr(self, f"{domain}_{i}_var"))
        return out.eval()


class PhaseTwoNorm:
    """adapt.batchnorm for one adaptation run: the context each training pass runs in
    (`domain(name)`), and the model each domain is evaluated with (`models`).
    `reestimate(model, domain)` re-estimates statistics on a domain's train images (AdaBN).
    `attach(model)`: the model that is evaluated (in 'domain', its passes are tracked)."""

    def __init__(self, mode: str, reestimate):
        if mode not in MODES:
            raise ValueError(f"adapt.batchnorm must be one of {MODES}, got {mode!r}")
        self.mode, self.reestimate = mode, reestimate
        self.stats: DomainStatistics | None = None

    def attach(self, model: nn.Module) -> None:
        if self.mode == "domain":
            self.stats = DomainStatistics(model)

    def state_dict(self) -> dict:
        """What a checkpoint keeps of it (the per-domain statistics of 'domain')."""
        return {"domain_stats": self.stats.state_dict()} if self.stats is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from a checkpoint's state (and take its entry out of it)."""
        saved = state.pop("domain_stats", None)
        if self.stats is not None and saved is not None:
            self.stats.load_state_dict(saved)

    def broadcast(self, comm) -> None:
        """Rank 0's per-domain statistics to every worker (before an evaluation)."""
        if self.stats is not None:
            comm.broadcast(self.stats)

    def domain(self, name: str):
        """The context of one training pass on domain `name`."""
        return self.stats.track(name) if self.stats is not None else nullcontext()

    @torch.no_grad()
    def models(self, model: nn.Module) -> dict[str, nn.Module]:
        """{domain: the model that domain is evaluated with}; "target" is what is exported."""
        if self.mode == "domain":
            return {d: self.stats.applied(model, d) for d in DOMAINS}
        if self.mode == "target":
            return {d: self.reestimate(model, d) for d in DOMAINS}
        return {d: model for d in DOMAINS}
