"""Target PCK of source-only, AdaBN, RegDA, RegDA with trade_off 0, and oracle on the synthetic
tasks, over seeds, with wall time and peak memory; writes benchmarks/results/adaptation.{md,json}.

    python benchmarks/adaptation.py [--tasks synth_hand synth_body] [--seeds 0 1 2] [--jobs 2]
        [--reuse benchmarks/results/adaptation.json]

`--reuse FILE` takes the (method, task, seed) runs an earlier results file holds instead of
running them again (same code only: the table says which runs were reused and from when).

Each (task, seed, method) runs in a fresh process (its peak RSS is that method's peak memory),
`--jobs` at a time with one torch thread each. Selection never uses target labels: phase 1 keeps
the best SOURCE-val epoch and RegDA reports its last epoch; the oracle (trained on target labels)
keeps its best target-val epoch, as an oracle does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

METHODS = ("source_only", "adabn", "regda", "regda_t0", "oracle")
LABELS = {
    "source_only": "source-only",
    "adabn": "AdaBN (source-only + target BN stats)",
    "regda": "RegDA (defaults)",
    "regda_t0": "RegDA, trade_off = 0",
    "oracle": "oracle",
}


def _job(args: tuple) -> dict:
    """Runs in a child process. kind: 'pretrain' (-> source_only, adabn), 'oracle', 'regda*'."""
    import torch

    from regda_dist import config as C
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.run import baselines, pretrained_source
    from regda_dist.engine.trainer import Trainer, seed_everything

    kind, task_name, seed, work = args
    torch.set_num_threads(1)
    overrides = [
        f"train.seed={seed}",
        f"train.output_dir={work}",
        "train.progress=false",
        "train.num_threads=1",
    ]
    if kind == "regda_t0":
        overrides.append("regda.trade_off=0")
    cfg = C.load(Path(__file__).parents[1] / "experiments" / f"{task_name}.yaml", overrides)
    seed_everything(seed)
    task = build_task(cfg.data)
    trainer = Trainer(cfg, task)
    curve = []
    trainer.add_callback(
        "on_eval",
        lambda phase, epoch, metrics: (
            curve.append((epoch, metrics.get("oracle/target_pck"))) if phase == "adapt" else None
        ),
    )
    start = time.time()
    out: dict = {"task": task_name, "seed": seed}
    if kind == "oracle":
        model, _ = trainer.pretrain(
            Path(work) / f"oracle-{task_name}-{seed}.ckpt", labelled="target"
        )
        out["oracle"] = trainer.eval_metrics(model)
    else:
        source, _ = pretrained_source(trainer)  # cache under train.output_dir = work
        if kind == "pretrain":  # AdaBN: target train images without augmentation, shuffled
            out.update(baselines(trainer, source)[0])
        else:
            seed_everything(seed)
            model = trainer.adapt(
                source.state_dict(), Path(work) / f"{kind}-{task_name}-{seed}.ckpt"
            )
            out[kind] = trainer.eval_metrics(model)
            out["curve"] = curve
    out["kind"], out["seconds"] = kind, time.time() - start
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _earlier_runs(path: str) -> dict:
    """(kind, task, seed) -> run of an earlier results file."""
    try:
        runs = json.loads(Path(path).read_text())["runs"]
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(
            f"adaptation.py: --reuse {path}: not an adaptation results file ({err})"
        ) from None
    return {(r["kind"], r["task"], r["seed"]): r for r in runs}


def earlier_date(path: str) -> str:
    return json.loads(Path(path).read_text())["meta"]["date"]


def _summary(results: list[dict], tasks, seeds) -> dict:
    table: dict = {}
    for task in tasks:
        table[task] = {}
        for method in METHODS:
            runs = [r for r in results if r["task"] == task and method in r]
            if not runs:
                continue
            keys = [k for k in runs[0][method] if k.startswith("oracle/target_pck")]
            entry = {k: [r[method][k] for r in runs] for k in keys}
            entry["source/pck"] = [r[method]["source/pck"] for r in runs]
            entry["seconds"] = [r["seconds"] for r in runs]
            entry["peak_rss_mib"] = [r["peak_rss_mib"] for r in runs]
            if method == "regda":
                entry["curve"] = [r["curve"] for r in runs]
            table[task][method] = entry
    return table


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def render_markdown(table: dict, meta: dict) -> str:
    lines = [
        "# Adaptation on the synthetic transfer tasks",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}; seeds: {meta['seeds']}; total wall time {meta['wall_s']:.0f} s",
        *(
            [
                f"- reused from {meta['reused']['from']} ({meta['reused']['date']}), not run "
                f"again: {', '.join(meta['reused']['runs'])}"
            ]
            if meta.get("reused", {}).get("runs")
            else []
        ),
        "- PCK@0.05 on the TARGET test split (labels used for evaluation only), mean ± std over "
        "seeds. Time and peak RSS are per run (one process, one torch thread); AdaBN's time "
        "is included in source-only's (same process).",
        "",
    ]
    for task, methods in table.items():
        groups = [k for k in methods["source_only"] if k.startswith("oracle/target_pck/")]
        cols = [g.split("/")[-1] for g in groups] + ["all"]
        lines += [
            f"## {task}",
            "",
            "| method | " + " | ".join(cols) + " | source test | time (s) | peak RSS (MiB) |",
            "|---" * (len(cols) + 4) + "|",
        ]
        for method, e in methods.items():
            vals = [e[g] for g in groups] + [e["oracle/target_pck"]]
            lines.append(
                f"| {LABELS[method]} | "
                + " | ".join(_ms(v) for v in vals)
                + f" | {_ms(e['source/pck'])} | {_ms(e['seconds'])} | {_ms(e['peak_rss_mib'])} |"
            )
        best_base = max(
            statistics.mean(methods[m]["oracle/target_pck"]) for m in ("source_only", "adabn")
        )
        regda = (
            statistics.mean(methods["regda"]["oracle/target_pck"])
            if "regda" in methods
            else float("nan")
        )
        oracle = (
            statistics.mean(methods["oracle"]["oracle/target_pck"])
            if "oracle" in methods
            else float("nan")
        )
        so = statistics.mean(methods["source_only"]["oracle/target_pck"])
        lines += [
            "",
            f"- RegDA − max(source-only, AdaBN): **{regda - best_base:+.1f}** PCK (goal ≥ +5)",
            f"- oracle − source-only: **{oracle - so:+.1f}** PCK (goal ≥ 20)",
        ]
        if "regda_t0" in methods:
            t0 = statistics.mean(methods["regda_t0"]["oracle/target_pck"])
            lines.append(
                f"- RegDA − RegDA(trade_off 0), the adversarial part: **{regda - t0:+.1f}** PCK"
            )
        if "regda" in methods:
            curves = methods["regda"]["curve"]
            epochs = [ep for ep, _ in curves[0]]
            mean = [statistics.mean(c[i][1] for c in curves) for i in range(len(epochs))]
            lines.append(
                "- RegDA target PCK along phase 2 (mean over seeds, by epoch): "
                + ", ".join(f"{ep}: {v:.1f}" for ep, v in zip(epochs, mean, strict=True))
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["synth_hand", "synth_body"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["pretrain", "oracle", "regda", "regda_t0"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/benchmark-adaptation")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "adaptation"))
    parser.add_argument("--reuse", help="an earlier adaptation.json whose runs are kept")
    args = parser.parse_args()
    start = time.time()
    earlier = _earlier_runs(args.reuse) if args.reuse else {}
    first = [
        (k, t, s, args.work)
        for k in args.methods
        if k in ("pretrain", "oracle")
        for t in args.tasks
        for s in args.seeds
    ]
    second = [
        (k, t, s, args.work)
        for k in args.methods
        if k.startswith("regda")
        for t in args.tasks
        for s in args.seeds
    ]
    results = [earlier[j[:3]] for j in first + second if j[:3] in earlier]
    first = [j for j in first if j[:3] not in earlier]
    second = [j for j in second if j[:3] not in earlier]
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for stage in (first, second):  # RegDA needs the cached phase 1 of its (task, seed)
            for r in pool.imap_unordered(_job, stage):
                print(
                    f"{r['kind']:>9} {r['task']} seed {r['seed']}: {r['seconds']:.0f} s", flush=True
                )
                results.append(r)
    import torch

    meta = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, "
        f"{mp.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}",
        "seeds": args.seeds,
        "wall_s": time.time() - start,
        "reused": {
            "from": args.reuse,
            "date": earlier_date(args.reuse) if args.reuse else None,
            "runs": sorted(f"{k} {t} seed {s}" for k, t, s in earlier),
        },
    }
    table = _summary(results, args.tasks, args.seeds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "table": table, "runs": results}, indent=1)
    )
    out.with_suffix(".md").write_text(render_markdown(table, meta))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
