"""GPU check: RegDA at the reference setup on one GPU, the real-data DataLoader feeding it, every
collective on CUDA tensors in a one-rank NCCL process group, and a short phase-2 run whose losses
stay finite. Needs torch, torchvision and this repository only (no Ray, no install):

    PYTHONPATH=. python -m benchmarks gpu_check           # one GPU, under 8 minutes
    PYTHONPATH=. python -m benchmarks gpu_check --smoke   # a tiny CPU version (the test suite)

(a) s/iteration, images/s and peak GPU memory of RegDA iterations (steps A, B, C) on pre-loaded
    tensors: ResNet-101 from random init, 256 px images, 64 x 64 heatmaps, batch 32 per domain,
    fp32 and bf16 autocast, channels-last.
(b) the same iterations fed by the real-data path (1000 x 1000 JPEGs written here, decoded,
    cropped, reference augmentation) at a budget of 0/4/8/15 loader processes for the two
    loaders together (15: the 16-core box less the training process), against (a): is the GPU
    starved? Timed for >= 4 x budget iterations after the loaders' first prefetch has drained
    (steady state, not the start-up transient); the loader processes alive are counted.
(c) sync, broadcast, average, agree, reduce_sum and gather on CUDA tensors in a NCCL group of one
    rank (NCCL refuses CPU tensors even then), and a sharded evaluation through them.
(d) RegDA for one short epoch through the trainer, bf16, from the loaders, with one loader
    budget for its two training loaders and its persistent evaluation pool: losses finite, and
    the loader processes alive at its evaluation within the budget.
(e) the gradient all-reduce launched in buckets during backward (engine/overlap.py) against the
    synchronous one: the share of gradient bytes launched while backward ran, s/iteration of
    each (one rank: the all-reduce itself is trivial, the hooks and buckets are not).
Prints and writes benchmarks/results/gpu_check.{md,json}.
"""

from __future__ import annotations

import math
import multiprocessing
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# torch._dynamo before any process group: imported after one (the first optimizer step does),
# it keeps the group alive past destroy_process_group, and its gloo threads can abort the
# process at exit (tests/ranks.py)
import torch
import torch._dynamo  # noqa: F401
import torch.distributed as dist

from benchmarks import RESULTS, record
from benchmarks.coco_folders import write_folder
from regda_dist import config as C
from regda_dist.data.datasets import build_task
from regda_dist.data.loader import PREFETCH
from regda_dist.engine.build import train_mode
from regda_dist.engine.collectives import Collectives
from regda_dist.engine.overlap import OverlappedSync
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.trainer import Trainer
from regda_dist.methods.regda import RegDAStep


@dataclass
class Setup:
    device: str
    backend: str
    backbone: str
    channels: int  # upsampling and head width
    image_size: int
    heatmap_size: int
    batch: int
    iters: int  # measured iterations of (a)
    precisions: tuple[str, ...]
    budgets: tuple[int, ...]  # loader processes of (b), for both loaders together
    images: int  # JPEGs written for (b) and (d)
    phase2_iters: int
    phase2_budget: int  # loader processes of (d): source, target and evaluation together
    bucket_mb: float  # gradient buckets of (e)


FULL = Setup("cuda:0", "nccl", "resnet101", 256, 256, 64, 32, 30, ("fp32", "bf16"),
             (0, 4, 8, 15), 256, 50, 15, 25.0)  # fmt: skip
SMOKE = Setup("cpu", "gloo", "small_resnet", 16, 64, 32, 4, 2, ("fp32",), (0, 2), 40, 3, 4, 0.01)


