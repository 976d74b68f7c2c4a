"""COCO keypoint JSON: any user dataset as a source or a target, and an exporter of tasks.

A folder holds train.json and test.json (val.json optional: else val is carved from train, see
samples.carve_val), each a COCO keypoint file: `images` [{id, file_name, ...}], `annotations`
[{image_id, category_id, keypoints [x, y, v] * N, bbox (optional), iscrowd (optional)}] and
`categories` [{id, name, keypoints [names], skeleton}]. `file_name` is relative to the folder
(or to its images/ subfolder). The keypoint set is the category's own (data.keypoints:
from_data: its names, its 1-based skeleton as 0-based bones, group "all") or a chosen one: then
the file's names map onto the set's by name (keypoints.canonical: case-insensitive, "left_" as
"l_", so COCO's person keypoints fill Body16's limbs); set keypoints without a match get weight
0 and file keypoints without one are dropped, both said in the domain's notes. Weight = 1 where
v > 0. Crop: the annotation's bbox made square and 1.25x larger, or the whole image
(aspect-preserving resize + pad) without a bbox. Crowd annotations are skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from regda_dist.data.io import field_array, read_json, require_file
from regda_dist.data.keypoints import (
    FROM_DATA,
    KeypointError,
    KeypointSpec,
    canonical,
    define,
    flip_pairs_by_name,
)
from regda_dist.data.registry import register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample, carve_val

BOX_SCALE = 1.25
SPLIT_FILES = ("train", "val", "test")


def name_map(names: list[str], spec: KeypointSpec, where: str) -> list[int | None]:
    """For each keypoint of `spec`, its index in the file's `names` (None: not labelled)."""
    index = {}
    for i, name in enumerate(names):
        if canonical(str(name)) in index:
            raise DatasetError(f"{where}: keypoint name {name!r} appears twice")
        index[canonical(str(name))] = i
    mapping = [index.get(canonical(n)) for n in spec.names]
    if all(m is None for m in mapping):
        raise DatasetError(
            f"{where}: no keypoint name matches {spec.name} ({', '.join(spec.names[:4])}, ...)"
        )
    return mapping


def match_note(names: list[str], spec: KeypointSpec, mapping: list[int | None]) -> str:
    """'' when the file's keypoints are exactly the set's, else what is dropped and unlabelled."""
    used = set(mapping)
    dropped = [str(n) for j, n in enumerate(names) if j not in used]
    unmatched = [spec.names[k] for k, j in enumerate(mapping) if j is None]
    parts = []
    if dropped:
        parts.append(
            f"{len(dropped)} of its {len(names)} keypoints are not in {spec.name} and are "
            f"dropped: {', '.join(dropped)}"
        )
    if unmatched:
        parts.append(
            f"{len(unmatched)} of the {spec.num_keypoints} keypoints of {spec.name} have no "
            f"match and weight 0: {', '.join(unmatched)}"
        )
    return "; ".join(parts)


def _grouped(notes: list[tuple[str, str]]) -> list[str]:
    """(file name, note) -> one line per distinct note, naming its files."""
    files: dict[str, list[str]] = {}
    for name, note in notes:
        if note:
            files.setdefault(note, []).append(name)
    return [f"{', '.join(names)}: {note}" for note, names in files.items()]


def _category(data, file: Path) -> dict:
    """The file's one category with keypoints."""
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise DatasetError(f"{file}: needs 'images', 'annotations' and 'categories'")
    cats = [c for c in data.get("categories", []) if isinstance(c, dict) and c.get("keypoints")]
    if len(cats) != 1:
        raise DatasetError(f"{file}: needs exactly one category with 'keypoints', has {len(cats)}")
    if not isinstance(cats[0]["keypoints"], list):
        raise DatasetError(f"{file}: the category's 'keypoints' must be a list of names")
    return cats[0]


@functools.lru_cache(maxsize=16)
def _cached_category(file: str, version: tuple[int, int]) -> dict:
    del version  # part of the cache key: a changed file is read again
    return _category(read_json(Path(file), "COCO keypoint annotations"), Path(file))


def category(file: Path) -> dict:
    """The keypoint category of a COCO file (each version of a file is read once)."""
    stat = require_file(file, "COCO keypoint annotations").stat()
    return _cached_category(str(file), (stat.st_mtime_ns, stat.st_size))


def _bones(skeleton, file: Path) -> list[list[int]]:
    """COCO's 1-based skeleton as 0-based pairs."""
    ok = isinstance(skeleton, list) and all(
        isinstance(p, list) and len(p) == 2 and all(type(i) is int and i >= 1 for i in p)
        for p in skeleton
    )
    if not ok:
        raise DatasetError(
            f"{file}: the category's 'skeleton' must be [a, b] pairs of 1-based keypoint numbers"
        )
    return [[a - 1, b - 1] for a, b in skeleton]


def category_spec(root: Path) -> KeypointSpec:
    """The set a COCO folder declares (data.keypoints: from_data): its train.json category's
    names and skeleton, group "all", left/right flip pairs where names say left and right."""
    file = root / "train.json"
    cat = category(file)
    names = [str(n) if type(n) is int else n for n in cat["keypoints"]]
    try:
        spec = define(
            str(cat.get("name") or FROM_DATA), names, None, _bones(cat.get("skeleton") or [], file)
        )
    except KeypointError as err:
        raise DatasetError(f"{file}: category {cat.get('name')!r}: {err.key}: {err}") from None
    return dataclasses.replace(spec, flip_pairs=flip_pairs_by_name(spec.names))


