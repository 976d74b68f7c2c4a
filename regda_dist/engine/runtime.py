"""Where and how a process trains: its device, rank, precision and collectives (one process by
default; a Ray Train worker gets engine.collectives.Collectives)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch

from regda_dist.fields import ConfigError


class Local:
    """The collectives of a single process: nothing to exchange (same interface as
    engine.collectives.Collectives)."""

    world_size = 1

    def sync(self, params) -> None:
        del params

    def broadcast(self, module) -> None:
        del module

    def average(self, values: dict) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}

    def agree(self, value):
        return value

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def gather(self, tensor: torch.Tensor, sizes) -> torch.Tensor:
        del sizes
        return tensor


@dataclass
class Runtime:
    """device, rank and world size; `comm` all-reduces gradients (sync), broadcasts rank 0's
    model, averages logged values, agrees on rank 0's decisions, and sums / gathers evaluation
    shards; `precision` is fp32 or bf16 (autocast)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    comm: object = field(default_factory=Local)
    precision: str = "fp32"
    cpus: float = 0.0  # the cores Ray gives this worker (0: unknown; loader_budget)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """Forward passes in bf16 where precision says so (losses stay float32)."""
        bf16 = self.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch onto the device (asynchronously from pinned memory); images channels-last on
        CUDA, where convolutions run fastest in that layout."""
        x = x.to(self.device, non_blocking=True)
        if self.cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device: {name!r} is not a device (auto, cpu, cuda, cuda:N)"
        ) from None


def resolve_precision(name: str, device: torch.device) -> str:
    """train.precision 'auto': bf16 on CUDA, fp32 elsewhere."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name
