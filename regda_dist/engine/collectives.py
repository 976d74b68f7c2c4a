"""The Runtime's collectives over torch.distributed, every tensor on the worker's device.

NCCL has no CPU backend: a collective on a CPU tensor in a NCCL process group fails, even at
world size 1, while gloo accepts both. So every tensor a collective sees is created on, or moved
to, `device` first, and nothing here reads a value back to the host: callers read results once
(an epoch's logged values, an evaluation's outputs). `dist` is torch.distributed; tests pass a
stand-in that refuses tensors on any other device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


class Collectives:
    """sync / broadcast / average / agree / reduce_sum / gather for a Runtime (engine/trainer)."""

    def __init__(self, device: torch.device, dist=torch.distributed):
        self.device, self.dist = torch.device(device), dist

    @property
    def world_size(self) -> int:
        return self.dist.get_world_size()

    def sync(self, params: Sequence[nn.Parameter]) -> None:
        """Average the gradients of `params` over workers in one bucket (None grads are skipped:
        every worker runs the same step, so they agree on which are None)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads).to(self.device)
        self.dist.all_reduce(flat)
        flat.div_(self.world_size)
        for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(synced)

    def broadcast(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers (BN statistics, warm-start counter) to every worker."""
        tensors = list(module.state_dict().values())
        # One bucket per dtype, in the same order on every worker (a set of dtypes iterates in a
        # per-process order, and mismatched collectives abort the group).
        for dtype in sorted({t.dtype for t in tensors}, key=str):
            group = [t for t in tensors if t.dtype == dtype]
            flat = _flatten_dense_tensors(group).to(self.device)
            self.dist.broadcast(flat, src=0)
            for t, value in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
                t.copy_(value)

    def average(self, values: dict) -> dict[str, torch.Tensor]:
        """Mean of each logged value (float or 0-dim tensor) over workers, as 0-dim tensors on
        the device (one all-reduce for all of them)."""
        keys = sorted(values)
        stacked = torch.stack(
            [torch.as_tensor(values[k], dtype=torch.float64).to(self.device) for k in keys]
        )
        self.dist.all_reduce(stacked)
        return dict(zip(keys, stacked / self.world_size, strict=True))

    def agree(self, value):
        """Rank 0's value of a small picklable object, on every worker."""
        box = [value]
        self.dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over workers (e.g. PCK counts of each worker's shard)."""
        tensor = tensor.to(self.device)
        self.dist.all_reduce(tensor)
        return tensor

    def gather(self, tensor: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Every worker's rows, concatenated in rank order; `sizes` is each rank's row count
        (known to all ranks beforehand: evaluation shards are computed, not exchanged)."""
        flag = tensor.dtype == torch.bool  # not every backend gathers bool: as uint8
        tensor = tensor.to(self.device, torch.uint8 if flag else tensor.dtype)
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        self.dist.all_gather(parts, padded)
        out = torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])
        return out.bool() if flag else out
