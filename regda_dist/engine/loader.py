"""Seeded, resumable, shardable batches: the same global batches for any number of workers."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, default_collate


def batches(
    dataset: Dataset,
    batch_size: int,
    iters: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator:
    """`iters` batches of `batch_size` per worker for one epoch.

    Global batches of batch_size * world_size are cut from seeded permutations (a new one each
    time the data runs out); worker `rank` gets its slice of each. So 2 workers x b see exactly the
    samples 1 worker x 2b sees, and an epoch restarts identically after a resume.
    """
    n, global_batch = len(dataset), batch_size * world_size
    if n < global_batch:
        raise ValueError(f"split has {n} samples, fewer than one global batch ({global_batch})")
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(iters):
        if len(order) < global_batch:
            order = torch.cat((order, torch.randperm(n, generator=g)))
        chunk, order = order[:global_batch], order[global_batch:]
        yield default_collate(
            [dataset[int(i)] for i in chunk[rank * batch_size : (rank + 1) * batch_size]]
        )


def ordered(dataset: Dataset, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator:
    """Every sample once, in order (evaluation); worker `rank` takes every world_size-th batch."""
    for b, start in enumerate(range(0, len(dataset), batch_size)):
        if b % world_size == rank:
            stop = min(start + batch_size, len(dataset))
            yield default_collate([dataset[i] for i in range(start, stop)])
