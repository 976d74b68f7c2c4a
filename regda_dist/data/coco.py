"""COCO keypoint JSON: any user dataset as a source or a target, and an exporter of tasks.

A folder holds train.json and test.json (val.json optional: else val is carved from train, see
samples.carve_val), each a COCO keypoint file: `images` [{id, file_name, ...}], `annotations`
[{image_id, category_id, keypoints [x, y, v] * N (or nested [[x, y, v], ...]), bbox (optional),
iscrowd (optional)}] and `categories` [{id, name, keypoints [names], skeleton}]. `file_name` is
relative to the folder (or to its images/ subfolder). A domain reads the categories it names
(data.<side>.categories; all by default), which share one keypoint set (coco_categories). The
keypoint set is theirs (data.keypoints: from_data: their names, their skeleton as 0-based bones,
group "all") or a chosen one: then the file's names map onto the set's by name
(keypoints.canonical: case-insensitive, "left_" as "l_", so COCO's person keypoints fill
Body16's limbs) or by one of the set's aliases (OpenMMLab's hand names onto hand21); set
keypoints without a match get weight 0 and file keypoints without one are dropped, both said in
the domain's notes. Weight = 1 where v > 0. Crop: the annotation's bbox made square and 1.25x
larger, or the whole image (aspect-preserving resize + pad) without a bbox. Crowd annotations
are skipped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from regda_dist.data.coco_categories import (
    FileCategories,
    bones,
    file_categories,
    select,
    set_name,
    summary,
    undefined_ids,
    usage_note,
)
from regda_dist.data.io import field_array, read_json
from regda_dist.data.keypoints import (
    KeypointError,
    KeypointSpec,
    canonical,
    define,
    flip_pairs_by_name,
    shorten,
)
from regda_dist.data.registry import Categories, FileMatch, group_notes, register_dataset
from regda_dist.data.samples import DatasetError, Domain, Sample, carve_val

BOX_SCALE = 1.25
SPLIT_FILES = ("train", "val", "test")


def name_map(names: list[str], spec: KeypointSpec, where: str) -> list[int | None]:
    """For each keypoint of `spec`, its index in the file's `names` (None: not labelled), by
    its name or else by one of its aliases."""
    index = {}
    for i, name in enumerate(names):
        if canonical(str(name)) in index:
            raise DatasetError(f"{where}: keypoint name {name!r} appears twice")
        index[canonical(str(name))] = i
    mapping = [
        next((index[form] for form in spec.forms(k) if form in index), None)
        for k in range(spec.num_keypoints)
    ]
    if all(m is None for m in mapping):
        raise DatasetError(
            f"{where}: no keypoint name matches {spec.name} ({', '.join(spec.names[:4])}, ...)"
        )
    return mapping


def match_note(names: list[str], spec: KeypointSpec, mapping: list[int | None]) -> str:
    """'' when the file's keypoints are exactly the set's, else what is dropped, unlabelled and
    matched under another name (an alias)."""
    used = set(mapping)
    dropped = [str(n) for j, n in enumerate(names) if j not in used]
    unmatched = [spec.names[k] for k, j in enumerate(mapping) if j is None]
    aliased = [
        f"{names[j]} as {spec.names[k]}"
        for k, j in enumerate(mapping)
        if j is not None and canonical(str(names[j])) != canonical(spec.names[k])
    ]
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
    if aliased:
        parts.append(
            f"{len(aliased)} of its keypoints match {spec.name} under other names: "
            f"{shorten(aliased)}"
        )
    return "; ".join(parts)


def _match(info: FileCategories, spec: KeypointSpec, categories: Categories):
    """(the categories read, the file's keypoint names -> spec mapping, its FileMatch)."""
    chosen = select(info, categories)
    undefined_ids(info, chosen)
    names = list(chosen[0]["keypoints"])
    mapping = name_map(names, spec, f"{info.file}: categories")
    notes = (usage_note(info, chosen), match_note(names, spec, mapping))
    labelled = sum(m is not None for m in mapping)
    return chosen, mapping, FileMatch(info.file.name, labelled, tuple(n for n in notes if n))


def category_spec(root: Path, categories: Categories = ()) -> tuple[KeypointSpec, list[str]]:
    """The set a COCO folder declares (data.keypoints: from_data): the names and skeleton of
    its train.json categories, group "all", left/right flip pairs where names say left and
    right; and notes on how the skeleton was read."""
    file = root / "train.json"
    chosen = select(file_categories(file), categories)
    cat = chosen[0]
    names = [str(n) if type(n) is int else n for n in cat["keypoints"]]
    kept, notes = bones(cat, file)
    if any(c.get("skeleton") != cat.get("skeleton") for c in chosen):
        notes.append(
            f"the categories' skeletons differ; the bones are those of {cat.get('name')!r}"
        )
    try:
        spec = define(set_name(chosen), names, None, kept)
    except KeypointError as err:
        raise DatasetError(f"{file}: category {cat.get('name')!r}: {err.key}: {err}") from None
    spec = dataclasses.replace(spec, flip_pairs=flip_pairs_by_name(spec.names))
    return spec, [f"{file.name}: {note}" for note in notes]


def matches(root: Path, spec: KeypointSpec, categories: Categories = ()) -> list[FileMatch]:
    """How each of the folder's files matches `spec` (cached per file version)."""
    files = [root / f"{split}.json" for split in SPLIT_FILES]
    return [_match(file_categories(f), spec, categories)[2] for f in files if f.is_file()]


def crop_box(ann: dict, where: str) -> tuple[int, int, int] | None:
    """The crop of an annotation: its bbox made square and BOX_SCALE larger; None without one
    (the whole image)."""
    if not ann.get("bbox"):
        return None
    x, y, w, h = field_array(ann["bbox"], (4,), where, "bbox")
    side = max(1, int(round(BOX_SCALE * max(w, h))))
    return int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), side


