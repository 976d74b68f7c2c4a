"""Datasets of a transfer task: labelled splits, label-free views, and the task bundle."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from regda_dist.data import synthetic
from regda_dist.data.images import ImageSamples
from regda_dist.data.keypoints import CUSTOM, FROM_DATA, KeypointSpec, define, name_difference
from regda_dist.data.registry import (
    create_dataset,
    dataset_spec,
    fixed_spec,
    match_notes,
    own_set_notes,
    weak_match,
)
from regda_dist.data.samples import DatasetError
from regda_dist.data.transforms import Augment, is_active
from regda_dist.fields import ConfigError

__all__ = ["Augmented", "ImagesOnly", "KeypointDataset", "TaskData", "build_task", "task_spec"]

DOMAINS = ("source", "target")
# how to go on when a file's names label too little of a registered set (data.min_keypoint_match)
WEAK_MATCH_FIX = (
    "read it in its own set (data.keypoints: from_data), define the set in YAML (data.keypoints: "
    "custom), or set data.min_keypoint_match: 0 to proceed"
)


class KeypointDataset(Dataset):
    """In-memory labelled split: (uint8 image (3, S, S), keypoints (K, 2) in pixels,
    visible (K,))."""

    def __init__(self, images: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor):
        if not (len(images) == len(keypoints) == len(visible)):
            raise ValueError(
                f"split sizes differ: {len(images)} images, {len(keypoints)} keypoints"
            )
        self.images, self.keypoints, self.visible = images, keypoints, visible

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.keypoints[i], self.visible[i]


class Augmented(Dataset):
    """A labelled train split as training reads it: item (i, seed) is sample i augmented with a
    generator seeded by `seed` (data/loader.py: per global sample); item i is sample i as it is
    (evaluation, AdaBN, export). Without `augment` both are sample i."""

    def __init__(self, dataset: Dataset, augment: Augment | None = None):
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        image, keypoints, visible = self.dataset[i]
        if self.augment is None or seed is None:
            return image, keypoints, visible
        image, keypoints = self.augment(image, keypoints, torch.Generator().manual_seed(seed))
        return image, keypoints, visible


class ImagesOnly(Dataset):
    """A label-free view: what target-domain training gets. Yields images, nothing else."""

    def __init__(self, dataset: Dataset):
        self._dataset = dataset

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key):
        return self._dataset[key][0]


@dataclass
class TaskData:
    """Every split of a transfer task; items hold uint8 images. target_train is label-free;
    target_train_labelled exists only for the oracle baseline and target_test / target_val only
    for evaluation. Train splits augment items asked for with a seed (Augmented)."""

    spec: KeypointSpec
    source_train: Augmented
    source_val: Dataset
    source_test: Dataset
    target_train: Dataset
    target_val: Dataset
    target_test: Dataset
    target_train_labelled: Dataset


def cache_root(root: str) -> Path:
    if root:
        return Path(root)
    return Path(os.environ.get("REGDA_DIST_CACHE", Path.home() / ".cache" / "regda-dist"))


def chosen_keypoints(data_cfg) -> str | KeypointSpec:
    """What data.keypoints chooses: a registered set's name, from_data, "" (the datasets' own
    sets), or the set defined in data.keypoint_set (custom)."""
    if data_cfg.keypoints != CUSTOM:
        return data_cfg.keypoints
    k = data_cfg.keypoint_set
    return define(k.name, k.names, k.groups, k.skeleton, k.flip_pairs)  # checked by the config


def task_spec(data_cfg, check_roots: bool = False) -> KeypointSpec:
    """The task's keypoint set, from the config (from_data: and the categories of the source's
    COCO train.json); with check_roots, real datasets' folders must exist on this machine.
    Source and target must have the same keypoint names; a registered set must be labelled
    enough by each domain's files (data.min_keypoint_match), where they are on this machine."""
    if data_cfg.task:
        return synthetic.TASKS[data_cfg.task].spec
    src, tgt = data_cfg.source, data_cfg.target
    for side in ("source", "target"):
        root = Path(getattr(data_cfg, side).root).expanduser()
        if check_roots and not root.is_dir():
            raise DatasetError(f"{root}: missing folder (data.{side}.root)")
    chosen = chosen_keypoints(data_cfg)
    try:
        source = dataset_spec(src.dataset, chosen, src.root, src.categories)
        target = dataset_spec(tgt.dataset, chosen, tgt.root, tgt.categories)
    except DatasetError as err:
        raise ConfigError(f"data: {err}") from None
    differ = name_difference(source, target, ("source", "target"))
    if differ:
        raise ConfigError(
            f"data: source {src.dataset!r} has {source.name} keypoints but target "
            f"{tgt.dataset!r} has {target.name}: {differ}"
        )
    spec = target if _spec_side(data_cfg) == "target" else source
    if isinstance(chosen, str) and chosen not in ("", FROM_DATA):  # a registered set
        for side in DOMAINS:
            d = getattr(data_cfg, side)
            weak = weak_match(d.dataset, d.root, spec, data_cfg.min_keypoint_match, d.categories)
            if weak:
                raise ConfigError(f"data.{side} ({d.root}): {weak}; {WEAK_MATCH_FIX}")
    return spec


