"""Dataset readers by name, like timm's models: `register_dataset` / `create_dataset`.

A reader turns a folder in a public layout into a Domain (labelled samples per split). A reader
of a fixed keypoint set (rhd: hand21) says so when registered, so commands can check a config
before touching the data; a reader of any set (coco) maps its files onto the chosen one and can
say which set its data declares (`from_data`) and how well its files match a set (`matches`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from regda_dist.data.keypoints import CUSTOM, FROM_DATA, KEYPOINT_SETS, KeypointSpec
from regda_dist.data.samples import DatasetError, Domain
from regda_dist.registry import Registry

Reader = Callable[[Path, KeypointSpec], Domain]


@dataclass(frozen=True)
class _Entry:
    read: Reader
    spec: KeypointSpec | None  # None: any set (the user chooses one with data.keypoints)
    layout: str  # one line: what the folder must hold
    from_data: Callable[[Path], KeypointSpec] | None = None  # the set the folder declares
    matches: Callable[[Path, KeypointSpec], list[str]] | None = None  # partial-match notes


def _register_builtin() -> None:
    import regda_dist.data.real  # noqa: F401 - registers the readers


DATASETS: Registry[_Entry] = Registry("dataset", DatasetError, _register_builtin)


def register_dataset(name: str, spec: KeypointSpec | None, layout: str, **hooks):
    """Decorator: register `read(root, spec) -> Domain` under `name` (hooks: from_data,
    matches, for readers of any keypoint set)."""

    def wrap(read: Reader) -> Reader:
        DATASETS.register(name, _Entry(read, spec, layout, **hooks))
        return read

    return wrap


def list_datasets() -> list[str]:
    return DATASETS.list()


def layout(name: str) -> str:
    return DATASETS.get(name).layout


def fixed_spec(name: str) -> KeypointSpec | None:
    """The one keypoint set the reader produces, or None for a reader of any set."""
    return DATASETS.get(name).spec


def _chosen(name: str, keypoints: str | KeypointSpec, root: str | Path | None) -> KeypointSpec:
    """A set named by data.keypoints: registered, custom (a KeypointSpec), or from_data."""
    if isinstance(keypoints, KeypointSpec):
        return keypoints
    entry = DATASETS.get(name)
    if keypoints == CUSTOM:
        raise DatasetError(
            f"keypoint set {CUSTOM!r} is defined in an experiment (data.keypoint_set); "
            "data check takes it as --keypoints EXPERIMENT.yaml"
        )
    if keypoints != FROM_DATA:
        if keypoints not in KEYPOINT_SETS:
            raise DatasetError(
                f"unknown keypoint set {keypoints!r}; registered: "
                f"{', '.join(KEYPOINT_SETS.list())} (or {FROM_DATA}, custom)"
            )
        return KEYPOINT_SETS.get(keypoints)
    if entry.spec is not None:
        return entry.spec
    if entry.from_data is None or root is None:
        raise DatasetError(f"dataset {name!r} cannot tell its own keypoint set ({FROM_DATA})")
    return entry.from_data(Path(root).expanduser())


def dataset_spec(
    name: str, keypoints: str | KeypointSpec = "", root: str | Path | None = None
) -> KeypointSpec:
    """The keypoint set dataset `name` is read in: `keypoints` is a registered set's name, a
    KeypointSpec, FROM_DATA (the set the data in `root` declares) or "" (the reader's own).
    A reader of a fixed set accepts only a set with the same names in the same order."""
    fixed = DATASETS.get(name).spec
    if not keypoints:
        if fixed is None:
            raise DatasetError(
                f"dataset {name!r} needs a keypoint set (data.keypoints: a registered set, "
                f"{FROM_DATA} or custom)"
            )
        return fixed
    chosen = _chosen(name, keypoints, root)
    if fixed is not None and tuple(chosen.names) != fixed.names:
        raise DatasetError(f"dataset {name!r} has {fixed.name} keypoints, not {chosen.name}")
    return chosen


def match_notes(name: str, root: str | Path, spec: KeypointSpec) -> list[str]:
    """Where the files in `root` match `spec` only partly: what is dropped and unlabelled."""
    entry, folder = DATASETS.get(name), Path(root).expanduser()
    return entry.matches(folder, spec) if entry.matches and folder.is_dir() else []


def create_dataset(name: str, root: str | Path, keypoints: str | KeypointSpec = "") -> Domain:
    """Read the dataset `name` from the folder `root`, in the set `keypoints` names."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: missing folder (dataset {name!r}: {layout(name)})")
    return DATASETS.get(name).read(root, dataset_spec(name, keypoints, root))
