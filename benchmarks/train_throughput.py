"""RegDA training throughput on the CPU: the plain engine vs the same run under Ray Train, the
causes of Ray's overhead, the demo's trial settings, 2 workers on a 2-node loopback cluster, and
(--baseline REV) the engine of an earlier revision side by side. Writes
benchmarks/results/train_throughput.{md,json}.

    python -m benchmarks train_throughput [--epochs 4] [--iters 40] [--repeats 2] [--baseline REV]

Throughput is measured inside the adaptation loop (time/images_per_s: no evaluation, no
checkpoint; the first epoch is a warm-up and is left out); wall is the whole `regda-dist train`
command. Runs are interleaved, `--repeats` times each, so that a slow phase of this shared
machine hits every configuration alike; ratios are taken between means of the same round-robin.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import RESULTS, ROOT, record
from regda_dist.distributed.local_cluster import auth_env, loopback_cluster
from regda_dist.folders import RunFolder

# the synth_hand model of the embedded recipe, pinned so that every revision trains the same one
PINNED = [
    "model.backbone=small_resnet",
    "model.upsample_channels=32",
    "data.image_size=64",
    "data.heatmap_size=32",
    "train.progress=false",
    "pretrain.epochs=1",
    "pretrain.iters_per_epoch=20",
    "pretrain.milestones=[1]",
]
# The plain engine inside a Ray task (a Ray worker process, no Ray Train): separates the cost
# of living in a Ray worker from Ray Train's own machinery.
RAY_TASK = """
import sys
from pathlib import Path

import ray

from regda_dist import config as C
from regda_dist.distributed.cluster import connect
from regda_dist.engine.run import run_here

experiment, run_dir, *sets = sys.argv[1:]
cfg = C.load(experiment, sets)
connect()


@ray.remote(num_cpus=2)
def engine(cfg, run_dir):
    run_here(cfg, Path(run_dir))


