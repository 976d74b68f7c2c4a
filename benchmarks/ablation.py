"""Why RegDA can end below AdaBN: one factor changed at a time on domain pairs nobody tuned for,
RegDA's target PCK by epoch beside source-only, AdaBN and the oracle.

    python -m benchmarks ablation [--tasks quadruped lizard] [--seeds 0] [--variants ...]
        [--jobs 2] [--reuse benchmarks/results/ablation.json ...] [--no-run] [--set KEY=VALUE]

Tasks: benchmarks/domains.py (held-out COCO pairs by default). Every RegDA variant trains once
with adapt.batchnorm 'domain' (training is the same in every BatchNorm mode but 'frozen': only
the running statistics differ), and each evaluation is read three ways: with the running
statistics training left (mixed, the reference), with per-domain statistics tracked in training
(domain), and with statistics re-estimated on each domain's un-augmented train images (target).
Phase-1 variants get their own source-only and AdaBN. Target labels are read only to evaluate;
the oracle trains on them. Writes benchmarks/results/ablation.{md,json} (and, as runs finish,
ablation.partial.json: an interrupted benchmark resumes with --reuse on it; benchmarks/grid.py).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from benchmarks import RESULTS, grid, record
from benchmarks.stats import mean, ms, paired, signed
from regda_dist.engine.phase1 import baselines, pretrained_source

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


KEYS = ("kind", "task", "seed", "variant")


def _job(job: dict, work: str, extra: list[str]) -> dict:
    """One (kind, task, seed, variant) in a fresh process: kind 'phase1' (source-only and
    AdaBN of a phase-1 variant), 'oracle', or 'regda' (a variant)."""
    kind, variant = job["kind"], job["variant"]
    phase1 = variant if kind == "phase1" else VARIANTS[variant][0] if kind == "regda" else ""
    sets = [*PHASE1[phase1][0]] if phase1 else []
    if kind == "regda":  # every factor pinned to the reference's, then the variant's change
        pinned = {"adapt.method": "regda", "adapt.head_init": "fresh", "adapt.batchnorm": "domain"}
        changed = dict(item.split("=", 1) for item in VARIANTS[variant][1])
        sets += [f"{k}={v}" for k, v in {**pinned, **changed}.items()]
    trainer = grid.trainer(job["task"], job["seed"], work, [*sets, *extra])
    out = dict(job)
    start = time.time()
    if kind == "oracle":
        ckpt = Path(work) / f"oracle-{trainer.cfg.pretrain_key()}.ckpt"
        model, _ = trainer.pretrain(ckpt, labelled="target")
        out["target"] = trainer.evaluator(model)["oracle/target_pck"]
    else:
        source, _ = pretrained_source(trainer)
        measured, _ = baselines(trainer, source)
        out["source_only"], out["adabn"] = (
            {"target": measured[m]["oracle/target_pck"], "source": measured[m]["source/pck"]}
            for m in ("source_only", "adabn")
        )
        if kind == "regda":
            ckpt = Path(work) / f"{variant}-{grid.config_key(trainer.cfg)}.ckpt"
            out["curve"] = _adapt(trainer, source, ckpt)
    out["seconds"] = time.time() - start
    return out


def _adapt(trainer, source, ckpt: Path) -> list[dict]:
    """RegDA, each evaluation read with the three kinds of running statistics: domain (or
    frozen) as the evaluation itself reads the model; mixed: the model as training left it;
    target: its statistics re-estimated on each domain (trainer.evaluator.reestimate)."""
    task, curve, frozen = trainer.task, [], trainer.cfg.adapt.batchnorm == "frozen"
    evaluated = {}  # the model the next evaluation reads (on_adapt_model)

    def pck(model, split):
        return trainer.eval.pck(model, split, task.spec)["all"]

    def read_three_ways(phase, epoch, metrics):
        if phase != "adapt" or "oracle/target_pck" not in metrics:  # an epoch not evaluated
            return
        row = {"domain": {"target": metrics["oracle/target_pck"], "source": metrics["source/pck"]}}
        if not frozen:
            model, reestimate = evaluated["model"], trainer.evaluator.reestimate
            row["mixed"] = {"target": pck(model, task.target_test),
                            "source": pck(model, task.source_test)}  # fmt: skip
            row["target"] = {
                "target": pck(reestimate(model, "target"), task.target_test),
                "source": pck(reestimate(model, "source"), task.source_test),
            }
        curve.append(row)

    trainer.add_callback("on_adapt_model", lambda epoch, model: evaluated.update(model=model))
    trainer.add_callback("on_eval", read_three_ways)
    trainer.adapt(source.state_dict(), ckpt)
    return curve


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
                        f"| {label} [{phase1}: {what}] | {len(base)} | {ms(t)} | {ms(s)} | |"
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
                    f"{mean([r['curve'][e][read]['target'] for r in done]):.1f}"
                    for e in range(epochs)
                )
                lines.append(
                    f"| RegDA {variant} ({what}), BN {read} | {len(done)} | {ms(t)} | {ms(s)} "
                    f"| {by} |"
                )
        oracle = [r["target"] for r in mine if r["kind"] == "oracle"]
        if oracle:
            lines.append(f"| oracle (target labels) | {len(oracle)} | {ms(oracle)} | | |")
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
        reads = {s: last[variant, s] for s in seeds}
        if variant != "reference":
            both = [s for s in seeds if ("reference", s) in last]
            d = paired({s: r["target"]["target"] for s, r in reads.items() if "target" in r},
                       {s: last["reference", s]["target"]["target"] for s in both})  # fmt: skip
            if d:
                out.append(f"- {variant} − reference (BN target), paired over seeds {both}: "
                           f"{ms(d, '+')} (per seed: {signed(d)})")  # fmt: skip
        d = [r["target"]["target"] - r["mixed"]["target"] for r in reads.values()
             if {"target", "mixed"} <= set(r)]  # fmt: skip
        if d:
            out.append(f"- {variant}: BN target − BN mixed, paired over seeds {seeds}: "
                       f"{ms(d, '+')} (per seed: {signed(d)})")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--tasks", nargs="+", default=["quadruped", "lizard"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/benchmark-ablation")
    parser.add_argument("--out", default=str(RESULTS / "ablation"))
    parser.add_argument(
        "--reuse", nargs="+", help="earlier ablation.json files whose runs are kept"
    )
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="run nothing: the tables of what the --reuse files hold (missing runs are listed)",
    )
    args = parser.parse_args(argv)
    if args.no_run and not args.reuse:
        parser.error("--no-run needs --reuse")
    start = time.time()
    earlier = grid.earlier_runs(args.reuse, KEYS)

    def jobs(kind: str, variants) -> list[dict]:
        return [{"kind": kind, "task": t, "seed": s, "variant": v}
                for t in args.tasks for s in args.seeds for v in variants]  # fmt: skip

    first = jobs("phase1", sorted({VARIANTS[v][0] for v in args.variants}))
    first += [] if args.no_oracle else jobs("oracle", [""])
    stages = [first, jobs("regda", args.variants)]  # RegDA reads its variant's cached phase 1

    def meta() -> dict:
        reused = grid.reused(args.reuse, earlier, _name)
        return {**record.provenance(__name__, argv, start), "seeds": args.seeds, **reused}

    job = partial(_job, work=args.work, extra=args.set)
    runs = grid.run(job, stages, KEYS, args.jobs, earlier, args.out, meta, dry=args.no_run)
    final = meta()
    if args.no_run:
        final["not_run"] = [_name(k) for k in grid.missing(stages, KEYS, earlier)]
    grid.write(args.out, final, runs, render(runs, final, args.tasks))
    return 0


def _name(key: tuple) -> str:
    return " ".join(map(str, key))
