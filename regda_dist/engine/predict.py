"""An adapted model on anyone's images: `regda-dist predict` and `regda-dist evaluate`.

MODEL is an export folder (best/<task>/: config.yaml, model.pt, meta.json), a run folder
(config.yaml, model.pt, result.json) or a search folder (its exported best, when it has one
task). Images are cut and resized as an evaluated split is (data/images.py: a COCO annotation's
bbox made square and 1.25x larger, else the whole image padded to a square), the model runs as
evaluation runs it (eval mode, the run's precision), and each heatmap's argmax (heatmap.decode,
what PCK scores) is mapped back to the file's pixels: heatmap cell c is crop pixel c * stride
(the codec's convention), crop pixel p is file point (x0, y0) + p * side / image_size.
A keypoint's confidence is its heatmap's peak probability under a spatial softmax (the
distribution RegDA's KL loss trains toward the label's normalised Gaussian), divided by the peak
of that label distribution and capped at 1: a prediction as sharp as the labels it was trained
on is 1. The instance's score is their mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from regda_dist import config as C
from regda_dist.data import heatmap
from regda_dist.data.coco import crop_box, image_folder
from regda_dist.data.datasets import task_spec
from regda_dist.data.images import Crops, ImageSamples
from regda_dist.data.io import read_json
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.data.samples import DatasetError, Sample
from regda_dist.engine import checkpoint
from regda_dist.engine.build import model_for
from regda_dist.engine.evaluate import Evaluation
from regda_dist.engine.runtime import Runtime, resolve_device, resolve_precision
from regda_dist.folders import ExportFolder, RunFolder, SearchFolder
from regda_dist.methods import baseline_names, get_method

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class PredictError(ValueError):
    """A model folder or an input that cannot be used; the message names it."""


@dataclass
class Predictor:
    """A model ready to run: its config, keypoint set, weights on the runtime's device."""

    cfg: C.Config
    spec: KeypointSpec
    model: torch.nn.Module
    runtime: Runtime
    weights: Path
    label: str

    @property
    def stride(self) -> float:
        return self.cfg.data.image_size / self.cfg.data.heatmap_size

    @property
    def categories(self) -> tuple:
        """The COCO categories the model was adapted to (data.target.categories; none for a
        synthetic task: all)."""
        return () if self.cfg.data.task else tuple(self.cfg.data.target.categories)

    @property
    def sharpest(self) -> float:
        """The peak probability of a label heatmap (the codec's Gaussian of the run's sigma,
        normalised), in the middle of the map: what a confidence of 1 is."""
        h = self.cfg.data.heatmap_size
        label = heatmap.gaussians(torch.tensor([[h // 2, h // 2]]), torch.tensor([True]), h,
                                  self.cfg.adapt_sigma)  # fmt: skip
        return float(label.max() / label.sum())


def model_files(path: Path) -> tuple[Path, Path]:
    """(config.yaml, model.pt) of an export, run or search folder."""
    path = Path(path)
    if not path.is_dir():
        raise PredictError(f"{path}: not a folder (an export, run or search folder)")
    search = SearchFolder(path)
    if search.spec.is_file():
        best = search.best
        tasks = sorted(p for p in best.iterdir() if p.is_dir()) if best.is_dir() else []
        if not tasks:
            raise PredictError(f"{path}: a search with nothing exported: regda-dist export {path}")
        if len(tasks) > 1:
            names = ", ".join(p.name for p in tasks)
            raise PredictError(f"{path}: a search of several tasks ({names}); pass {tasks[0]}")
        path = tasks[0]
    export, run = ExportFolder(path), RunFolder(path)
    if export.config.is_file() and export.model.is_file():
        return export.config, export.model
    if run.config.is_file() and not run.model.is_file():
        raise PredictError(f"{path}: a run folder without model.pt (did the run finish?)")
    raise PredictError(f"{path}: not an export, run or search folder (no config.yaml + model.pt)")


def load_predictor(path: Path, device: str = "auto") -> Predictor:
    """The model of an export, run or search folder on `device` (auto: CUDA when there is
    one), in eval mode, at its run's precision."""
    config, weights = model_files(path)
    cfg = C.load(config)
    try:
        spec = task_spec(cfg.data)
    except (C.ConfigError, DatasetError) as err:
        raise PredictError(f"{config}: its keypoint set cannot be read here: {err}") from None
    dev = resolve_device(device)
    runtime = Runtime(dev, precision=resolve_precision(cfg.train.precision, dev))
    baseline = cfg.adapt.method in baseline_names()  # phase 1's model: phase 1's head
    layers = (cfg.pretrain.head_layers or None) if baseline else None
    model = model_for(cfg, runtime, spec.num_keypoints, layers)
    state = checkpoint.load(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise PredictError(f"{weights}: does not fit the model of {config} ({first})") from None
    label = get_method(cfg.adapt.method).label
    return Predictor(cfg, spec, model.to(dev).eval(), runtime, weights, label)


# ------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Inputs:
    """What to run on: one sample per crop, and what each result entry says of it."""

    samples: list[Sample] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)  # image_id, category_id (+ id)
    images: list[dict] = field(default_factory=list)  # COCO `images`: id, file_name, size


def _blank(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((k, 2)), np.zeros(k, np.float32)


def read_inputs(paths: list[str | Path], k: int, categories=()) -> Inputs:
    """Image files, folders of images (sorted, not recursive) or COCO JSON files (their
    annotations' boxes as crops, of `categories` (names or ids; the model's target categories)
    where the file defines any of them; an image without a box whole). COCO images keep their
    ids, which must be whole numbers, unique over every file given; image files are numbered
    after them. One line naming what is wrong: a missing path, a folder without images, an
    unreadable image, an image id that is missing or taken."""
    found, plain = Inputs(), []
    if not paths:
        raise PredictError("no images given")
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".json":
            _coco_inputs(path, k, found, categories)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise PredictError(f"{path}: no images in this folder ({kinds})")
            plain += files
        elif path.is_file():
            plain.append(path)
        else:
            raise PredictError(f"{path}: no such file or folder")
    image_id = max((img["id"] for img in found.images), default=0)
    for file in plain:
        image_id += 1
        width, height = _image_size(file)
        found.images.append({"id": image_id, "file_name": str(file), "width": width,
                             "height": height})  # fmt: skip
        found.samples.append(Sample(file, *_blank(k)))
        found.entries.append({"image_id": image_id, "category_id": 1})
    return found


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise PredictError(f"{path}: missing image") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise PredictError(f"{path}: unreadable image ({err})") from None


def _coco_images(path: Path, data: dict, taken: set) -> dict:
    """{id: image} of a COCO file: ids whole numbers, unique here and over the files before."""
    images = {}
    for i, img in enumerate(data["images"]):
        ok = isinstance(img, dict) and "file_name" in img
        image_id = img.get("id") if ok else None
        if not ok or not isinstance(image_id, int) or isinstance(image_id, bool):
            raise PredictError(f"{path}: images[{i}] needs a whole-number 'id' and a 'file_name'")
        if image_id in images or image_id in taken:
            raise PredictError(f"{path}: image id {image_id} is used twice (ids must be unique)")
        images[image_id] = img
    return images


def _coco_inputs(path: Path, k: int, found: Inputs, categories=()) -> None:
    data = read_json(path, "COCO file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise PredictError(f"{path}: not a COCO file (no 'images' list)")
    images = _coco_images(path, data, {img["id"] for img in found.images})
    base = image_folder(path, images.values())
    named = {c.get("id") for c in data.get("categories") or [] if isinstance(c, dict)
             and (c.get("id") in categories or c.get("name") in categories)}  # fmt: skip
    boxed, sizes = set(), {}
    for i, ann in enumerate(data.get("annotations") or []):
        where = f"{path}: annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict) or ann.get("iscrowd"):
            continue
        if named and ann.get("category_id") not in named:  # the model's categories only
            continue
        image = images.get(ann.get("image_id"))
        if image is None:
            raise PredictError(f"{where}: image_id {ann.get('image_id')!r} not in 'images'")
        box = crop_box(ann, where)
        if box is None:
            continue
        file = base / image["file_name"]
        if file not in sizes:
            sizes[file] = _image_size(file)
        found.samples.append(Sample(file, *_blank(k), box))
        entry = {"image_id": image["id"], "category_id": ann.get("category_id", 1)}
        found.entries.append({**entry, **({"id": ann["id"]} if "id" in ann else {})})
        boxed.add(image["id"])
    for image_id, image in images.items():
        if image_id in boxed:
            continue
        _image_size(base / image["file_name"])
        found.samples.append(Sample(base / image["file_name"], *_blank(k)))
        found.entries.append({"image_id": image_id, "category_id": 1})
    found.images += [{**img, "file_name": str(base / img["file_name"])} for img in images.values()]
    if not images:
        raise PredictError(f"{path}: no images in this COCO file")


# ------------------------------------------------------------------------------------------
# Running


@torch.no_grad()
def run(predictor: Predictor, inputs: Inputs, batch_size: int = 32, workers: int = 0,
        progress: bool = False) -> list[dict]:  # fmt: skip
    """COCO keypoint results, one per crop: keypoints [x, y, confidence] * K in the file's
    pixels, score (their mean), image_id, category_id (and the annotation's id)."""
    rt, size = predictor.runtime, predictor.cfg.data.image_size
    crops = Crops(inputs.samples, size)
    loader = DataLoader(crops, batch_size=batch_size, num_workers=workers,
                        pin_memory=rt.cuda, persistent_workers=False)  # fmt: skip
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="predict", unit="batch")
    results, at = [], 0
    for images, cuts in loader:
        with rt.autocast():
            y = predictor.model(rt.to_device(images))
        points, confidence = decode(y.float(), predictor.stride, predictor.sharpest)
        points = to_file_pixels(points.cpu().double(), cuts, size)
        for j in range(len(images)):
            kp = torch.cat((points[j], confidence[j].cpu().double()[:, None]), dim=1)
            entry = inputs.entries[at + j]
            results.append({**entry, "keypoints": [round(float(v), 3) for v in kp.flatten()],
                            "score": round(float(confidence[j].mean()), 4)})  # fmt: skip
        at += len(images)
    return results


def decode(logits: torch.Tensor, stride: float, sharpest: float = 1.0):
    """Heatmap logits (B, K, H, W) -> each keypoint's argmax in crop pixels (B, K, 2) (the cell
    PCK scores, times the stride) and its confidence (B, K): the peak probability under a
    spatial softmax over `sharpest` (a label heatmap's), at most 1."""
    cells, _ = heatmap.decode(logits)
    peak = logits.flatten(-2).softmax(dim=-1).amax(dim=-1)
    return cells.double() * stride, (peak / sharpest).clamp(max=1.0)


def to_file_pixels(points: torch.Tensor, cuts: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels (B, K, 2) -> the image file's, through each crop's box (B, 3) (x0, y0, side)."""
    return cuts[:, None, :2] + points * (cuts[:, None, 2:] / size)


# ------------------------------------------------------------------------------------------
# Evaluating


def evaluate(predictor: Predictor, coco: Path, batch_size: int = 32) -> dict:
    """PCK per keypoint group of the model on a labelled COCO file (a folder: its test.json),
    with the run's PCK rule (train.pck_threshold, train.pck_normalize), read as the run read
    its target test split (coco reader: categories, names onto the set)."""
    from regda_dist.data.coco import read_file

    file = Path(coco)
    if file.is_dir():
        file = file / "test.json"
    if not file.is_file():
        raise PredictError(f"{file}: no such COCO file")
    cfg = predictor.cfg
    samples, match = read_file(file, predictor.spec, predictor.categories)
    if not samples:
        raise PredictError(f"{file}: no annotations of the model's keypoint set")
    dataset = ImageSamples(samples, cfg.data.image_size)
    t = cfg.train
    ev = Evaluation(predictor.runtime, batch_size, 0, (cfg.data.image_size, cfg.data.heatmap_size),
                    t.pck_threshold, t.pck_normalize)  # fmt: skip
    pck = ev.pck(predictor.model, dataset, predictor.spec)
    return {
        "file": str(file),
        "model": str(predictor.weights),
        "method": predictor.label,
        "instances": len(samples),
        "pck_threshold": t.pck_threshold,
        "pck_normalize": t.pck_normalize,
        "pck": pck,
        "notes": list(match.notes),
    }


def write_results(out: Path, predictor: Predictor, inputs: Inputs, results: list[dict]) -> Path:
    """out/keypoints.json (COCO results) and out/images.json (the COCO `images` and
    `categories` they refer to: a ground-truth file without annotations, for the COCO API)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = predictor.spec
    categories = [{"id": c, "name": spec.name, "keypoints": list(spec.names),
                   "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}
                  for c in sorted({e["category_id"] for e in inputs.entries})]  # fmt: skip
    index = {"images": inputs.images, "annotations": [], "categories": categories}
    (out / "images.json").write_text(json.dumps(index, indent=1))
    path = out / "keypoints.json"
    path.write_text(json.dumps(results))
    return path