def config(s: Setup, folder: Path, out: Path, precision: str, loaders: int = 0) -> C.Config:
    return C.load(None, [
        "data.task=''", "data.keypoints=body16", "data.source.dataset=coco",
        f"data.source.root={folder}", "data.target.dataset=coco", f"data.target.root={folder}",
        "data.augment.rotation=30", "data.augment.scale_min=0.6", "data.augment.scale_max=1.3",
        "data.augment.color_jitter=0.25", "data.augment.blur=0.8",
        f"data.image_size={s.image_size}", f"data.heatmap_size={s.heatmap_size}",
        f"model.backbone={s.backbone}", f"model.upsample_channels={s.channels}",
        f"adapt.batch_size={s.batch}", f"adapt.iters_per_epoch={s.phase2_iters}", "adapt.epochs=1",
        f"train.device={s.device}", f"train.precision={precision}", f"train.output_dir={out}",
        "train.progress=false", "train.tensorboard=false", "train.eval_batch_size=32",
        f"train.loader_workers={loaders}",
    ])  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(trainer: Trainer, model, sync=None):
    """The body of Trainer.adapt's iteration: labels on the device, steps A, B, C."""
    rt, cfg = trainer.runtime, trainer.cfg
    regda = RegDAStep.from_config(model, cfg, rt, sync=sync)  # its optimisers, not its schedules

    def step(batch_s, x_t):
        x_s, kp_s, vis_s = batch_s
        target_s, weight_s = trainer._labels(kp_s, vis_s, cfg.adapt_sigma)
        return regda(rt.to_device(x_s), target_s, weight_s, rt.to_device(x_t))

    return step


