"""The DataLoader path: seeded, shardable, resumable global batches; per-sample augmentation
seeds that differ across ranks and do not depend on the worker or loader-process count."""

import time

import pytest
import torch
from torch.utils.data import Dataset

from regda_dist import config as C
from regda_dist.data.datasets import Augmented, KeypointDataset
from regda_dist.data.loader import GlobalBatchSampler, ShardBatches, make_loader, shard_sizes
from regda_dist.data.transforms import Augment
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.trainer import Trainer


class Indices(Dataset):
    """Item i (or (i, seed)) is tensor(i): a batch is the indices it holds."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.tensor(i)


def _pairs(n, batch_size, iters, seed=0, epoch=0, rank=0, world_size=1, start=0):
    sampler = GlobalBatchSampler(n, batch_size, iters, seed, rank, world_size)
    sampler.set_epoch(epoch, start)
    return list(sampler)


def _batches(*args, **kwargs):
    return [[i for i, _ in batch] for batch in _pairs(*args, **kwargs)]


def test_batches_yields_iters_batches_of_batch_size():
    out = _batches(10, 3, 7)
    assert len(out) == 7
    assert all(len(b) == 3 for b in out)
    assert all(0 <= i < 10 for b in out for i in b)


def test_batches_within_one_pass_is_a_permutation():
    out = _batches(12, 4, 3)
    assert sorted(i for b in out for i in b) == list(range(12))


def test_batches_deterministic_per_seed_and_epoch():
    assert _pairs(10, 3, 7, seed=1, epoch=2) == _pairs(10, 3, 7, seed=1, epoch=2)
    assert _batches(10, 3, 7, seed=1, epoch=2) != _batches(10, 3, 7, seed=1, epoch=3)
    assert _batches(10, 3, 7, seed=1, epoch=2) != _batches(10, 3, 7, seed=2, epoch=2)


def test_batches_ignore_the_global_rng():
    # A resumed run must see the same epoch whatever was drawn from torch's global RNG before.
    torch.manual_seed(1)
    a = _pairs(10, 3, 7, epoch=1)
    torch.manual_seed(2)
    torch.rand(5)
    assert _pairs(10, 3, 7, epoch=1) == a


@pytest.mark.parametrize(
    "n, batch_size, world_size, iters",
    [(10, 2, 2, 8), (12, 3, 2, 6), (11, 1, 3, 9), (8, 2, 2, 5)],
)
def test_sharded_batches_and_sample_seeds_equal_single_worker_ones(
    n, batch_size, world_size, iters
):
    # iters * global batch > n: every case reshuffles at least once, most mid-batch. The sample
    # seeds (augmentation) follow the global sample, not the worker.
    assert iters * batch_size * world_size > n
    single = _pairs(n, batch_size * world_size, iters, seed=5, epoch=1)
    shards = [
        _pairs(n, batch_size, iters, seed=5, epoch=1, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    assert all(len(s) == iters for s in shards)
    for i in range(iters):
        assert sum((s[i] for s in shards), []) == single[i], i


def test_every_sample_of_an_epoch_has_its_own_seed():
    pairs = [p for batch in _pairs(6, 2, 9, rank=1, world_size=2) for p in batch]
    seeds = [s for _, s in pairs]
    assert len(set(seeds)) == len(seeds)  # a sample seen twice in an epoch is augmented anew


def test_a_resumed_epoch_yields_exactly_the_remaining_batches():
    full = _pairs(10, 3, 7, seed=3, epoch=4, rank=1, world_size=2)
    assert _pairs(10, 3, 7, seed=3, epoch=4, rank=1, world_size=2, start=5) == full[5:]
    sampler = GlobalBatchSampler(10, 3, 7, 3, 1, 2)
    sampler.set_epoch(4, 5)
    assert len(sampler) == 2


def test_ranks_get_disjoint_slices_of_a_global_batch():
    r0, r1 = (_batches(16, 4, 4, rank=r, world_size=2) for r in (0, 1))
    for a, b in zip(r0, r1, strict=True):
        assert not set(a) & set(b)


@pytest.mark.parametrize("n, batch_size, world_size", [(5, 3, 2), (5, 6, 1), (1, 2, 1)])
def test_batches_raise_when_split_smaller_than_global_batch(n, batch_size, world_size):
    with pytest.raises(ValueError, match=str(batch_size * world_size)):
        GlobalBatchSampler(n, batch_size, 3, 0, 0, world_size)


def test_batches_accept_split_of_exactly_one_global_batch():
    out = _batches(4, 2, 3, rank=1, world_size=2)
    assert len(out) == 3 and all(len(b) == 2 for b in out)


@pytest.mark.parametrize("n, batch_size, world_size", [(7, 3, 2), (10, 2, 2), (9, 2, 3), (3, 4, 2)])
def test_evaluation_shards_are_contiguous_blocks_of_whole_batches(n, batch_size, world_size):
    shards = [list(ShardBatches(n, batch_size, rank, world_size)) for rank in range(world_size)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert flat == list(range(n))  # every sample once, ranks in order
    single = list(ShardBatches(n, batch_size))
    assert [b for shard in shards for b in shard] == single  # the same batches as one process
    assert [sum(map(len, s)) for s in shards] == shard_sizes(n, batch_size, world_size)


# --------------------------------------------------------------------------------------------
# Augmentation through the trainer's loaders (the real DataLoader path)

AUGMENT = C.AugmentConfig(rotation=180, scale_min=0.6, scale_max=1.3, color_jitter=0.25, blur=0.8)


def _same_image_split(n=8, size=16):
    """n copies of one image: any difference between items is the augmentation."""
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    kp = torch.tensor([[4.0, 5.0], [10.0, 11.0]])
    return KeypointDataset(
        image.expand(n, -1, -1, -1).clone(),
        kp.expand(n, -1, -1).clone(),
        torch.ones(n, 2, dtype=torch.bool),
    )


def _trainer(tiny_cfg, rank=0, world_size=1, loader_workers=0):
    tiny_cfg.train.loader_workers = loader_workers
    return Trainer(tiny_cfg, task=None, runtime=Runtime(rank=rank, world_size=world_size))


def _epoch_items(trainer, dataset, batch_size, iters=2, epoch=3, start=0):
    workers = trainer.cfg.train.loader_workers  # the whole budget, for this one loader
    loader = trainer._loader(dataset, batch_size, iters, salt=2, workers=workers)
    loader.batch_sampler.set_epoch(epoch, start)
    return list(loader)


def test_each_rank_augments_its_samples_differently(tiny_cfg):
    split = Augmented(_same_image_split(), Augment(AUGMENT))
    rank0, rank1 = (
        _epoch_items(_trainer(tiny_cfg, rank, 2), split, batch_size=4) for rank in (0, 1)
    )
    for (x0, kp0, _), (x1, kp1, _) in zip(rank0, rank1, strict=True):
        assert not torch.equal(x0, x1) and not torch.equal(kp0, kp1)


def test_a_global_sample_is_augmented_alike_for_any_worker_or_loader_process_count(tiny_cfg):
    """batch_size is the global batch: 2 workers take halves of the batch 1 worker takes."""
    split = Augmented(_same_image_split(), Augment(AUGMENT))
    single = _epoch_items(_trainer(tiny_cfg, loader_workers=2), split, batch_size=4)
    shards = [
        _epoch_items(_trainer(tiny_cfg, rank, 2, loader_workers=0), split, batch_size=4)
        for rank in (0, 1)
    ]
    assert [len(x) for x, _, _ in shards[0]] == [2, 2]
    for i, (x, kp, _) in enumerate(single):
        assert torch.equal(x, torch.cat([shards[0][i][0], shards[1][i][0]]))
        assert torch.equal(kp, torch.cat([shards[0][i][1], shards[1][i][1]]))


def test_a_resumed_epoch_gives_the_same_batches_and_augmentations(tiny_cfg):
    split = Augmented(_same_image_split(), Augment(AUGMENT))
    trainer = _trainer(tiny_cfg)
    full = _epoch_items(trainer, split, batch_size=2, iters=5)
    resumed = _epoch_items(trainer, split, batch_size=2, iters=5, start=3)
    assert len(resumed) == 2
    for a, b in zip(full[3:], resumed, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_an_item_asked_for_without_a_seed_is_not_augmented():
    raw = _same_image_split()
    split = Augmented(raw, Augment(AUGMENT))
    assert all(torch.equal(u, v) for u, v in zip(split[3], raw[3], strict=True))
    assert not torch.equal(split[(3, 7)][0], raw[3][0])
    assert torch.equal(split[(3, 7)][0], split[(3, 7)][0])  # seeded: the same every time


def test_make_loader_pins_and_keeps_workers_only_when_asked():
    sampler = ShardBatches(6, 2)
    assert make_loader(Indices(6), sampler, 0, pin=False).num_workers == 0
    loader = make_loader(Indices(6), sampler, 2, pin=False)
    assert loader.persistent_workers and [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]]


def _peak_loader_processes(fn) -> int:
    """The most loader processes (forked children of this process) alive at once during fn()."""
    import threading

    import psutil

    me = psutil.Process()
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            try:
                forked = [c for c in me.children() if c.cmdline() == me.cmdline()]
            except psutil.Error:  # a child ended while it was read
                continue
            peak[0] = max(peak[0], len(forked))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return peak[0]


def test_a_workers_loaders_stay_within_one_loader_process_budget(tiny_cfg, tmp_path):
    """train.loader_workers is one budget for all of a worker's loaders, alive at once:
    phase 1's, phase 2's source and target, and one persistent evaluation pool, started once
    for every split (PCK, proxies, AdaBN)."""
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.run import baselines

    tiny_cfg.train.loader_workers = 4
    tiny_cfg.train.proxies = ["source_pck"]  # target val is still collected (predictions)
    tiny_cfg.pretrain.epochs = tiny_cfg.adapt.epochs = 1
    trainer = Trainer(tiny_cfg, build_task(tiny_cfg.data))
    assert trainer.loaders.total == 4

    def both_phases():
        model, _ = trainer.pretrain(tmp_path / "p1.ckpt")
        baselines(trainer, model)
        trainer.adapt(model.state_dict(), tmp_path / "adapt.ckpt")

    assert 3 <= _peak_loader_processes(both_phases) <= 4
    assert trainer.eval.pool.starts == 1


def test_the_budget_is_split_over_the_loaders_and_follows_the_cores_ray_gives():
    from regda_dist.data.loader import LoaderBudget, loader_budget

    assert LoaderBudget.split(15) == LoaderBudget(6, 6, 3)  # 16 cores per GPU, one training
    assert LoaderBudget.split(4) == LoaderBudget(2, 1, 1)
    assert LoaderBudget.split(1) == LoaderBudget(1, 0, 0) and LoaderBudget.split(0).total == 0
    assert all(LoaderBudget.split(n).total == n for n in range(40))
    cuda = torch.device("cuda", 0)  # a device object needs no GPU
    assert loader_budget(cuda, cpus=8) == 7 and loader_budget(cuda, cpus=1.0) == 1
    assert loader_budget(torch.device("cpu"), cpus=8) == 0  # CPU training uses the cores


def test_the_evaluation_pool_serves_views_and_subsets_of_its_splits_as_they_are():
    from torch.utils.data import Subset

    from regda_dist.data.datasets import ImagesOnly
    from regda_dist.data.eval_loader import EvaluationLoader

    n = 8  # items that differ, image and keypoints
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone()
    split = KeypointDataset(images, torch.rand(n, 2, 2), torch.ones(n, 2, dtype=torch.bool))
    pool = EvaluationLoader(workers=1, pin=False)
    pool.register(split)
    views = [split, ImagesOnly(split), Subset(ImagesOnly(split), [5, 2, 7]),
             ImagesOnly(Subset(Subset(split, [7, 6, 5, 4]), [3, 0]))]  # fmt: skip
    for view in views:
        batches = [[0, 1], [2]] if len(view) > 2 else [[0, 1]]
        got = list(pool.batches(view, batches))
        for batch, items in zip(batches, got, strict=True):
            expected = torch.utils.data.default_collate([view[i] for i in batch])
            if isinstance(expected, torch.Tensor):  # an images-only view: no label reaches it
                assert isinstance(items, torch.Tensor) and torch.equal(items, expected)
            else:
                assert all(torch.equal(a, b) for a, b in zip(items, expected, strict=True))
    assert pool.starts == 1 and len(pool.splits) == 1


def test_a_gpu_run_says_its_loader_budget_at_start():
    from regda_dist.data.loader import loader_notes

    (note,) = loader_notes(C.load("experiments/rhd2h3d.yaml"))
    assert "7 loader processes per GPU worker" in note and "evaluation 1" in note
    (few,) = loader_notes(C.load(None, ["scaling.use_gpu=true"]))
    assert "raise scaling.cpus_per_worker" in few
    assert loader_notes(C.Config()) == []  # CPU runs: none


def test_batch_notes_say_the_per_worker_batch_and_the_batchnorm_share():
    from regda_dist.data.loader import batch_notes

    assert batch_notes(C.Config()) == []
    batch, norm = batch_notes(C.load(None, ["scaling.num_workers=16"]))
    assert "adapt.batch_size 32 = 16 x 2 per domain" in batch and "no scaling rule" in batch
    assert "normalises BatchNorm over its own 2" in norm and "sync" in norm
    assert len(batch_notes(C.load(None, ["scaling.num_workers=2"]))) == 1  # 16 each