def _spec_side(data_cfg) -> str:
    """The domain whose set is the task's: a reader of any set (coco) maps its files onto a
    fixed reader's set, not the reverse."""
    fixed = fixed_spec(data_cfg.target.dataset) and not fixed_spec(data_cfg.source.dataset)
    return "target" if fixed else "source"


def keypoint_notes(data_cfg, spec: KeypointSpec) -> list[str]:
    """Where a domain's files match the task's set only partly (which keypoints are dropped,
    which get no label, which match under another name), which categories they use, and how
    the set a domain's data declares was read (from_data). Said at the start of every run."""
    if data_cfg.task:
        return []
    notes = []
    for side in DOMAINS:
        d = getattr(data_cfg, side)
        said = match_notes(d.dataset, d.root, spec, d.categories)
        if data_cfg.keypoints == FROM_DATA and side == _spec_side(data_cfg):
            said += own_set_notes(d.dataset, d.root, d.categories)
        notes += [f"data.{side} ({d.root}): {note}" for note in said]
    return notes


def build_task(data_cfg) -> TaskData:
    """The synthetic task named by data_cfg.task (generated once, then read from the cache), or
    with task "" the real datasets data_cfg.source and data_cfg.target, read from disk."""
    augment = Augment(data_cfg.augment) if is_active(data_cfg.augment) else None
    if not data_cfg.task:
        return _real_task(data_cfg, augment)
    task = synthetic.TASKS.get(data_cfg.task)
    if task is None:
        raise ValueError(
            f"unknown task {data_cfg.task!r}; known: {', '.join(sorted(synthetic.TASKS))}"
        )
    sizes = {"train": data_cfg.num_train, "val": data_cfg.num_val, "test": data_cfg.num_test}
    root = cache_root(data_cfg.root) / "synthetic"

    def split(domain: str, name: str) -> KeypointDataset:
        d = synthetic.load_split(
            task.name, domain, name, sizes[name], data_cfg.image_size, data_cfg.seed, root
        )
        return KeypointDataset(d["images"], d["keypoints"], d["visible"])

    return _bundle(task.spec, split, _train_augment(data_cfg, augment))


def _train_augment(data_cfg, augment: Augment | None) -> dict[str, Augment | None]:
    """The augmentation of each domain's train split (data.<side>.augment switches it off)."""
    return {side: augment if getattr(data_cfg, side).augment else None for side in DOMAINS}


def _bundle(spec: KeypointSpec, split, augment: dict[str, Augment | None]) -> TaskData:
    """Every split of a task from split(domain, name); train splits augment (Augmented); target
    train also as images only."""
    target_train = Augmented(split("target", "train"), augment["target"])
    return TaskData(
        spec=spec,
        source_train=Augmented(split("source", "train"), augment["source"]),
        source_val=split("source", "val"),
        source_test=split("source", "test"),
        target_train=ImagesOnly(target_train),
        target_val=split("target", "val"),
        target_test=split("target", "test"),
        target_train_labelled=target_train,
    )


def _real_task(data_cfg, augment: Augment | None) -> TaskData:
    """Both domains read by their registered readers; images load lazily, per item."""
    spec = task_spec(data_cfg)
    domains = {
        side: create_dataset(d.dataset, d.root, spec, d.categories)
        for side, d in (("source", data_cfg.source), ("target", data_cfg.target))
    }

    def split(side: str, name: str) -> ImageSamples:
        samples = domains[side].splits[name]
        if not samples:
            raise DatasetError(
                f"{getattr(data_cfg, side).root}: the {name} split of {side} dataset "
                f"{domains[side].name!r} is empty"
            )
        return ImageSamples(samples, data_cfg.image_size)

    return _bundle(spec, split, _train_augment(data_cfg, augment))