def timed(step, batches, warm: int, device) -> dict:
    """s/iteration and images/s of `step` over `batches` after `warm` iterations."""
    it = iter(batches)
    for _ in range(warm):
        logs = step(*next(it))
    _sync(device)
    processes = len(multiprocessing.active_children())  # loader processes (fed batches)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, n = time.perf_counter(), 0
    for batch in it:
        logs = step(*batch)
        n += 1
    _sync(device)
    seconds = (time.perf_counter() - start) / n
    out = {
        "s_per_iter": seconds,
        "images_per_s": 2 * len(batch[1]) / seconds,
        "loss_a": float(logs["train/loss_a"]),
        "loader_processes": processes,
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def device_batches(trainer: Trainer, s: Setup) -> tuple:
    """One source batch (images, keypoints, visibility) and one target batch, on the device."""
    task, rt = trainer.task, trainer.runtime
    batch_s = next(iter(trainer._loader(task.source_train, s.batch, 1, 2, 0)))
    x_t = next(iter(trainer._loader(task.target_train, s.batch, 1, 3, 0)))
    return tuple(rt.to_device(t) for t in batch_s), rt.to_device(x_t)


def preloaded(trainer: Trainer, s: Setup) -> dict:
    """(a): the same two device batches every iteration: the GPU's own rate."""
    model = train_mode(trainer.cfg, trainer.build_model())
    batches = [device_batches(trainer, s)] * (5 + s.iters)
    return timed(_step(trainer, model), batches, 5, trainer.runtime.device)


def fed(trainer: Trainer, s: Setup, budget: int) -> dict:
    """(b): iterations fed by the two DataLoaders with `budget` processes between them, timed
    for >= 4 x budget iterations once the processes' first prefetch (PREFETCH batches each,
    ready at the start) is consumed: the steady state, not the start-up transient."""
    source_workers, target_workers = (budget + 1) // 2, budget // 2
    warm = PREFETCH * source_workers + 3
    iters = warm + max(10, 4 * budget)
    task = trainer.task
    loaders = [
        trainer._loader(task.source_train, s.batch, iters, 2, source_workers),
        trainer._loader(task.target_train, s.batch, iters, 3, target_workers),
    ]
    model = train_mode(trainer.cfg, trainer.build_model())
    batches = zip(*loaders, strict=True)
    return {"iterations": iters - warm, **timed(_step(trainer, model), batches, warm,
                                                trainer.runtime.device)}  # fmt: skip


def collectives(trainer: Trainer) -> dict:
    """(c): every collective on device tensors (values checked), then a sharded evaluation."""
    comm, device = trainer.runtime.comm, trainer.runtime.device
    model = trainer.build_model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    comm.sync(list(model.parameters()))
    comm.broadcast(model)
    checks = {
        "sync": all(bool((p.grad == 1).all()) for p in model.parameters()),
        "average": float(comm.average({"a": 2.0, "b": torch.tensor(4.0, device=device)})["b"]) == 4,
        "agree": comm.agree({"decision": 7}) == {"decision": 7},
        "reduce_sum": comm.reduce_sum(torch.arange(3, device=device)).tolist() == [0, 1, 2],
        "gather": comm.gather(torch.ones(2, 3, dtype=torch.bool, device=device), [2]).all().item(),
    }
    metrics = trainer.evaluator(model)  # shards summed and gathered through the group
    proxies = {f"proxy/{name}" for name in trainer.cfg.train.proxies}
    checks["evaluation"] = proxies <= set(metrics) and math.isfinite(metrics["oracle/target_pck"])
    return checks


def phase2(trainer: Trainer, out: Path) -> dict:
    """(d): one short epoch of RegDA through the trainer (bf16 on CUDA), from the loaders; the
    loader processes alive at its evaluation (both training loaders and the evaluation pool
    persist) against the budget."""
    epochs, alive = [], []

    def seen(phase, epoch, metrics):
        epochs.append(metrics)
        alive.append(len(multiprocessing.active_children()))

    trainer.add_callback("on_eval", seen)
    model = trainer.build_model()
    start = time.perf_counter()
    trainer.adapt(model.state_dict(), out / "phase2.ckpt")
    losses = {k: v for k, v in epochs[-1].items() if k.startswith("train/loss")}
    return {
        "losses": losses,
        "finite": all(math.isfinite(v) for v in losses.values()),
        "seconds": time.perf_counter() - start,
        "images_per_s": epochs[-1]["time/images_per_s"],
        "eval_s": epochs[-1]["time/eval_s"],
        # of an epoch's training + evaluation, evaluation's share (issue 35: the evaluation pool
        # gets a quarter of the loader budget and re-estimates BatchNorm every epoch)
        "eval_share": epochs[-1]["time/eval_s"]
        / (epochs[-1]["time/epoch_s"] + epochs[-1]["time/eval_s"]),
        "checkpoint_s": epochs[-1]["time/checkpoint_s"],
        "loader_processes": max(alive),
        "loader_budget": trainer.loaders.total,
        "within_budget": max(alive) <= trainer.loaders.total,
    }


def overlap(trainer: Trainer, s: Setup) -> dict:
    """(e): RegDA iterations on pre-loaded batches with the synchronous gradient all-reduce and
    with buckets of s.bucket_mb MB launched during backward (engine/overlap.py)."""
    batches = [device_batches(trainer, s)] * (5 + s.iters)
    out = {}
    for name in ("synchronous", "overlapped"):
        torch.manual_seed(0)
        model = train_mode(trainer.cfg, trainer.build_model())
        sync = (
            OverlappedSync(trainer.runtime.comm, model, s.bucket_mb)
            if name != "synchronous"
            else None
        )
        out[name] = timed(_step(trainer, model, sync), batches, 5, trainer.runtime.device)
    out.update(bucket_mb=s.bucket_mb, share_in_backward=sync.overlap(), **sync.stats)
    out["ok"] = sync.stats["fallback_bytes"] == 0 and sync.overlap() > 0
    sync.close()
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_device(name: str) -> torch.device:
    """The device to run on, with an index where it is CUDA: torch.cuda.set_device (and NCCL's
    object collectives, which use the current device) refuse a bare "cuda"."""
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    return device


def run(s: Setup, work: Path) -> dict:
    started = time.perf_counter()
    device = run_device(s.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    folder = write_folder(work, "jpeg1000" if device.type == "cuda" else "png320", s.images)
    dist.init_process_group(
        s.backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    result = {"device": device.type, "torch": torch.__version__, "train": {}, "loader": []}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    for precision in s.precisions:
        cfg = config(s, folder, work / "runs", precision)
        trainer = Trainer(cfg, build_task(cfg.data), Runtime(device, precision=precision))
        result["train"][precision] = preloaded(trainer, s)
        print(f"(a) {precision}: {result['train'][precision]}", flush=True)
    best = s.precisions[-1]
    cfg = config(s, folder, work / "runs", best)
    comm = Collectives(device)
    trainer = Trainer(cfg, build_task(cfg.data), Runtime(device, precision=best, comm=comm))
    for budget in s.budgets:
        row = {"workers": budget, **fed(trainer, s, budget)}
        row["share_of_preloaded"] = row["images_per_s"] / result["train"][best]["images_per_s"]
        result["loader"].append(row)
        print(f"(b) {row}", flush=True)
    result["collectives"] = collectives(trainer)
    print(f"(c) {result['collectives']}", flush=True)
    cfg = config(s, folder, work / "runs", best, s.phase2_budget)
    runtime = Runtime(device, precision=best, comm=comm)
    result["phase2"] = phase2(Trainer(cfg, build_task(cfg.data), runtime), work)
    print(f"(d) {result['phase2']}", flush=True)
    result["overlap"] = overlap(trainer, s)
    print(f"(e) {result['overlap']}", flush=True)
    dist.destroy_process_group()
    result["wall_s"] = time.perf_counter() - started
    return result


def render(result: dict, s: Setup, command: str) -> str:
    lines = [
        "# GPU check",
        "",
        f"- command: `{command}`; date: {result['date']}; device: {result['device']} "
        f"{result.get('gpu', '')}; torch {result['torch']}; wall {result['wall_s']:.0f} s",
        f"- setup: {s.backbone} (random init), {s.image_size} px, {s.heatmap_size} x "
        f"{s.heatmap_size} heatmaps, batch {s.batch} per domain, channels-last on CUDA",
        "",
        "(a) RegDA iterations (A, B, C) on pre-loaded tensors:",
        "",
        "| precision | s/iteration | images/s | peak memory (GiB) |",
        "|---|---|---|---|",
    ]
    for p, r in result["train"].items():
        mem = f"{r['peak_memory_gib']:.1f}" if "peak_memory_gib" in r else "-"
        lines.append(f"| {p} | {r['s_per_iter']:.3f} | {r['images_per_s']:.0f} | {mem} |")
    lines += [
        "",
        "(b) fed by the real-data DataLoader:",
        "",
        "| loader budget | processes alive | timed iterations | images/s | share of pre-loaded |",
        "|---|---|---|---|---|",
    ]
    for r in result["loader"]:
        lines.append(
            f"| {r['workers']} | {r['loader_processes']} | {r['iterations']} | "
            f"{r['images_per_s']:.0f} | {r['share_of_preloaded']:.0%} |"
        )
    ok = all(result["collectives"].values())
    passed = ", ".join(k for k, v in result["collectives"].items() if v)
    losses = ", ".join(f"{k} {v:.3f}" for k, v in result["phase2"]["losses"].items())
    p2, ov = result["phase2"], result["overlap"]
    finite = "finite" if p2["finite"] else "NOT finite"
    within = "within" if p2["within_budget"] else "OVER"
    lines += [
        "",
        f"(c) collectives on {result['device']}: {'all passed' if ok else 'FAILED'} ({passed})",
        f"(d) phase 2: losses {finite} ({losses}); {p2['loader_processes']} loader processes "
        f"alive at its evaluation, {within} the budget of {p2['loader_budget']}; evaluation "
        f"{p2['eval_s']:.1f} s ({p2['eval_share']:.0%} of training + evaluation; this check's "
        "epoch is short, a real one's share is smaller), checkpoint "
        f"{p2['checkpoint_s']:.2f} s",
        f"(e) gradient all-reduce in {ov['bucket_mb']:g} MB buckets: "
        f"{ov['share_in_backward']:.0%} of the bytes launched during backward, "
        f"{ov['fallback_bytes']} left to the synchronous fallback; s/iteration "
        f"{ov['overlapped']['s_per_iter']:.3f} overlapped vs "
        f"{ov['synchronous']['s_per_iter']:.3f} synchronous (one rank)",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny CPU run (tests)")
    parser.add_argument(
        "--out",
        help="results path without suffix (default: "
        "benchmarks/results/gpu_check; --smoke: a temporary folder)",
    )
    args = parser.parse_args(argv)
    s = SMOKE if args.smoke else FULL
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --smoke for the CPU version)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="regda-gpu-check-"))
    default = work / "gpu_check" if args.smoke else RESULTS / "gpu_check"
    out = Path(args.out) if args.out else default
    result = run(s, work)
    meta = record.provenance(__name__, argv)
    meta["command"] = "PYTHONPATH=. " + meta["command"]  # no install on the GPU machine
    result.update(date=meta["date"], machine=meta["machine"])
    record.write(out, {**result, "command": meta["command"]}, render(result, s, meta["command"]),
                 indent=2)  # fmt: skip
    p2 = result["phase2"]
    passed = all(result["collectives"].values()) and p2["finite"] and p2["within_budget"]
    passed = passed and result["overlap"]["ok"]
    return 0 if passed else 1
