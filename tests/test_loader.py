import pytest
import torch
from torch.utils.data import Dataset

from regda_dist.data.datasets import KeypointDataset
from regda_dist.engine.loader import batches, ordered


class Indices(Dataset):
    """Item i is tensor(i): a batch is the indices it holds."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.tensor(i)


def _batches(n, batch_size, iters, seed=0, epoch=0, rank=0, world_size=1):
    return [
        b.tolist() for b in batches(Indices(n), batch_size, iters, seed, epoch, rank, world_size)
    ]


def test_batches_yields_iters_batches_of_batch_size():
    out = _batches(10, 3, 7)
    assert len(out) == 7
    assert all(len(b) == 3 for b in out)
    assert all(0 <= i < 10 for b in out for i in b)


def test_batches_within_one_pass_is_a_permutation():
    out = _batches(12, 4, 3)
    assert sorted(i for b in out for i in b) == list(range(12))


def test_batches_deterministic_per_seed_and_epoch():
    assert _batches(10, 3, 7, seed=1, epoch=2) == _batches(10, 3, 7, seed=1, epoch=2)
    assert _batches(10, 3, 7, seed=1, epoch=2) != _batches(10, 3, 7, seed=1, epoch=3)
    assert _batches(10, 3, 7, seed=1, epoch=2) != _batches(10, 3, 7, seed=2, epoch=2)


def test_batches_ignore_the_global_rng():
    # A resumed run must see the same epoch whatever was drawn from torch's global RNG before.
    torch.manual_seed(1)
    a = _batches(10, 3, 7, epoch=1)
    torch.manual_seed(2)
    torch.rand(5)
    assert _batches(10, 3, 7, epoch=1) == a


@pytest.mark.parametrize(
    "n, batch_size, world_size, iters",
    [(10, 2, 2, 8), (12, 3, 2, 6), (11, 1, 3, 9), (8, 2, 2, 5)],
)
def test_sharded_batches_equal_single_worker_batches(n, batch_size, world_size, iters):
    # iters * global batch > n: every case reshuffles at least once, most mid-batch.
    assert iters * batch_size * world_size > n
    single = _batches(n, batch_size * world_size, iters)
    shards = [
        _batches(n, batch_size, iters, rank=r, world_size=world_size) for r in range(world_size)
    ]
    assert all(len(s) == iters for s in shards)
    for i in range(iters):
        assert sum((s[i] for s in shards), []) == single[i], i


def test_ranks_get_disjoint_slices_of_a_global_batch():
    r0, r1 = (_batches(16, 4, 4, rank=r, world_size=2) for r in (0, 1))
    for a, b in zip(r0, r1, strict=True):
        assert not set(a) & set(b)


@pytest.mark.parametrize("n, batch_size, world_size", [(5, 3, 2), (5, 6, 1), (1, 2, 1)])
def test_batches_raise_when_split_smaller_than_global_batch(n, batch_size, world_size):
    with pytest.raises(ValueError, match=str(batch_size * world_size)):
        list(batches(Indices(n), batch_size, 3, 0, 0, 0, world_size))


def test_batches_accept_split_of_exactly_one_global_batch():
    out = _batches(4, 2, 3, rank=1, world_size=2)
    assert len(out) == 3 and all(len(b) == 2 for b in out)


def test_batches_collate_keypoint_tuples():
    ds = KeypointDataset(
        torch.zeros(5, 3, 16, 16, dtype=torch.uint8),
        torch.rand(5, 3, 2) * 16,
        torch.ones(5, 3).bool(),
    )
    image, keypoints, visible = next(batches(ds, 2, 1, 0, 0))
    assert image.shape == (2, 3, 16, 16) and image.dtype == torch.float32
    assert keypoints.shape == (2, 3, 2)
    assert visible.shape == (2, 3) and visible.dtype == torch.bool


def test_ordered_yields_every_sample_once_in_order():
    out = [b.tolist() for b in ordered(Indices(7), 3)]
    assert out == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("n, batch_size, world_size", [(7, 3, 2), (10, 2, 2), (9, 2, 3), (3, 4, 2)])
def test_ordered_ranks_cover_every_sample_once(n, batch_size, world_size):
    seen = [
        i
        for rank in range(world_size)
        for b in ordered(Indices(n), batch_size, rank, world_size)
        for i in b.tolist()
    ]
    assert sorted(seen) == list(range(n))
