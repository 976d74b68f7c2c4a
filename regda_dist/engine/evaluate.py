"""Evaluation on every worker's shard of a split: PCK per group (counts summed over workers),
the loader of collected outputs (engine/collect.py) and AdaBN.

Each worker takes a contiguous block of whole batches (data/loader.py ShardBatches), so every
batch is the one a single process would see, and 1 or N workers give the same numbers. Argmax
and counting stay on the device; one read per split.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from regda_dist.data import heatmap
from regda_dist.data.eval_loader import EvaluationLoader
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.data.loader import ShardBatches, shard_sizes
from regda_dist.engine.runtime import Runtime
from regda_dist.metrics import PCK, pck_radius

# Bump when what evaluation computes changes (a proxy, a view, the PCK rule): cached baselines
# (engine/run.py) of an older version are then recomputed, not reused.
EVAL_VERSION = 4


class Evaluation:
    """How this worker evaluates: its runtime, batch size, loader processes, (image, heatmap)
    sizes and PCK rule (threshold: a fraction of the heatmap size, or of the keypoints' box with
    'bbox')."""

    def __init__(
        self,
        runtime: Runtime,
        batch_size: int,
        workers: int,
        sizes: tuple[int, int],
        threshold: float,
        normalize: str = "heatmap",
    ):
        self.runtime, self.batch_size, self.workers = runtime, batch_size, workers
        self.image_size, self.heatmap_size = sizes  # px
        self.threshold, self.normalize = threshold, normalize
        self.pool = EvaluationLoader(workers, runtime.cuda)  # one for every split, persistent

    def sizes(self, dataset: Dataset) -> list[int]:
        """Samples of the split on each rank (rank order)."""
        return shard_sizes(len(dataset), self.batch_size, self.runtime.world_size)

    def batches(self, dataset: Dataset, shard: bool = True) -> Iterator:
        """This worker's shard of `dataset` (all of it without `shard`) in batches, on the
        device, with the batch's indices; items as the dataset gives them (an image, or a tuple
        starting with one). One pass at a time: passes share the loader processes."""
        rt = self.runtime
        rank, world = (rt.rank, rt.world_size) if shard else (0, 1)
        sampler = ShardBatches(len(dataset), self.batch_size, rank, world)
        loader = self.pool.batches(dataset, sampler)
        for item, indices in zip(loader, sampler, strict=True):  # the loader keeps the order
            if isinstance(item, torch.Tensor):
                yield rt.to_device(item), indices
            else:
                yield tuple(rt.to_device(t) for t in item), indices

    def radius(self, dataset: Dataset, indices: list[int], keypoints, valid):
        """PCK radius in heatmap px of a batch: a number, or (B, 1) per sample with 'bbox'
        (the dataset's annotation boxes where it has them: box_sides())."""
        sides = getattr(dataset, "box_sides", None)
        box_side = sides()[indices] if sides is not None and self.normalize == "bbox" else None
        return pck_radius(
            keypoints,
            valid,
            self.threshold,
            self.normalize,
            self.image_size,
            self.heatmap_size,
            box_side,
        )

    @torch.no_grad()
    def pck(self, model: nn.Module, dataset: Dataset, spec: KeypointSpec) -> dict[str, float]:
        """PCK per group on a labelled split (callers broadcast rank 0's model first)."""
        modes = {m: m.training for m in model.modules()}
        model.eval()
        pck = PCK(spec.groups, spec.num_keypoints)
        for (x, kp, vis), indices in self.batches(dataset):
            with self.runtime.autocast():
                y = model(x)  # (B, K, H, W)
            centres, valid = heatmap.targets(kp, vis, self.image_size, y.shape[-1])
            pck.update(y, centres, valid, self.radius(dataset, indices, kp, vis))
        for m, mode in modes.items():
            m.train(mode)
        pck.counts = self.runtime.comm.reduce_sum(pck.counts.to(self.runtime.device))
        return pck.compute()

    @torch.no_grad()
    def adabn(self, model: nn.Module, images: Dataset, seed: int, limit: int = 0) -> nn.Module:
        """A copy of `model` whose BatchNorm running statistics are re-estimated on `images` as
        given (train splits: without augmentation), in a seeded random order (its first `limit`
        images; 0 = all), as a cumulative average over batches (combined over workers); no
        weight changes."""
        model = copy.deepcopy(model)
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over all batches
        model.train()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        order = order[:limit] if limit else order
        # SyncBatchNorm exchanges every batch's statistics: each worker then runs every batch
        synced = any(isinstance(m, nn.SyncBatchNorm) for m in norms)
        for x, _ in self.batches(Subset(images, order.tolist()), shard=not synced):
            with self.runtime.autocast():
                model(x)
        if self.runtime.world_size > 1 and not synced:
            _combine_statistics(norms, self.runtime)
        for m in norms:
            m.momentum = 0.1
        return model.eval()


def _combine_statistics(norms: list, runtime: Runtime) -> None:
    """Every worker's running statistics -> their batch-count-weighted mean (what one process
    seeing every batch computes)."""
    for m in norms:
        count = m.num_batches_tracked.to(torch.float64)
        stats = torch.stack((m.running_mean * count, m.running_var * count)).to(torch.float64)
        summed = runtime.comm.reduce_sum(torch.cat((stats.flatten(), count.view(1))))
        total = summed[-1]
        mean, var = summed[:-1].view(2, -1) / total
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.copy_(total.to(torch.long))
