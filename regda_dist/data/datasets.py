"""Datasets of a transfer task: labelled splits, label-free views, and the task bundle."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from regda_dist.data import synthetic
from regda_dist.data.keypoints import KeypointSpec

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, ImageNet-normalised."""
    return (images_uint8.float() / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


class KeypointDataset(Dataset):
    """In-memory labelled split: (image, keypoints (K, 2) in pixels, visible (K,))."""

    def __init__(self, images: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor):
        if not (len(images) == len(keypoints) == len(visible)):
            raise ValueError(
                f"split sizes differ: {len(images)} images, {len(keypoints)} keypoints"
            )
        self.images, self.keypoints, self.visible = images, keypoints, visible

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return normalise(self.images[i]), self.keypoints[i], self.visible[i]


class ImagesOnly(Dataset):
    """A label-free view: what target-domain training gets. Yields images, nothing else."""

    def __init__(self, dataset: Dataset):
        self._dataset = dataset

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, i):
        return self._dataset[i][0]


@dataclass
class TaskData:
    """Every split of a transfer task. target_train is label-free; target_train_labelled exists
    only for the oracle baseline and target_test / target_val only for evaluation."""

    spec: KeypointSpec
    source_train: Dataset
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


def build_task(data_cfg) -> TaskData:
    """The synthetic task named by data_cfg.task (generated once, then read from the cache)."""
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

    target_train = split("target", "train")
    return TaskData(
        spec=task.spec,
        source_train=split("source", "train"),
        source_val=split("source", "val"),
        source_test=split("source", "test"),
        target_train=ImagesOnly(target_train),
        target_val=split("target", "val"),
        target_test=split("target", "test"),
        target_train_labelled=target_train,
    )