def _keypoints(ann: dict, k: int, where: str) -> np.ndarray:
    """An annotation's keypoints (k, 3), written flat [x, y, v] * k or nested [[x, y, v], ...]."""
    values = ann.get("keypoints", [])
    if not isinstance(values, list):
        raise DatasetError(f"{where}: 'keypoints' must be a list, got {type(values).__name__}")
    if values and all(isinstance(v, list) for v in values):
        if len(values) != k:
            raise DatasetError(
                f"{where}: 'keypoints' has {len(values)} triples, expected {k} "
                "([x, y, v] per keypoint of the category)"
            )
        return field_array(values, (k, 3), where, "keypoints")
    if len(values) != 3 * k:
        raise DatasetError(
            f"{where}: 'keypoints' has {len(values)} values, expected "
            f"3 x {k} (x, y, v per keypoint of the category)"
        )
    return field_array(values, (3 * k,), where, "keypoints").reshape(-1, 3)


def image_folder(file: Path, images) -> Path:
    """Where a COCO file's `file_name`s are relative to: its folder, or its images/ subfolder."""
    first = next(iter(images), {}).get("file_name", "")
    return file.parent if (file.parent / first).is_file() else file.parent / "images"


def read_file(
    file: Path, spec: KeypointSpec, categories: Categories = ()
) -> tuple[list[Sample], FileMatch]:
    """Samples of one COCO keypoint JSON (of the chosen categories), in annotation order, and
    how the file matches `spec`."""
    data = read_json(file, "COCO keypoint annotations")
    chosen, mapping, found = _match(summary(data, file), spec, categories)
    used, k = {c.get("id") for c in chosen}, len(chosen[0]["keypoints"])
    images = {img.get("id"): img for img in data["images"] if isinstance(img, dict)}
    base = image_folder(file, images.values())
    samples = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{file}: annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict) or ann.get("iscrowd") or ann.get("category_id") not in used:
            continue
        image = images.get(ann.get("image_id"))
        if image is None or "file_name" not in image:
            raise DatasetError(f"{where}: image_id {ann.get('image_id')!r} not in 'images'")
        raw = _keypoints(ann, k, where)
        kp = np.zeros((spec.num_keypoints, 2))
        weight = np.zeros(spec.num_keypoints, np.float32)
        for j, m in enumerate(mapping):
            if m is not None:
                kp[j], weight[j] = raw[m, :2], float(raw[m, 2] > 0)
        side = max(ann["bbox"][2:4]) if crop_box(ann, where) else None  # checked by crop_box
        samples.append(
            Sample(base / image["file_name"], kp, weight, crop_box(ann, where), bbox_side=side)
        )
    return samples, found


@register_dataset(
    "coco",
    None,
    "train.json, test.json (val.json optional) + images",
    from_data=category_spec,
    matches=matches,
    categories=True,
)
def read(root: Path, spec: KeypointSpec, categories: Categories = ()) -> Domain:
    files = [s for s in SPLIT_FILES if s != "val" or (root / "val.json").is_file()]
    loaded = {split: read_file(root / f"{split}.json", spec, categories) for split in files}
    splits = {split: samples for split, (samples, _) in loaded.items()}
    notes = group_notes([(m.file, note) for _, m in loaded.values() for note in m.notes])
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