ray.get(engine.remote(cfg, run_dir))
"""
RAY_DEFAULTS = {"RAY_worker_niceness": "15", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}


def configs(baseline: Path | None) -> dict[str, dict]:
    """name -> {args (after `train EXP`), env, code (the tree to run), cluster (bool)}."""
    plain = ["--no-ray", "--set", "train.num_threads=2"]
    ray1 = ["--workers", "1", "--set", "scaling.cpus_per_worker=2"]
    # a demo trial (experiments/synth_search.yaml): batch 16, one of two concurrent trials, so
    # one core and one torch thread; measured alone here, beside the plain loop on one thread
    demo = ["--set", "adapt.batch_size=16", "--set", "train.num_threads=1"]
    # 2 workers on the 2 one-CPU nodes; the global batches: 16 per worker
    two_nodes = ["--workers", "2", "--set", "scaling.cpus_per_worker=1", "--set",
                 "adapt.batch_size=32", "--set", "pretrain.batch_size=32"]  # fmt: skip
    out = {
        "plain": {"args": plain},
        "ray_1_worker": {"args": ray1},
        "ray_1_worker_ray_defaults": {"args": ray1, "env": RAY_DEFAULTS},
        "ray_task_plain_engine": {"args": ["--set", "train.num_threads=2"], "script": RAY_TASK},
        "plain_demo_trial": {"args": ["--no-ray", *demo]},
        "ray_1_worker_demo_trial": {
            "args": ["--workers", "1", "--set", "scaling.cpus_per_worker=0.9", *demo]
        },
        "ray_2_workers_2_nodes": {"args": two_nodes, "cluster": True},
    }
    # the same with one torch thread per worker (each node has one CPU)
    two = out["ray_2_workers_2_nodes"]
    out["ray_2_workers_2_nodes_1_thread"] = {
        "args": [*two["args"], "--set", "train.num_threads=1"],
        "cluster": True,
    }
    # the gradient all-reduce of those 2 workers: one all-reduce per optimiser after backward
    # (grad_bucket_mb 0: the path before engine/overlap.py), and 1 MB buckets launched during
    # backward (this model's gradients are 5.3 MB: the default 25 MB is one bucket, at sync)
    for name, mb in (("sync", 0), ("1mb", 1)):
        out[f"ray_2_workers_2_nodes_1_thread_{name}"] = {
            "args": [*out["ray_2_workers_2_nodes_1_thread"]["args"], "--set",
                     f"train.grad_bucket_mb={mb}"],
            "cluster": True,
        }  # fmt: skip
    if baseline is not None:
        out["plain_baseline"] = {"args": plain, "code": baseline}
    return out


def run_once(name: str, spec: dict, work: Path, base_env: dict, cluster: dict | None, args):
    folder = f"{name}-{len(list(work.glob(name + '-*')))}"
    code = spec.get("code", ROOT)
    experiment = code / "experiments" / "synth_hand.yaml"  # the revision's own file
    if "script" in spec:  # python -c SCRIPT EXPERIMENT RUN_DIR KEY=VALUE...
        cmd = [sys.executable, "-c", spec["script"], str(experiment), str(work / folder)]
        cmd += [a for a in spec["args"] if a != "--set"]
    else:
        cmd = [sys.executable, "-m", "regda_dist.cli", "train", str(experiment), "--name", folder]
        cmd += spec["args"]
    for item in (
        *PINNED,
        f"train.output_dir={work}",
        f"adapt.epochs={args.epochs}",
        f"adapt.iters_per_epoch={args.iters}",
    ):
        cmd += [item] if "script" in spec else ["--set", item]
    env = {**base_env, **spec.get("env", {}), "PYTHONPATH": str(code)}
    if spec.get("cluster"):
        cmd += ["--address", cluster["address"]]
        env = {**env, **cluster["env"], "PYTHONPATH": str(code)}  # the cluster's own token
    start = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    wall = time.time() - start
    lines = RunFolder(work / folder).metrics.read_text().splitlines()
    epochs = [e for e in map(json.loads, lines) if e["phase"] == "adapt"][1:]  # after warm-up
    return {"images_per_s": statistics.mean(e["time/images_per_s"] for e in epochs), "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", help="a git revision whose engine runs beside this one")
    parser.add_argument("--only", nargs="+", help="these runs only (names as in the table)")
    parser.add_argument("--out", default=str(RESULTS / "train_throughput"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="regda-throughput-"))
    baseline = None
    if args.baseline:
        baseline = work / "baseline-tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    env = {**os.environ, **auth_env(os.urandom(16).hex())}
    specs = {n: c for n, c in configs(baseline).items() if not args.only or n in args.only}
    measured: dict[str, list[dict]] = {name: [] for name in specs}
    try:
        with loopback_cluster(cpus_per_node=1) as cluster:
            for _ in range(args.repeats):
                for name, spec in specs.items():
                    measured[name].append(run_once(name, spec, work, env, cluster, args))
                    print(name, measured[name][-1], flush=True)
    finally:
        if baseline is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT)
    meta = {**record.provenance(__name__, argv), "baseline": args.baseline,
            "epochs": args.epochs, "iters": args.iters, "repeats": args.repeats}  # fmt: skip
    ratios = _ratios(measured)
    results = {"meta": meta, "runs": measured, "ratios": ratios}
    record.write(args.out, results, render(meta, measured, ratios))
    return 0


def _ratios(measured: dict) -> dict[str, float]:
    mean = {n: statistics.mean(r["images_per_s"] for r in rs) for n, rs in measured.items()}
    pairs = {  # ratio -> (run, reference run); "pct": the run's shortfall in percent
        "ray_overhead_pct": ("ray_1_worker", "plain"),
        "ray_defaults_overhead_pct": ("ray_1_worker_ray_defaults", "plain"),
        "ray_task_overhead_pct": ("ray_task_plain_engine", "plain"),
        "demo_trial_ray_overhead_pct": ("ray_1_worker_demo_trial", "plain_demo_trial"),
        "plain_demo_trial_vs_plain": ("plain_demo_trial", "plain"),
        "this_vs_baseline": ("plain", "plain_baseline"),
        "overlap_default_vs_sync": (
            "ray_2_workers_2_nodes_1_thread",
            "ray_2_workers_2_nodes_1_thread_sync",
        ),
        "overlap_1mb_vs_sync": (
            "ray_2_workers_2_nodes_1_thread_1mb",
            "ray_2_workers_2_nodes_1_thread_sync",
        ),
    }
    ratio = {}
    for key, (run, reference) in pairs.items():
        if run in mean and reference in mean:
            r = mean[run] / mean[reference]
            ratio[key] = 100 * (1 - r) if key.endswith("pct") else r
    return ratio


def render(meta: dict, measured: dict, ratio: dict) -> str:
    lines = [
        "# RegDA training throughput (synth_hand, 64 px, small_resnet, 32 channels, CPU)",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}; date: {meta['date']}",
        f"- {meta['epochs']} adaptation epochs x {meta['iters']} iterations, batch 32 per domain "
        "unless stated; images/s of the training loop over epochs 2.., mean of "
        f"{meta['repeats']} interleaved runs (round-robin); wall = the whole command",
        "",
        "| run | images/s (each run) | mean | wall (s) |",
        "|---|---|---|---|",
    ]
    for name, runs in measured.items():
        each = ", ".join(f"{r['images_per_s']:.1f}" for r in runs)
        mean = statistics.mean(r["images_per_s"] for r in runs)
        wall = statistics.mean(r["wall_s"] for r in runs)
        lines.append(f"| {name} | {each} | {mean:.1f} | {wall:.0f} |")
    lines += ["", "Ratios (same round-robin):", ""]
    lines += [f"- {k}: {v:.3f}" if "pct" not in k else f"- {k}: {v:.1f}%" for k, v in ratio.items()]
    return "\n".join(lines) + "\n"
