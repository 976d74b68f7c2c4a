"""RegDA training throughput: the plain engine vs the same run under Ray Train (1 worker), and
2 workers on a 2-node loopback Ray cluster; peak memory per worker. Writes
benchmarks/results/train_throughput.{md,json}.

    python benchmarks/train_throughput.py [--epochs 4] [--iters 40]

Throughput is measured inside the adaptation loop (no evaluation, no checkpoint; the first epoch
is a warm-up and is left out); start-up (Ray, worker processes, data) is reported separately as
the whole command's wall time. Every run trains the same global batch (32 source + 32 target
images per iteration) with the same number of CPU threads in total.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict) -> float:
    start = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return time.time() - start


def _epochs(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["phase"] == "adapt"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput"))
    args = parser.parse_args()
    from regda_dist.distributed.local_cluster import auth_env, loopback_cluster

    work = Path(tempfile.mkdtemp(prefix="regda-throughput-"))
    env = {**os.environ, **auth_env(os.urandom(16).hex())}
    common = [
        "--set",
        f"train.output_dir={work}",
        "--set",
        f"regda.epochs={args.epochs}",
        "--set",
        f"regda.iters_per_epoch={args.iters}",
        "--set",
        "pretrain.epochs=1",
        "--set",
        "pretrain.iters_per_epoch=20",
        "--set",
        "pretrain.milestones=[1]",
        "--set",
        "train.progress=false",
    ]
    cli = [sys.executable, "-m", "regda_dist.cli", "train", "experiments/synth_hand.yaml", *common]
    runs = {}
    runs["plain"] = {
        "wall_s": _run([*cli, "--name", "plain", "--no-ray", "--set", "train.num_threads=2"], env),
        "peak_rss_mib": [resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024],
    }
    runs["ray_1_worker"] = {
        "wall_s": _run(
            [
                *cli,
                "--name",
                "ray_1_worker",
                "--workers",
                "1",
                "--set",
                "scaling.cpus_per_worker=2",
            ],
            env,
        )
    }
    with loopback_cluster(cpus_per_node=1) as cluster:
        halves = ["--set", "regda.batch_size=16", "--set", "pretrain.batch_size=16"]
        runs["ray_2_workers_2_nodes"] = {
            "wall_s": _run(
                [
                    *cli,
                    "--name",
                    "ray_2_workers_2_nodes",
                    "--workers",
                    "2",
                    "--address",
                    cluster["address"],
                    "--set",
                    "scaling.cpus_per_worker=1",
                    *halves,
                ],
                cluster["env"],
            )
        }
    for name, run in runs.items():
        epochs = _epochs(work / name)[1:]  # the first epoch is a warm-up
        run["images_per_s"] = statistics.mean(e["time/images_per_s"] for e in epochs)
        run["epoch_s"] = statistics.mean(e["time/epoch_s"] for e in epochs)
        workers = work / name / "workers"
        if workers.exists():
            ranks = [json.loads(p.read_text()) for p in sorted(workers.iterdir())]
            run["peak_rss_mib"] = [w["peak_rss_mib"] for w in ranks]
            run["node_ips"] = [w["node_ip"] for w in ranks]
    overhead = 100 * (1 - runs["ray_1_worker"]["images_per_s"] / runs["plain"]["images_per_s"])
    import torch

    meta = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        "epochs": args.epochs,
        "iters_per_epoch": args.iters,
        "ray_overhead_pct": overhead,
    }
    lines = [
        "# RegDA training throughput (synth_hand, 64 px, small_resnet, CPU)",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}",
        f"- {args.epochs} adaptation epochs x {args.iters} iterations; throughput over epochs "
        f"2..{args.epochs}, "
        "training loop only; wall = the whole `regda-dist train` command (start-up, 1 short "
        "phase-1 epoch, evaluation each epoch)",
        "",
        "| run | images/s | s/epoch | wall (s) | peak RSS per worker (MiB) | nodes |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['images_per_s']:.1f} | {run['epoch_s']:.2f} | {run['wall_s']:.0f} | "
            f"{', '.join(f'{m:.0f}' for m in run['peak_rss_mib'])} | "
            f"{', '.join(run.get('node_ips', ['-']))} |"
        )
    lines += [
        "",
        f"Ray Train overhead with 1 worker: **{overhead:.1f}%** of training throughput "
        "(goal: < 5%).",
    ]
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
