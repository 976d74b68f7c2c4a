"""Dataset readers by name, like timm's models: `register_dataset` / `create_dataset`.

A reader turns a folder in a public layout into a Domain (labelled samples per split). A reader
of a fixed keypoint set (rhd: hand21) says so when registered, so commands can check a config
before touching the data; a reader of any set (coco) maps its files onto the chosen one and can
say which set its data declares (`from_data`) and how well its files match a set (`matches`);
a reader of files with several categories (coco) reads the ones a domain names (`categories`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from regda_dist.data.keypoints import CUSTOM, FROM_DATA, KEYPOINT_SETS, KeypointSpec
from regda_dist.data.samples import DatasetError, Domain
from regda_dist.registry import Registry

Reader = Callable[..., Domain]  # read(root, spec) or, with categories, read(root, spec, cats)
Categories = Sequence[str | int]  # COCO categories by name or id; empty = all


@dataclass(frozen=True)
class FileMatch:
    """How one annotation file of a folder matches a keypoint set: how many of the set's
    keypoints it labels, and what to say (partial matches, categories used and ignored)."""

    file: str
    labelled: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    read: Reader
    spec: KeypointSpec | None  # None: any set (the user chooses one with data.keypoints)
    layout: str  # one line: what the folder must hold
    # the set the folder declares, and notes on how it was read: from_data(root, categories)
    from_data: Callable[[Path, Categories], tuple[KeypointSpec, list[str]]] | None = None
    matches: Callable[[Path, KeypointSpec, Categories], list[FileMatch]] | None = None
    categories: bool = False  # its files hold categories a domain can choose


def group_notes(notes: list[tuple[str, str]]) -> list[str]:
    """(file name, note) -> one line per distinct note, naming its files."""
    files: dict[str, list[str]] = {}
    for name, note in notes:
        if note:
            files.setdefault(note, []).append(name)
    return [f"{', '.join(names)}: {note}" for note, names in files.items()]


def _register_builtin() -> None:
    import regda_dist.data.real  # noqa: F401 - registers the readers


DATASETS: Registry[_Entry] = Registry("dataset", DatasetError, _register_builtin)


def register_dataset(name: str, spec: KeypointSpec | None, layout: str, **hooks):
    """Decorator: register `read(root, spec) -> Domain` under `name` (hooks: from_data,
    matches, for readers of any keypoint set; categories=True: read(root, spec, categories))."""

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


def _entry(name: str, categories: Categories = ()) -> _Entry:
    """The reader `name`; one whose files have no categories refuses a choice of them."""
    entry = DATASETS.get(name)
    if categories and not entry.categories:
        raise DatasetError(
            f"dataset {name!r} has no categories to choose (categories: {list(categories)}); "
            "they are for COCO files"
        )
    return entry


def _chosen(
    name: str, keypoints: str | KeypointSpec, root: str | Path | None, categories: Categories
) -> KeypointSpec:
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
    return entry.from_data(Path(root).expanduser(), categories)[0]


def dataset_spec(
    name: str,
    keypoints: str | KeypointSpec = "",
    root: str | Path | None = None,
    categories: Categories = (),
) -> KeypointSpec:
    """The keypoint set dataset `name` is read in: `keypoints` is a registered set's name, a
    KeypointSpec, FROM_DATA (the set the data in `root` declares: its `categories`') or ""
    (the reader's own). A reader of a fixed set accepts only a set with the same names in the
    same order."""
    fixed = _entry(name, categories).spec
    if not keypoints:
        if fixed is None:
            raise DatasetError(
                f"dataset {name!r} needs a keypoint set (data.keypoints: a registered set, "
                f"{FROM_DATA} or custom)"
            )
        return fixed
    chosen = _chosen(name, keypoints, root, categories)
    if fixed is not None and tuple(chosen.names) != fixed.names:
        raise DatasetError(f"dataset {name!r} has {fixed.name} keypoints, not {chosen.name}")
    return chosen


def _matches(name: str, root: str | Path, spec: KeypointSpec, categories: Categories):
    entry, folder = _entry(name, categories), Path(root).expanduser()
    return entry.matches(folder, spec, categories) if entry.matches and folder.is_dir() else []


def match_notes(
    name: str, root: str | Path, spec: KeypointSpec, categories: Categories = ()
) -> list[str]:
    """Where the files in `root` match `spec` only partly (what is dropped, unlabelled, or
    matched under another name) and which categories they use and ignore."""
    found = _matches(name, root, spec, categories)
    return group_notes([(m.file, note) for m in found for note in m.notes])


def weak_match(
    name: str, root: str | Path, spec: KeypointSpec, share: float, categories: Categories = ()
) -> str:
    """'' when every file in `root` labels at least `share` of the keypoints of `spec`, else
    the first file that does not and by how much (data.min_keypoint_match)."""
    need = math.ceil(share * spec.num_keypoints - 1e-9)
    for m in _matches(name, root, spec, categories):
        if m.labelled < need:
            return (
                f"{m.file}: its keypoint names label {m.labelled} of the {spec.num_keypoints} "
                f"keypoints of {spec.name} (data.min_keypoint_match {share:g} needs {need})"
            )
    return ""


def own_set_notes(name: str, root: str | Path, categories: Categories = ()) -> list[str]:
    """How the set the data in `root` declares was read (from_data), where there is anything to
    say (e.g. a 0-based skeleton, bones dropped)."""
    entry, folder = _entry(name, categories), Path(root).expanduser()
    return entry.from_data(folder, categories)[1] if entry.from_data and folder.is_dir() else []


def create_dataset(
    name: str, root: str | Path, keypoints: str | KeypointSpec = "", categories: Categories = ()
) -> Domain:
    """Read the dataset `name` from the folder `root`, in the set `keypoints` names (of its
    files' `categories`, all by default, for a reader of files with categories)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: missing folder (dataset {name!r}: {layout(name)})")
    entry, spec = _entry(name, categories), dataset_spec(name, keypoints, root, categories)
    return entry.read(root, spec, tuple(categories)) if entry.categories else entry.read(root, spec)
