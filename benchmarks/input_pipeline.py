"""Images/s of the real-data input path: decode, crop, resize to 256 px and the reference
augmentation, through the torch DataLoader with 0, 1, 2, ... loader processes, on COCO folders
this script writes (1000 x 1000 JPEGs like Human3.6M frames, 320 x 320 PNGs like RHD crops).
Writes benchmarks/results/input_pipeline.{md,json}.

    python -m benchmarks input_pipeline [--workers 0 1 2] [--batches 20] [--images 256]

Per core: images/s divided by the processes decoding (the training process with 0 workers,
else the loader processes). The GPU's appetite (images/s one RegDA iteration consumes) is read
from benchmarks/results/gpu_check.json when that ran on CUDA; else it is stated as not measured.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import RESULTS, record
from benchmarks.coco_folders import KINDS, write_folder
from regda_dist import config as C
from regda_dist.data.datasets import Augmented
from regda_dist.data.images import ImageSamples
from regda_dist.data.io import open_image
from regda_dist.data.loader import GlobalBatchSampler, make_loader
from regda_dist.data.registry import create_dataset
from regda_dist.data.transforms import Augment

REFERENCE = C.AugmentConfig(rotation=30, scale_min=0.6, scale_max=1.3, color_jitter=0.25, blur=0.8)
SIZE, BATCH = 256, 32


def train_split(folder: Path) -> Augmented:
    domain = create_dataset("coco", folder, "body16")
    return Augmented(ImageSamples(domain.splits["train"], SIZE), Augment(REFERENCE))


def images_per_s(dataset, workers: int, batches: int) -> float:
    """Steady-state rate: the first batches (loader start-up) are left out."""
    warm = max(2, workers)
    sampler = GlobalBatchSampler(len(dataset), BATCH, warm + batches, seed=0)
    loader = make_loader(dataset, sampler, workers, pin=False)
    it = iter(loader)
    for _ in range(warm):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        x, _, _ = next(it)
    assert x.shape == (BATCH, 3, SIZE, SIZE) and x.dtype == torch.uint8
    return BATCH * batches / (time.perf_counter() - start)


def decode_rates(folder: Path, n: int = 40) -> dict[str, float]:
    """Decodes/s of one file format, at full size and reduced (JPEG DCT scaling to >= 256 px of
    a person box, as ImageSamples reads it)."""
    files = sorted((folder / "images" / "train").iterdir())[:n]
    out = {}
    for name, shrink in (("full", None), ("reduced", lambda w, h: 0.45 * w / SIZE)):
        start = time.perf_counter()
        for f in files:
            open_image(f, shrink)
        out[name] = len(files) / (time.perf_counter() - start)
    return out


def gpu_appetite() -> dict | None:
    path = RESULTS / "gpu_check.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("device") != "cuda":
        return None
    return {"images_per_s": data["train"]["bf16"]["images_per_s"], "gpu": data.get("gpu")}


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--out", default=str(RESULTS / "input_pipeline"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="regda-input-"))
    rows, decode = [], {}
    for kind in KINDS:
        started = time.perf_counter()
        folder = write_folder(work, kind, args.images)
        print(f"{kind}: wrote {args.images} images in {time.perf_counter() - started:.0f} s")
        decode[kind] = decode_rates(folder)
        dataset = train_split(folder)
        for workers in args.workers:
            rate = images_per_s(dataset, workers, args.batches)
            rows.append({"kind": kind, "workers": workers, "images_per_s": rate,
                         "per_core": rate / max(1, workers)})  # fmt: skip
            print(f"{kind} workers={workers}: {rate:.1f} images/s")
    meta = record.provenance(__name__, argv)
    result = {"meta": meta, "rows": rows, "decode": decode, "gpu": gpu_appetite()}
    record.write(args.out, result, render(result), indent=2)
    return 0


def render(result: dict) -> str:
    meta, rows = result["meta"], result["rows"]
    lines = [
        "# Real-data input path: images/s through the DataLoader",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}; date: {meta['date']}",
        f"- per item: decode, crop to the person box x 1.25, resize to {SIZE} px, reference "
        "augmentation (rotation, random-resized crop 0.6-1.3, colour jitter 0.25, blur 0.8), "
        f"uint8 out; batches of {BATCH}; one torch thread per process",
        "",
        "| files | loader processes | images/s | images/s per core |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['workers']} | {r['images_per_s']:.1f} | {r['per_core']:.1f} |"
        )
    lines += ["", "Decoding alone (files/s, one process):", ""]
    for kind, d in result["decode"].items():
        lines.append(f"- {kind}: full {d['full']:.1f}, reduced {d['reduced']:.1f}")
    lines += ["", _appetite(result)]
    return "\n".join(lines) + "\n"


def _appetite(result: dict) -> str:
    per_core = {r["kind"]: r["per_core"] for r in result["rows"] if r["workers"] == 1}
    gpu = result["gpu"]
    if gpu is None:
        return (
            "GPU appetite: not measured (benchmarks/results/gpu_check.json has no CUDA run). "
            "Cores needed to feed one GPU = its RegDA images/s / the per-core rate above; "
            + ", ".join(f"{k}: {v:.0f} images/s per core" for k, v in per_core.items())
            + "."
        )
    need = ", ".join(f"{k}: {gpu['images_per_s'] / v:.1f} cores" for k, v in per_core.items())
    return (
        f"GPU appetite: one RegDA iteration (bf16, ResNet-101, 256 px) on {gpu['gpu']} consumes "
        f"{gpu['images_per_s']:.0f} images/s (gpu_check). Cores needed to feed it: {need}."
    )
