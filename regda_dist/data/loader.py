"""The torch DataLoader path of every dataset: seeded global batches sharded over workers, and
per-sample seeds for augmentation.

Training batches are cut from seeded permutations of the split, as global batches of
batch_size (the global batch: batch_size / world_size per rank); rank r takes its slice of
each. Each sample also gets a seed made from
(seed, epoch, its position in the epoch's global stream), and a split that augments draws from a
generator seeded with it. So a sample's augmentation differs across ranks and positions, and is
the same for a given global sample whatever the number of Ray workers or loader processes; an
epoch restarted at any iteration yields exactly the remaining batches.

Evaluation batches are contiguous blocks of whole batches per rank, so every batch has the same
composition as in one process, and the ranks' outputs concatenate back in dataset order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

_MASK64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A well-mixed 63-bit seed for one sample (splitmix64 over the three numbers)."""
    x = 0
    for part in (seed, epoch, position):
        x = (x ^ (part & _MASK64)) * 0x9E3779B97F4A7C15 & _MASK64
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return x >> 1


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """`iters` batches per epoch of (index, sample seed) pairs: rank `rank`'s slice of seeded
    global batches of batch_size x world_size (a new permutation each time the split runs out).
    `set_epoch(epoch, start)` picks the epoch and the first iteration (a resumed epoch)."""

    def __init__(
        self, n: int, batch_size: int, iters: int, seed: int, rank: int = 0, world_size: int = 1
    ):
        if n < batch_size * world_size:
            raise ValueError(
                f"split has {n} samples, fewer than one global batch ({batch_size * world_size})"
            )
        self.n, self.batch_size, self.iters, self.seed = n, batch_size, iters, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.iters - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        global_batch = self.batch_size * self.world_size
        lo = self.rank * self.batch_size
        order = torch.empty(0, dtype=torch.long)
        for it in range(self.iters):
            if len(order) < global_batch:
                order = torch.cat((order, torch.randperm(self.n, generator=g)))
            chunk, order = order[:global_batch], order[global_batch:]
            if it < self.start:
                continue
            first = it * global_batch + lo  # the slice's position in the epoch's global stream
            yield [
                (int(i), sample_seed(self.seed, self.epoch, first + j))
                for j, i in enumerate(chunk[lo : lo + self.batch_size].tolist())
            ]


def shard_sizes(n: int, batch_size: int, world_size: int) -> list[int]:
    """Samples per rank when whole batches are split into contiguous blocks (rank order)."""
    batches = math.ceil(n / batch_size)
    sizes, start = [], 0
    for rank in range(world_size):
        count = batches // world_size + (rank < batches % world_size)
        stop = min(n, (start + count) * batch_size)
        sizes.append(max(0, stop - start * batch_size))
        start += count
    return sizes


class ShardBatches(Sampler[list[int]]):
    """Every sample once, in order, in batches; rank `rank` takes its contiguous block of them."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1):
        sizes = shard_sizes(n, batch_size, world_size)
        self.first = sum(sizes[:rank])
        self.count, self.batch_size = sizes[rank], batch_size

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        stop = self.first + self.count
        for start in range(self.first, stop, self.batch_size):
            yield list(range(start, min(start + self.batch_size, stop)))


@dataclass(frozen=True)
class LoaderBudget:
    """The loader processes of one training worker, for all of its loaders together: the two
    training loaders of phase 2 (phase 1's one loader takes both shares) and the persistent
    evaluation pool, which idles while training runs and the reverse. All are alive at once."""

    source: int
    target: int
    evaluation: int

    @classmethod
    def split(cls, total: int) -> LoaderBudget:
        """A quarter (rounded down) for evaluation, the rest for training, source first."""
        evaluation = total // 4
        rest = total - evaluation
        return cls((rest + 1) // 2, rest // 2, evaluation)

    @property
    def total(self) -> int:
        return self.source + self.target + self.evaluation


def loader_budget(device: torch.device, cpus: float = 0.0) -> int:
    """Loader processes per training worker when train.loader_workers is -1: none on a CPU
    device (its training threads use the cores); on CUDA the cores Ray gives the worker
    (`cpus`, else this node's cores per GPU) minus one for the training process, at least 1."""
    if device.type != "cuda":
        return 0
    if not cpus:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        cpus = (cores or 1) / max(1, torch.cuda.device_count())
    return max(1, int(cpus) - 1)


SMALL_BN_BATCH = 16  # BatchNorm statistics over fewer images per worker are said at start


def batch_notes(cfg) -> list[str]:
    """What the workers do with the batch, said at the start of a run: each phase's per-worker
    share of its global batch (no learning-rate rule: the configured rates), and where
    model.batchnorm 'train' normalises over few images per worker, how many (and 'sync')."""
    workers = cfg.scaling.num_workers
    if workers == 1:
        return []
    shares = {p: getattr(cfg, p).batch_size // workers for p in ("pretrain", "adapt")}
    notes = [
        f"batch: {workers} workers split each global batch: pretrain.batch_size "
        f"{cfg.pretrain.batch_size} = {workers} x {shares['pretrain']}, adapt.batch_size "
        f"{cfg.adapt.batch_size} = {workers} x {shares['adapt']} per domain; learning rates as "
        "configured (no scaling rule): the reference's schedule at any worker count"
    ]
    small = min(shares.values())
    if cfg.model.batchnorm == "train" and small < SMALL_BN_BATCH:
        notes.append(
            f"model.batchnorm 'train': each worker normalises BatchNorm over its own "
            f"{shares['pretrain']} (pretrain) / {shares['adapt']} (adapt, per domain) images, "
            "not the global batch; model.batchnorm: sync normalises over the global batch "
            "(CUDA workers)"
        )
    return notes


def loader_notes(cfg) -> list[str]:
    """Said at the start of a GPU run: each worker's loader processes, for all of its loaders."""
    t, s = cfg.train, cfg.scaling
    if not s.use_gpu:
        return []
    auto = t.loader_workers < 0
    total = loader_budget(torch.device("cuda"), s.cpus_per_worker) if auto else t.loader_workers
    b = LoaderBudget.split(total)
    why = (
        f"scaling.cpus_per_worker {s.cpus_per_worker:g} - 1, >= 1"
        if auto
        else "train.loader_workers"
    )
    note = (
        f"loaders: {total} loader processes per GPU worker for all of its loaders ({why}): "
        f"source {b.source}, target {b.target}, evaluation {b.evaluation}"
    )
    if auto and s.cpus_per_worker < 4:
        note += "; JPEG decoding needs more: raise scaling.cpus_per_worker to the cores per GPU"
    return [note]


PREFETCH = 4  # batches each loader process prepares ahead


def make_loader(
    dataset: Dataset, batch_sampler: Sampler, workers: int, pin: bool, persistent: bool = True
) -> DataLoader:
    """A DataLoader over `batch_sampler` with `workers` processes (0: in this process)."""
    extra = {"persistent_workers": persistent, "prefetch_factor": PREFETCH} if workers > 0 else {}
    return DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=workers, pin_memory=pin, **extra
    )
