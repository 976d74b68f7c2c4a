"""Which part of the embedded recipe costs adaptation: phase-1 optimiser (SGD 0.1 on every part,
our demo's, vs Adam 1e-3, the reference's ERM recipe) x head width (32 vs 128 upsampling and
head channels), then RegDA from each phase 1; and the phase-2 warm-up on the best phase 1.
Writes benchmarks/results/recipe.{md,json}.

    python -m benchmarks recipe [--tasks synth_hand synth_body] [--seeds 0] [--jobs 2]
        [--reuse OUT.json ...] [--render OUT.json]

Selection is by what a user has: source-val PCK, the proxies and time; target PCK (test split)
is reported for evaluation only. Each run is a fresh process with one torch thread.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from benchmarks import RESULTS, ROOT, grid, record
from benchmarks.stats import mean
from regda_dist.engine import checkpoint
from regda_dist.engine.build import seed_everything
from regda_dist.engine.phase1 import baselines, pretrained_source

PHASE1 = {  # name -> overrides of experiments/<task>.yaml
    "sgd-32": [],
    "sgd-128": ["model.upsample_channels=128"],
    "adam-32": ["pretrain.optimizer=adam", "pretrain.lr=0.001", "pretrain.backbone_lr=0.001"],
    "adam-128": [
        "pretrain.optimizer=adam",
        "pretrain.lr=0.001",
        "pretrain.backbone_lr=0.001",
        "model.upsample_channels=128",
    ],
}
PHASE2 = {  # name -> overrides, on top of a phase 1
    "regda": [],
    "regda-warm1000": ["regda.warm_max_iters=1000"],
}
ADAPT = ["adapt.epochs=3", "adapt.iters_per_epoch=200"]  # 600 iterations, batch 32 per domain


KEYS = ("task", "seed", "phase1", "phase2")


def _job(job: dict, work: str, only_saved: bool) -> dict:
    """One (task, seed, phase 1, phase 2 or None) in a child process."""
    p1, p2 = job["phase1"], job["phase2"]
    sets = [*PHASE1[p1], *ADAPT, *(PHASE2[p2] if p2 else [])]
    trainer = grid.trainer(job["task"], job["seed"], work, sets)
    curve = []
    trainer.add_callback("on_eval", lambda phase, epoch, metrics: curve.append((phase, metrics)))
    out = dict(job)
    start = time.time()
    source, info = pretrained_source(trainer)
    if p2 is None:
        out.update(info=info, **baselines(trainer, source)[0])
        out["val_curve"] = [m["pretrain/val_pck"] for phase, m in curve if phase == "pretrain"]
    else:
        ckpt = Path(work) / f"{job['task']}-{job['seed']}-{p1}-{p2}.ckpt"
        if only_saved and not _finished(ckpt, trainer.cfg.adapt.epochs):
            return {**out, "skipped": "not run (time): no finished checkpoint"}
        seed_everything(job["seed"])
        adapted = trainer.adapt(source.state_dict(), ckpt)
        out["curve"] = [m for phase, m in curve if phase == "adapt"]
        if not out["curve"]:  # a checkpoint finished by an earlier, killed run of this script
            out.update(curve=[adapted.last], last_only=True)  # evaluated again by adapt
    out["seconds"] = time.time() - start
    return out


def _finished(ckpt: Path, epochs: int) -> bool:
    if not ckpt.is_file():
        return False
    saved = checkpoint.load(ckpt)
    return saved.get("epoch") == epochs and not saved.get("iteration")


def render(results: list[dict], meta: dict) -> str:
    lines = [
        "# The embedded recipe: phase-1 optimiser and head width, then RegDA",
        "",
        f"- command: `{meta['command']}`; date: {meta['date']}; machine: {meta['machine']}",
        f"- seeds {meta['seeds']}; wall {meta['wall_s'] / 60:.0f} min; each run one process, one "
        "torch thread, two at a time (times are comparable within this run only)",
        "- phase 1: experiments/<task>.yaml (6 x 200 iterations, batch 32, x0.1 at epochs 4 and 5)"
        "; RegDA: 3 x 200 iterations, batch 32 per domain, the task YAML's phase-2 settings",
        "- target PCK = test split, labels used for evaluation only; selection signals are "
        "source-val PCK (phase 1), source PCK and proxies (phase 2), and time",
    ]
    for task in meta["tasks"]:
        lines += [
            "",
            f"## {task}",
            "",
            "| phase 1 | source val PCK (best epoch) | source-only "
            "target PCK | AdaBN target PCK | phase-1 time (s) |",
            "|---|---|---|---|---|",
        ]
        for p1 in PHASE1:
            runs = [r for r in results if (r["task"], r["phase1"], r["phase2"]) == (task, p1, None)]
            if not runs:
                continue
            cells = (
                mean([r["info"]["best_val_pck"] for r in runs]),
                mean([r["source_only"]["oracle/target_pck"] for r in runs]),
                mean([r["adabn"]["oracle/target_pck"] for r in runs]),
                mean([r["info"].get("seconds", float("nan")) for r in runs]),  # its training
            )
            lines.append(f"| {p1} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
        lines += [
            "",
            "| phase 1 + phase 2 | target PCK by epoch (eval only) | source PCK (last) "
            "| aug_consistency (last) | source_pck proxy (last) | time (s) |",
            "|---|---|---|---|---|---|",
        ]
        for r2 in sorted({(r["phase1"], r["phase2"]) for r in results if r["phase2"]}):
            runs = [r for r in results if r["task"] == task and (r["phase1"], r["phase2"]) == r2]
            if runs and all("skipped" in r for r in runs):
                lines.append(f"| {r2[0]} + {r2[1]} | {runs[0]['skipped']} | | | | |")
                continue
            runs = [r for r in runs if "skipped" not in r]
            if not runs:
                continue
            epochs = len(runs[0]["curve"])
            by_epoch = [
                mean([r["curve"][e]["oracle/target_pck"] for r in runs]) for e in range(epochs)
            ]
            last = [r["curve"][-1] for r in runs]
            lost = " (last epoch only: its curve was lost)" if runs[0].get("last_only") else ""
            lines.append(
                f"| {r2[0]} + {r2[1]} | "
                + ", ".join(f"{v:.1f}" for v in by_epoch)
                + lost
                + f" | {mean([m['source/pck'] for m in last]):.1f}"
                + f" | {mean([m['proxy/aug_consistency'] for m in last]):.2f}"
                + f" | {mean([m['proxy/source_pck'] for m in last]):.1f}"
                + (
                    " | (not timed: evaluated again)"
                    if lost
                    else f" | {mean([r['seconds'] for r in runs]):.0f}"
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--tasks", nargs="+", default=["synth_hand", "synth_body"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--phase1", nargs="+", default=list(PHASE1))
    parser.add_argument("--phase2", nargs="+", default=None, help="phase 1s to adapt (all)")
    parser.add_argument(
        "--warmup-on", default="adam-128", help="phase 1 of the warm-up variant ('' for none)"
    )
    parser.add_argument(
        "--only-saved",
        action="store_true",
        help="phase 2 only where an earlier run left a finished checkpoint (evaluated again)",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "runs" / "benchmark-recipe"))
    parser.add_argument("--out", default=str(RESULTS / "recipe"))
    parser.add_argument("--reuse", nargs="+", help="earlier recipe.json files whose runs are kept")
    parser.add_argument("--render", help="only write the .md again from this results .json")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        text = render(saved["runs"], saved["meta"])
        record.write_markdown(Path(args.out).with_suffix(".md"), text)
        return 0
    start = time.time()

    def jobs(pairs: list[tuple]) -> list[dict]:
        return [{"task": t, "seed": s, "phase1": p1, "phase2": p2}
                for p1, p2 in pairs for t in args.tasks for s in args.seeds]  # fmt: skip

    adapted = [(p1, "regda") for p1 in args.phase2 or args.phase1]
    adapted += [(args.warmup_on, "regda-warm1000")] if args.warmup_on else []
    stages = [jobs([(p1, None) for p1 in args.phase1]), jobs(adapted)]  # phase 2 reads phase 1's

    def meta() -> dict:
        return {**record.provenance(__name__, argv, start), "tasks": args.tasks,
                "seeds": args.seeds}  # fmt: skip

    job = partial(_job, work=args.work, only_saved=args.only_saved)
    earlier = grid.earlier_runs(args.reuse, KEYS)
    runs = grid.run(job, stages, KEYS, args.jobs, earlier, args.out, meta)
    final = meta()
    grid.write(args.out, final, runs, render(runs, final))
    return 0
