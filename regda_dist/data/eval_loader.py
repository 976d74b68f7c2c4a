"""One persistent pool of loader processes for every split a worker evaluates.

A DataLoader per split per evaluation started its processes anew each time (four splits and
AdaBN at every epoch's evaluation, each with the worker's loader processes). This pool starts
them once: its dataset serves every registered split, items are asked for as (split slot, index,
images only), and the batches of each pass are set before it runs. Label-free views
(ImagesOnly) and subsets (Subset) of a registered split are resolved in this process, so they
reuse its slot: a target split's labels are dropped inside the loader processes, as ImagesOnly
drops them. A split it has not seen restarts the pool with it (what every pass cost before).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch.utils.data import Dataset, Sampler, Subset

from regda_dist.data.datasets import ImagesOnly
from regda_dist.data.loader import make_loader


def resolve(dataset: Dataset) -> tuple[Dataset, list[int] | None, int]:
    """(base split, index map or None, how many ImagesOnly projections) of a chain of Subset
    and ImagesOnly views: view[i] is base[index[i]] with [0] taken that many times."""
    index, projections = None, 0
    while True:
        if isinstance(dataset, Subset):
            inner = list(dataset.indices)
            index = inner if index is None else [inner[i] for i in index]
            dataset = dataset.dataset
        elif isinstance(dataset, ImagesOnly):
            projections += 1
            dataset = dataset._dataset
        else:
            return dataset, index, projections


class _Splits(Dataset):
    """Item (slot, index, projections) of the registered splits."""

    def __init__(self, splits: list[Dataset]):
        self.splits = splits

    def __len__(self) -> int:
        return sum(len(s) for s in self.splits)

    def __getitem__(self, key):
        slot, i, projections = key
        item = self.splits[slot][i]
        for _ in range(projections):
            item = item[0]
        return item


class _Plan(Sampler):
    """The batches of the pass about to run (set before each pass)."""

    def __init__(self):
        self.batches: list[list[tuple]] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple]]:
        return iter(self.batches)


class EvaluationLoader:
    """`workers` persistent loader processes (0: in this process) serving every split."""

    def __init__(self, workers: int, pin: bool):
        self.workers, self.pin = workers, pin
        self.splits: list[Dataset] = []  # held: their ids stay theirs
        self.plan = _Plan()
        self.loader = None
        self.starts = 0  # how many times the processes were started

    def register(self, *datasets: Dataset) -> None:
        """Splits to serve (before the first pass, so that the pool starts with them)."""
        for dataset in datasets:
            self._slot(resolve(dataset)[0])

    def _slot(self, base: Dataset) -> int:
        for slot, split in enumerate(self.splits):
            if split is base:
                return slot
        self.splits.append(base)
        self.loader = None  # a running pool does not know it: start anew (the old one stops)
        return len(self.splits) - 1

    def batches(self, dataset: Dataset, batches: Iterable[list[int]]) -> Iterator:
        """The items of `dataset` in `batches` (lists of its indices), collated per batch."""
        base, index, projections = resolve(dataset)
        slot = self._slot(base)
        self.plan.batches = [
            [(slot, i if index is None else index[i], projections) for i in batch]
            for batch in batches
        ]
        if self.loader is None:
            self.loader = make_loader(_Splits(list(self.splits)), self.plan, self.workers, self.pin)
            self.starts += self.workers > 0
        return iter(self.loader)