def match_notes(root: Path, spec: KeypointSpec) -> list[str]:
    """How the folder's files match `spec` where they match only partly (else nothing)."""
    notes = []
    for split in SPLIT_FILES:
        file = root / f"{split}.json"
        if file.is_file():
            names = list(category(file)["keypoints"])
            notes.append((file.name, match_note(names, spec, name_map(names, spec, str(file)))))
    return _grouped(notes)


def _box(ann: dict, where: str) -> tuple[int, int, int] | None:
    if not ann.get("bbox"):
        return None
    x, y, w, h = field_array(ann["bbox"], (4,), where, "bbox")
    side = max(1, int(round(BOX_SCALE * max(w, h))))
    return int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), side


def read_file(file: Path, spec: KeypointSpec) -> tuple[list[Sample], str]:
    """Samples of one COCO keypoint JSON, in annotation order, and its match_note."""
    data = read_json(file, "COCO keypoint annotations")
    cat = _category(data, file)
    if not isinstance(data["images"], list) or not isinstance(data["annotations"], list):
        raise DatasetError(f"{file}: 'images' and 'annotations' must be lists")
    cat_id, names = cat.get("id"), list(cat["keypoints"])
    mapping = name_map(names, spec, f"{file}: categories")
    images = {img.get("id"): img for img in data["images"] if isinstance(img, dict)}
    folder = file.parent
    first = next(iter(images.values()), {}).get("file_name", "")
    base = folder if (folder / first).is_file() else folder / "images"
    samples = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{file}: annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict) or ann.get("iscrowd") or ann.get("category_id") != cat_id:
            continue
        image = images.get(ann.get("image_id"))
        if image is None or "file_name" not in image:
            raise DatasetError(f"{where}: image_id {ann.get('image_id')!r} not in 'images'")
        if len(ann.get("keypoints", [])) != 3 * len(names):
            raise DatasetError(
                f"{where}: 'keypoints' has {len(ann.get('keypoints', []))} values, expected "
                f"3 x {len(names)} (x, y, v per keypoint of the category)"
            )
        raw = field_array(ann["keypoints"], (3 * len(names),), where, "keypoints").reshape(-1, 3)
        kp = np.zeros((spec.num_keypoints, 2))
        weight = np.zeros(spec.num_keypoints, np.float32)
        for k, j in enumerate(mapping):
            if j is not None:
                kp[k], weight[k] = raw[j, :2], float(raw[j, 2] > 0)
        side = max(ann["bbox"][2:4]) if _box(ann, where) else None  # checked by _box
        samples.append(
            Sample(base / image["file_name"], kp, weight, _box(ann, where), bbox_side=side)
        )
    return samples, match_note(names, spec, mapping)


@register_dataset(
    "coco",
    None,
    "train.json, test.json (val.json optional) + images",
    from_data=category_spec,
    matches=match_notes,
)
def read(root: Path, spec: KeypointSpec) -> Domain:
    files = [s for s in SPLIT_FILES if s != "val" or (root / "val.json").is_file()]
    loaded = {split: read_file(root / f"{split}.json", spec) for split in files}
    splits = {split: samples for split, (samples, _) in loaded.items()}
    notes = _grouped([(f"{split}.json", note) for split, (_, note) in loaded.items()])
    if "val" not in splits:
        splits["train"], splits["val"] = carve_val(splits["train"])
        notes.append("no val.json: val carved from train (seeded 10%, <= 1000)")
    return Domain("coco", spec, splits, notes)


# --------------------------------------------------------------------------------------------
# Export


def export_split(dataset: Dataset, spec: KeypointSpec, folder: Path, split: str) -> Path:
    """Write a labelled split as folder/<split>.json + lossless PNGs under folder/images/."""
    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(len(dataset)):
        image, kp, vis = dataset[i]
        name = f"{split}/{i:06d}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / "images" / name)
        h, w = image.shape[-2:]
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        triples = []
        for (x, y), v in zip(kp.tolist(), vis.tolist(), strict=True):
            triples += [x, y, 2] if v > 0 else [0, 0, 0]
        labelled = sum(v > 0 for v in vis.tolist())
        annotations.append(
            {"id": i, "image_id": i, "category_id": 1, "keypoints": triples,
             "num_keypoints": labelled, "iscrowd": 0}
        )  # fmt: skip
    category = {
        "id": 1,
        "name": spec.name,
        "keypoints": list(spec.names),
        "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],  # COCO: 1-based
    }
    file = folder / f"{split}.json"
    file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [category]})
    )
    return file


def export_task(task, folder: str | Path) -> dict[str, Path]:
    """A task's labelled splits as two COCO folders, folder/source and folder/target (target
    train from its labelled view), readable back with dataset 'coco'."""
    folder = Path(folder)
    out = {}
    for domain in ("source", "target"):
        for split in ("train", "val", "test"):
            name = "target_train_labelled" if (domain, split) == ("target", "train") else None
            dataset = getattr(task, name or f"{domain}_{split}")
            out[f"{domain}_{split}"] = export_split(dataset, task.spec, folder / domain, split)
    return out
