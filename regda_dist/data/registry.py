"""Dataset readers by name, like timm's models: `register_dataset` / `create_dataset`.

A reader turns a folder in a public layout into a Domain (labelled samples per split). Its
keypoint definition is known without reading anything (`dataset_spec`), so commands can check
a config before touching the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from regda_dist.data.keypoints import SPECS, KeypointSpec
from regda_dist.data.samples import DatasetError, Domain
from regda_dist.registry import Registry

Reader = Callable[[Path, KeypointSpec], Domain]


@dataclass(frozen=True)
class _Entry:
    read: Reader
    spec: KeypointSpec | None  # None: the user says (data.keypoints), e.g. COCO
    layout: str  # one line: what the folder must hold


def _register_builtin() -> None:
    import regda_dist.data.real  # noqa: F401 - registers the readers


DATASETS: Registry[_Entry] = Registry("dataset", DatasetError, _register_builtin)


def register_dataset(name: str, spec: KeypointSpec | None, layout: str):
    """Decorator: register `read(root, spec) -> Domain` under `name`."""

    def wrap(read: Reader) -> Reader:
        DATASETS.register(name, _Entry(read, spec, layout))
        return read

    return wrap


def list_datasets() -> list[str]:
    return DATASETS.list()


def layout(name: str) -> str:
    return DATASETS.get(name).layout


def dataset_spec(name: str, keypoints: str = "") -> KeypointSpec:
    """The keypoint definition a dataset is read in; `keypoints` names it where the dataset has
    none of its own (COCO) and must agree where it has one."""
    fixed = DATASETS.get(name).spec
    if keypoints and keypoints not in SPECS:
        raise DatasetError(f"unknown keypoint definition {keypoints!r}; known: {', '.join(SPECS)}")
    if fixed is None:
        if not keypoints:
            raise DatasetError(f"dataset {name!r} needs a keypoint definition (data.keypoints)")
        return SPECS[keypoints]
    if keypoints and SPECS[keypoints] != fixed:
        raise DatasetError(f"dataset {name!r} has {fixed.name} keypoints, not {keypoints}")
    return fixed


def create_dataset(name: str, root: str | Path, keypoints: str = "") -> Domain:
    """Read the dataset `name` from the folder `root`."""
    spec = dataset_spec(name, keypoints)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: missing folder (dataset {name!r}: {layout(name)})")
    return DATASETS.get(name).read(root, spec)
