"""The categories of a COCO keypoint file, as published files hold them.

A file may hold several categories with keypoints (AP-10K: one per species, each with the same
17 keypoints); a domain reads the ones it names (data.<side>.categories, by name or id; all by
default), which must share one keypoint set: the same names in the same order. Annotations of
other categories are ignored, and counted. A category's skeleton is read 1-based, as COCO
writes it, or 0-based where it holds a keypoint 0 (some projects write it so); bones naming a
keypoint the category does not have (CrowdPose ships COCO's 17-keypoint skeleton beside its 14
keypoints) are dropped, and said.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from regda_dist.data.io import read_json, require_file
from regda_dist.data.keypoints import FROM_DATA, shorten
from regda_dist.data.samples import DatasetError


@dataclass(frozen=True)
class FileCategories:
    """What a COCO file declares: its categories with keypoints (file order), the name of
    every category by id, and how many annotations (crowd ones aside) each category id has."""

    file: Path
    keypointed: tuple[dict, ...]
    names: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)


def summary(data, file: Path) -> FileCategories:
    """The categories of the COCO data read from `file`; DatasetError where it is no such file."""
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise DatasetError(f"{file}: needs 'images', 'annotations' and 'categories'")
    if not isinstance(data["images"], list) or not isinstance(data["annotations"], list):
        raise DatasetError(f"{file}: 'images' and 'annotations' must be lists")
    every = [c for c in data.get("categories") or [] if isinstance(c, dict)]
    keypointed = tuple(c for c in every if c.get("keypoints"))
    if not keypointed:
        raise DatasetError(f"{file}: no category has 'keypoints' (the names of its keypoints)")
    for cat in keypointed:
        if not isinstance(cat["keypoints"], list):
            raise DatasetError(
                f"{file}: category {_label(cat)}: 'keypoints' must be a list of names"
            )
    counts: dict = {}
    for ann in data["annotations"]:
        if isinstance(ann, dict) and not ann.get("iscrowd"):
            counts[ann.get("category_id")] = counts.get(ann.get("category_id"), 0) + 1
    return FileCategories(file, keypointed, {c.get("id"): c.get("name") for c in every}, counts)


@functools.lru_cache(maxsize=16)
def _cached(file: str, version: tuple[int, int]) -> FileCategories:
    del version  # part of the cache key: a changed file is read again
    return summary(read_json(Path(file), "COCO keypoint annotations"), Path(file))


def file_categories(file: Path) -> FileCategories:
    """The categories of a COCO file (each version of a file is read once)."""
    stat = require_file(file, "COCO keypoint annotations").stat()
    return _cached(str(file), (stat.st_mtime_ns, stat.st_size))


def _label(cat: dict) -> str:
    return repr(cat.get("name") if cat.get("name") is not None else cat.get("id"))


def select(info: FileCategories, wanted: Sequence[str | int] = ()) -> list[dict]:
    """The categories with keypoints that `wanted` names (a name, or an id as an integer; all
    when empty), in file order; they must share one keypoint set."""
    chosen = list(info.keypointed)
    if wanted:
        found = {}
        for ref in wanted:
            key = "id" if isinstance(ref, int) else "name"
            match = [c for c in info.keypointed if c.get(key) == ref]
            if not match:
                have = [f"{c.get('name')} (id {c.get('id')})" for c in info.keypointed]
                raise DatasetError(
                    f"{info.file}: no category {ref!r} with keypoints; it has: {shorten(have)}"
                )
            found[id(match[0])] = match[0]
        chosen = [c for c in info.keypointed if id(c) in found]
    for other in chosen[1:]:
        _same_set(chosen[0], other, info.file)
    return chosen


def _same_set(a: dict, b: dict, file: Path) -> None:
    """Categories share one set: the same keypoint names in the same order."""
    names_a, names_b = [str(n) for n in a["keypoints"]], [str(n) for n in b["keypoints"]]
    differ = next(
        (i for i, (x, y) in enumerate(zip(names_a, names_b, strict=False)) if x != y), None
    )
    if differ is None and len(names_a) == len(names_b):
        return
    if differ is None:
        what = f"{_label(a)} has {len(names_a)} keypoints but {_label(b)} has {len(names_b)}"
    else:
        what = (
            f"keypoint {differ} is {names_a[differ]!r} in {_label(a)} but {names_b[differ]!r} "
            f"in {_label(b)}"
        )
    raise DatasetError(
        f"{file}: categories {_label(a)} and {_label(b)} do not share one keypoint set: {what}; "
        "choose the categories of one set (data.source.categories / data.target.categories, "
        "data check --categories)"
    )


def usage_note(info: FileCategories, chosen: list[dict]) -> str:
    """Which categories a file has (where it has several) and which were used; how many
    annotations of other categories are ignored. '' when there is nothing to say."""
    used = {c.get("id") for c in chosen}
    parts = []
    if len(info.keypointed) > 1:
        listed = ", ".join(
            f"{c.get('name')} (id {c.get('id')}) {info.counts.get(c.get('id'), 0)}"
            for c in info.keypointed
        )
        names = ", ".join(str(c.get("name")) for c in chosen)
        parts.append(f"categories with keypoints (samples): {listed}; used: {names}")
    ignored = sum(n for cid, n in info.counts.items() if cid not in used)
    if ignored:
        parts.append(f"{ignored} annotations of other categories are ignored")
    return "; ".join(parts)


def undefined_ids(info: FileCategories, chosen: list[dict]) -> None:
    """A file none of whose annotations are of the chosen categories, while some name category
    ids its `categories` do not define (a published file's slip): one line naming both, not
    an empty split further on."""
    used = {c.get("id") for c in chosen}
    if any(info.counts.get(cid) for cid in used):
        return
    unknown = {cid: n for cid, n in info.counts.items() if cid not in info.names}
    if unknown:
        ids = ", ".join(f"{cid!r} ({n} annotations)" for cid, n in sorted(unknown.items(), key=str))
        defined = ", ".join(f"{cid!r} {name!r}" for cid, name in info.names.items())
        raise DatasetError(
            f"{info.file}: its annotations name category id {ids}, which its 'categories' do "
            f"not define (it defines {defined}); correct the annotations' category_id or add "
            "the category"
        )


def set_name(chosen: list[dict]) -> str:
    """The name of the set several categories share: theirs, or the first's and how many more."""
    names = [str(c.get("name") or FROM_DATA) for c in chosen]
    return "+".join(names) if len(names) <= 2 else f"{names[0]}+{len(names) - 1} more"


def bones(cat: dict, file: Path) -> tuple[list[tuple[int, int]], list[str]]:
    """A category's skeleton as 0-based pairs (1-based as COCO writes it, 0-based where it has a
    keypoint 0), without bones naming keypoints it does not have; and what to say about it."""
    skeleton, k = cat.get("skeleton") or [], len(cat["keypoints"])
    where = f"{file}: category {_label(cat)}"
    pairs = isinstance(skeleton, list) and all(
        isinstance(p, list) and len(p) == 2 and all(type(i) is int for i in p) for p in skeleton
    )
    if not pairs:
        got = repr(skeleton)
        raise DatasetError(
            f"{where}: 'skeleton' must be a list of [a, b] pairs of keypoint numbers, got "
            f"{got if len(got) <= 60 else got[:57] + '...'}"
        )
    base = 0 if any(i == 0 for pair in skeleton for i in pair) else 1
    inside = [all(0 <= i - base < k for i in pair) for pair in skeleton]
    kept = [(a - base, b - base) for (a, b), ok in zip(skeleton, inside, strict=True) if ok]
    dropped = [str(pair) for pair, ok in zip(skeleton, inside, strict=True) if not ok]
    notes = []
    if base == 0:
        notes.append(f"category {_label(cat)}: its skeleton is read as 0-based (it has keypoint 0)")
    if dropped:
        notes.append(
            f"category {_label(cat)}: {len(dropped)} of its {len(skeleton)} bones name keypoints "
            f"it does not have ({k}, {base}-based) and are dropped: {shorten(dropped)}"
        )
    return kept, notes
