"""Gradient all-reduce overlapped with backward: a drop-in `sync(params)` for the steps.

Collectives.sync all-reduces an optimiser's gradients in one bucket after backward has ended, so
the network idles during backward and backward idles during the all-reduce. OverlappedSync
launches asynchronous all-reduces of buckets of gradients while backward still runs (a
post-accumulate-grad hook on every parameter), and `sync(params)` waits for them before the
optimiser steps, as DDP's reducer does, without DDP's bookkeeping of unused parameters.

Which gradients: only those this backward started from None. Every step zeroes with
set_to_none exactly the optimisers it is about to step (RegDA's steps A, B and C each a
different set), so those are the gradients about to be used; a gradient accumulated onto an
older one (head_adv's in step C, which no optimiser steps there) is left alone. Anything
`sync(params)` is asked for that the hooks did not reduce (a gradient zeroed in place, not set
to None) is all-reduced there, synchronously: the result is always today's synchronous one.
Buckets form in the order backward produces gradients, which is the same on every rank (the
same graph), so every rank launches the same collectives in the same order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from regda_dist.engine.collectives import Collectives


class OverlappedSync:
    """sync(params) whose all-reduces were launched during backward, in buckets of about
    `bucket_mb` MB. `stats` counts the bytes launched during backward and at sync, the bytes
    left to the synchronous fallback, and the seconds spent waiting at sync."""

    def __init__(self, comm: Collectives, model: nn.Module, bucket_mb: float = 25.0):
        self.comm, self.cap = comm, max(1, int(bucket_mb * 2**20))
        self.fresh: set[int] = set()  # parameters whose gradient this backward started
        self.reduced: set[int] = set()  # parameters whose current gradient is reduced
        self.bucket: list[nn.Parameter] = []
        self.bucket_bytes = 0
        self.inflight: list[tuple] = []  # (work, flat gradients, parameters)
        self.stats = {"backward_bytes": 0, "sync_bytes": 0, "fallback_bytes": 0, "wait_s": 0.0}
        self.handles = []
        for p in model.parameters():
            if p.requires_grad:
                self.handles.append(p.register_hook(self._arriving(p)))
                self.handles.append(p.register_post_accumulate_grad_hook(self._ready))

    def _arriving(self, p: nn.Parameter):
        def hook(grad: torch.Tensor) -> None:  # before the gradient is accumulated into p.grad
            self.reduced.discard(id(p))
            if p.grad is None:
                self.fresh.add(id(p))

        return hook

    def _ready(self, p: nn.Parameter) -> None:
        if id(p) not in self.fresh:
            return
        self.fresh.discard(id(p))
        self.bucket.append(p)
        self.bucket_bytes += p.grad.numel() * p.grad.element_size()
        if self.bucket_bytes >= self.cap:
            self._launch("backward_bytes")

    def _launch(self, when: str) -> None:
        if not self.bucket:
            return
        flat = _flatten_dense_tensors([p.grad for p in self.bucket]).to(self.comm.device)
        work = self.comm.dist.all_reduce(flat, async_op=True)
        self.inflight.append((work, flat, self.bucket))
        self.stats[when] += self.bucket_bytes
        self.bucket, self.bucket_bytes = [], 0

    def __call__(self, params: Sequence[nn.Parameter]) -> None:
        """Wait for this backward's all-reduces (the last bucket is launched now), average them
        into the gradients, then reduce whatever of `params` they did not cover."""
        self._launch("sync_bytes")
        start = time.perf_counter()
        for work, flat, bucket in self.inflight:
            work.wait()
            flat.div_(self.comm.world_size)
            grads = [p.grad for p in bucket]
            for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
                g.copy_(synced)
            self.reduced.update(id(p) for p in bucket)
        self.stats["wait_s"] += time.perf_counter() - start
        self.inflight.clear()
        missing = [p for p in params if p.grad is not None and id(p) not in self.reduced]
        self.stats["fallback_bytes"] += sum(p.grad.numel() * p.grad.element_size() for p in missing)
        self.comm.sync(missing)
        self.reduced.update(id(p) for p in missing)

    def overlap(self) -> float:
        """Share of the all-reduced gradient bytes launched while backward still ran."""
        s = self.stats
        total = s["backward_bytes"] + s["sync_bytes"] + s["fallback_bytes"]
        return s["backward_bytes"] / total if total else 0.0

    def close(self) -> None:
        """Remove the hooks (the phase is over)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def grad_sync(runtime, model: nn.Module, bucket_mb: float):
    """The `sync(params)` a runtime's steps call before each optimiser step: on several
    workers, all-reduces launched in buckets while backward runs (OverlappedSync), unless
    bucket_mb is 0 (train.grad_bucket_mb: one all-reduce per optimiser after backward)."""
    if runtime.world_size == 1 or not bucket_mb:
        return runtime.comm.sync
    return OverlappedSync(runtime.comm, model, bucket_mb)
