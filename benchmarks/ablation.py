"""Why RegDA can end below AdaBN: one factor changed at a time on domain pairs nobody tuned for,
RegDA's target PCK by epoch beside source-only, AdaBN and the oracle.

    python benchmarks/ablation.py [--tasks quadruped lizard] [--seeds 0] [--variants ...]
        [--jobs 2] [--reuse benchmarks/results/ablation.json]

Tasks: benchmarks/domains.py (held-out COCO pairs by default). Every RegDA variant trains once
with adapt.batchnorm 'domain' (training is the same in every BatchNorm mode but 'frozen': only
the running statistics differ), and each evaluation is read three ways: with the running
statistics training left (mixed, the reference), with per-domain statistics tracked in training
(domain), and with statistics re-estimated on each domain's un-augmented train images (target).
Phase-1 variants get their own source-only and AdaBN. Target labels are read only to evaluate;
the oracle trains on them. Writes benchmarks/results/ablation.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.adaptation import _ms, earlier_runs  # noqa: E402
from benchmarks.record import write_markdown  # noqa: E402

AUGMENT = [  # the reference's train transform, scaled to 64 px (blur radius 0.8 px at 256)
    "data.augment.rotation=30",
    "data.augment.scale_min=0.6",
    "data.augment.scale_max=1.3",
    "data.augment.color_jitter=0.25",
    "data.augment.blur=0.2",
]
PHASE1 = {  # name -> (overrides, what it is)
    "two_layer": ([], "phase 1 trains the two-layer head phase 2 uses (ours)"),
    "one_by_one": (["pretrain.head_layers=1"], "phase 1 trains a 1x1 head (the reference)"),
    "augment": (AUGMENT, "both domains augmented as the reference does, phase 1 and 2"),
}
VARIANTS = {  # name -> (phase 1, overrides, what changes; the reference's choice)
    "reference": ("two_layer", [], "the shipped recipe"),
    "trade_off_0": (
        "two_layer",
        ["regda.trade_off=0"],
        "no adversarial part: phase 2 is source training of fresh heads (a control)",
    ),
    "one_by_one": ("one_by_one", [], "phase 1 with a 1x1 head (reference: 1x1)"),
    "head_phase1": (
        "two_layer",
        ["adapt.head_init=phase1"],
        "main head starts from phase 1's (reference: fresh)",
    ),
    "frozen": (
        "two_layer",
        ["adapt.batchnorm=frozen"],
        "BatchNorm frozen at phase 1's statistics (reference: train mode)",
    ),
    "warm_1000": (
        "two_layer",
        ["regda.warm_max_iters=1000"],
        "warm-start N = 1000 (reference: 1000 at any schedule)",
    ),
    "augment": ("augment", [], "reference augmentation on both domains (reference: on)"),
}
READS = ("mixed", "domain", "target")


def _cfg(task: str, seed: int, work: str, sets: list[str]):
    from benchmarks import domains

    base = [
        f"train.seed={seed}",
        f"train.output_dir={work}",
        "train.progress=false",
        "train.num_threads=1",
    ]
    return domains.config(task, work, [*base, *sets])


def _key(cfg) -> str:
    """A checkpoint name's key: every field of the run (data folders included), so a changed
    config or data never resumes another's checkpoint."""
    import hashlib

    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _job(args: tuple) -> dict:
    """One (kind, task, seed, variant) in a fresh process: kind 'phase1' (source-only and
    AdaBN of a phase-1 variant), 'oracle', or 'regda' (a variant)."""
    import torch

    from regda_dist.data.datasets import build_task
    from regda_dist.engine.run import baselines, pretrained_source
    from regda_dist.engine.trainer import Trainer, seed_everything

    kind, task, seed, variant, work, extra = args
    torch.set_num_threads(1)
    phase1 = variant if kind == "phase1" else VARIANTS[variant][0] if kind == "regda" else ""
    sets = [*PHASE1[phase1][0]] if phase1 else []
    if kind == "regda":  # every factor pinned to the reference's, then the variant's change
        pinned = {"adapt.method": "regda", "adapt.head_init": "fresh", "adapt.batchnorm": "domain"}
        changed = dict(item.split("=", 1) for item in VARIANTS[variant][1])
        sets += [f"{k}={v}" for k, v in {**pinned, **changed}.items()]
    cfg = _cfg(task, seed, work, [*sets, *extra])
    seed_everything(seed)
    trainer = Trainer(cfg, build_task(cfg.data))
    out = {"kind": kind, "task": task, "seed": seed, "variant": variant}
    start = time.time()
    if kind == "oracle":
        model, _ = trainer.pretrain(
            Path(work) / f"oracle-{cfg.pretrain_key()}.ckpt", labelled="target"
        )
        out["target"] = trainer.eval_metrics(model)["oracle/target_pck"]
    else:
        source, _ = pretrained_source(trainer)
        measured, _ = baselines(trainer, source)
        out["source_only"], out["adabn"] = (
            {"target": measured[m]["oracle/target_pck"], "source": measured[m]["source/pck"]}
            for m in ("source_only", "adabn")
        )
        if kind == "regda":
            out["curve"] = _adapt(trainer, source, Path(work) / f"{variant}-{_key(cfg)}.ckpt")
    out["seconds"] = time.time() - start
    return out


def _adapt(trainer, source, ckpt: Path) -> list[dict]:
    """RegDA, each evaluation read with the three kinds of running statistics."""
    task, curve, frozen = trainer.task, [], trainer.cfg.adapt.batchnorm == "frozen"
    evaluate = trainer.eval_metrics

    def pck(model, split):
        return trainer.eval.pck(model, split, task.spec)["all"]

    def read_three_ways(model):
        metrics = evaluate(model)  # adapt.batchnorm 'domain' (or 'frozen')
        row = {"domain": {"target": metrics["oracle/target_pck"], "source": metrics["source/pck"]}}
        if not frozen:
            row["mixed"] = {
                "target": pck(model, task.target_test),
                "source": pck(model, task.source_test),
            }
            row["target"] = {
                "target": pck(trainer._reestimate(model, "target"), task.target_test),
                "source": pck(trainer._reestimate(model, "source"), task.source_test),
            }
        curve.append(row)
        return metrics

    trainer.eval_metrics = read_three_ways
    trainer.adapt(source.state_dict(), ckpt)
    return curve


def _mean(values: list[float]) -> float:
    return statistics.mean(values)


def render(runs: list[dict], meta: dict, tasks: list[str]) -> str:
    lines = [
        "# Ablation: why RegDA can trail AdaBN",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}; seeds: {meta['seeds']}; wall time {meta['wall_s'] / 60:.0f} min",
        "- target PCK@0.05 on the target TEST split (labels for evaluation only), mean ± std over "
        "seeds; RegDA read at its last epoch and by epoch. BatchNorm read three ways from the "
        "same training: mixed = the running statistics training left (the reference), domain = "
        "tracked per domain in training, target = re-estimated on each domain's un-augmented "
        "train images before the evaluation.",
        *([f"- not run: {', '.join(meta['not_run'])}"] if meta.get("not_run") else []),
        "",
    ]
    for task in tasks:
        mine = [r for r in runs if r["task"] == task]
        lines += [f"## {task}", "",
                  "| method | seeds | target PCK | source PCK | by epoch (target PCK) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for phase1, (_, what) in PHASE1.items():
            base = [r for r in mine if r["kind"] == "phase1" and r["variant"] == phase1]
            for m, label in (("source_only", "source-only"), ("adabn", "AdaBN")):
                if base:
                    t, s = ([r[m][k] for r in base] for k in ("target", "source"))
                    lines.append(
                        f"| {label} [{phase1}: {what}] | {len(base)} | {_ms(t)} | {_ms(s)} | |"
                    )
        for variant, (_, _, what) in VARIANTS.items():
            done = [r for r in mine if r["kind"] == "regda" and r["variant"] == variant]
            for read in READS:
                if not done or read not in done[0]["curve"][-1]:
                    continue
                t = [r["curve"][-1][read]["target"] for r in done]
                s = [r["curve"][-1][read]["source"] for r in done]
                epochs = len(done[0]["curve"])
                by = ", ".join(
                    f"{_mean([r['curve'][e][read]['target'] for r in done]):.1f}"
                    for e in range(epochs)
                )
                lines.append(
                    f"| RegDA {variant} ({what}), BN {read} | {len(done)} | {_ms(t)} | {_ms(s)} "
                    f"| {by} |"
                )
        oracle = [r["target"] for r in mine if r["kind"] == "oracle"]
        if oracle:
            lines.append(f"| oracle (target labels) | {len(oracle)} | {_ms(oracle)} | | |")
        lines += ["", *_paired(mine), ""]
    return "\n".join(lines)


def _paired(mine: list[dict]) -> list[str]:
    """Target PCK differences paired by seed (the same phase 1): each variant against the
    reference (both read with BN target, the default), and BN target against BN mixed within
    each variant."""
    last = {(r["variant"], r["seed"]): r["curve"][-1] for r in mine if r["kind"] == "regda"}
    out = []
    for variant in VARIANTS:
        seeds = sorted(s for v, s in last if v == variant)
        if variant != "reference":
            both = [s for s in seeds if ("reference", s) in last]
            d = [last[variant, s]["target"]["target"] - last["reference", s]["target"]["target"]
                 for s in both if "target" in last[variant, s]]  # fmt: skip
            if d:
                out.append(f"- {variant} − reference (BN target), paired over seeds {both}: "
                           f"{_ms(d, '+')} (per seed: {_each(d)})")  # fmt: skip
        d = [last[variant, s]["target"]["target"] - last[variant, s]["mixed"]["target"]
             for s in seeds if {"target", "mixed"} <= set(last[variant, s])]  # fmt: skip
        if d:
            out.append(f"- {variant}: BN target − BN mixed, paired over seeds {seeds}: "
                       f"{_ms(d, '+')} (per seed: {_each(d)})")  # fmt: skip
    return out


def _each(values: list[float]) -> str:
    return ", ".join(f"{x:+.1f}" for x in values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["quadruped", "lizard"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/benchmark-ablation")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ablation"))
    parser.add_argument(
        "--reuse", nargs="+", help="earlier ablation.json files whose runs are kept"
    )
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="run nothing: the tables of what the --reuse files hold (missing runs are listed)",
    )
    args = parser.parse_args()
    if args.no_run and not args.reuse:
        parser.error("--no-run needs --reuse")
    start = time.time()
    earlier = earlier_runs(args.reuse, ("kind", "task", "seed", "variant")) if args.reuse else {}
    phase1 = sorted({VARIANTS[v][0] for v in args.variants})
    first = [("phase1", t, s, p, args.work, args.set)
             for t in args.tasks for s in args.seeds for p in phase1]  # fmt: skip
    if not args.no_oracle:
        first += [("oracle", t, s, "", args.work, args.set) for t in args.tasks for s in args.seeds]
    second = [
        ("regda", t, s, v, args.work, args.set)
        for t in args.tasks
        for s in args.seeds
        for v in args.variants
    ]
    runs = [earlier[j[:4]] for j in first + second if j[:4] in earlier]
    out = Path(args.out)
    meta = {"command": "python " + " ".join(sys.argv), "seeds": args.seeds, "machine": _machine()}
    if args.no_run:
        meta["not_run"] = [
            " ".join(map(str, j[:4])) for j in first + second if j[:4] not in earlier
        ]

    def write() -> None:  # after every run: an interrupted benchmark keeps what it finished
        meta.update(date=datetime.date.today().isoformat(), wall_s=time.time() - start)
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
        write_markdown(out.with_suffix(".md"), render(runs, meta, args.tasks))

    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for stage in (first, second):  # RegDA reads the cached phase 1 of its variant
            todo = [] if args.no_run else [j for j in stage if j[:4] not in earlier]
            for r in pool.imap_unordered(_job, todo):
                print(f"{r['kind']} {r['task']} seed {r['seed']} {r['variant']}: "
                      f"{r['seconds']:.0f} s", flush=True)  # fmt: skip
                runs.append(r)
                write()
    write()
    print(out.with_suffix(".md").read_text())
    return 0


def _machine() -> str:
    import torch

    return (
        f"{platform.node()}: {platform.machine()}, {mp.cpu_count()} CPUs, torch "
        f"{torch.__version__}, Python {platform.python_version()}"
    )


if __name__ == "__main__":
    sys.exit(main())
