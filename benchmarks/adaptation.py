"""Target PCK of source-only, AdaBN, each adaptation method at its defaults, and the oracle, on
the synthetic tasks and the held-out COCO domains (benchmarks/domains.py), over seeds, with wall
time and peak memory; writes benchmarks/results/adaptation.{md,json}.

    python -m benchmarks adaptation [--tasks synth_hand synth_body quadruped lizard]
        [--seeds 0 1 2] [--methods regda mean_teacher regda+mean_teacher] [--jobs 2]
        [--reuse benchmarks/results/adaptation.json ...] [--set KEY=VALUE ...]

`--reuse FILE ...` takes the (kind, task, seed) runs earlier results files hold instead of
running them again (same code only: the table says which runs were reused and from when).

Each (task, seed, kind) runs in a fresh process (its peak RSS is that run's peak memory), `--jobs`
at a time with one torch thread each. Each method is read three ways: at its last epoch; at the
epoch its selection proxy chose (the proxy `auto` stands for: pose_prior with bones, else
source_pck; no target label); and as the platform's answer, the best of source-only, AdaBN and
that epoch by the same proxy (engine/run.py candidates). The oracle trains on target labels and
keeps its best target-val epoch, as an oracle does.
"""

from __future__ import annotations

import resource
import time
from functools import partial
from pathlib import Path

from benchmarks import RESULTS, grid, record
from benchmarks.stats import mean, ms, paired
from regda_dist.engine.build import seed_everything
from regda_dist.engine.phase1 import baselines, pretrained_source
from regda_dist.engine.run import candidates

METHODS = ("regda", "mean_teacher", "regda+mean_teacher", "prior_teacher")
NAMES = {"regda": "RegDA", "mean_teacher": "mean teacher", "regda+mean_teacher": "RegDA + MT",
         "prior_teacher": "prior-guided teacher"}  # fmt: skip
ALL = "oracle/target_pck"
KEYS = ("kind", "task", "seed")


def _job(job: dict, work: str, extra: list[str]) -> dict:
    """One (kind, task, seed) in a child process: kind 'pretrain' (source-only and AdaBN),
    'oracle', or an adaptation method."""
    kind, seed = job["kind"], job["seed"]
    method = [f"adapt.method={kind}"] if kind in METHODS else []
    trainer = grid.trainer(job["task"], seed, work, [*extra, *method], select=True)
    cfg, curve = trainer.cfg, []
    trainer.add_callback(
        "on_eval",
        lambda phase, epoch, metrics: (
            curve.append((epoch, metrics[ALL])) if phase == "adapt" else 0
        ),
    )
    start = time.time()
    out: dict = {"task": job["task"], "seed": seed, "kind": kind}
    if kind == "oracle":
        model, _ = trainer.pretrain(Path(work) / f"oracle-{cfg.pretrain_key()}.ckpt", "target")
        out["oracle"] = trainer.evaluator(model)
    else:
        source, _ = pretrained_source(trainer)  # cache under train.output_dir = work
        measured = baselines(trainer, source)[0]
        if kind == "pretrain":
            out.update(measured)
        else:
            seed_everything(seed)
            ckpt = Path(work) / f"{kind}-{grid.config_key(cfg)}.ckpt"
            adapted = trainer.adapt(source.state_dict(), ckpt)
            chosen = {k: adapted.selected[k] for k in ("epoch", "metric", "value", "metrics")}
            result = {**measured, "adapted": adapted.last, "selected": chosen}
            picked = candidates(result, cfg.train.select_metric)
            answer = {"source_only": measured["source_only"], "adabn": measured["adabn"],
                      "adapted": chosen["metrics"]}[picked["best"]]  # fmt: skip
            out.update(last=adapted.last, selected=chosen, curve=curve, candidates=picked,
                       answer=answer)  # fmt: skip
    out["seconds"] = time.time() - start
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _name(key: tuple) -> str:
    kind, task, seed = key
    return f"{kind} {task} seed {seed}"


def rows(runs: list[dict], task: str) -> list[tuple[str, list[dict], list[dict]]]:
    """(label, metrics per seed, runs) of every row of a task's table."""
    mine = [r for r in runs if r["task"] == task]
    by_kind = {k: [r for r in mine if r["kind"] == k] for k in ("pretrain", "oracle", *METHODS)}
    out = []
    for key, label in (("source_only", "source-only"), ("adabn", "AdaBN")):
        out.append((label, [r[key] for r in by_kind["pretrain"]], by_kind["pretrain"]))
    for method in METHODS:
        done = by_kind[method]
        if done:
            name = NAMES[method]
            out.append((f"{name}, last epoch", [r["last"] for r in done], done))
            out.append(
                (
                    f"{name}, epoch chosen by the proxy",
                    [r["selected"]["metrics"] for r in done],
                    done,
                )
            )
            out.append((f"{name}: the platform's answer", [r["answer"] for r in done], done))
    out.append(
        ("oracle (target labels)", [r["oracle"] for r in by_kind["oracle"]], by_kind["oracle"])
    )
    return [row for row in out if row[1]]


def render_markdown(runs: list[dict], meta: dict, tasks: list[str]) -> str:
    lines = [
        "# Adaptation: source-only, AdaBN, each method at its defaults, oracle",
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
        ),  # fmt: skip
        *(
            f"- reused runs were made by: `{m['command']}` ({m['date']}, seeds {m['seeds']})"
            for m in meta.get("sources", [])
        ),
        *([f"- not run: {', '.join(meta['not_run'])}"] if meta.get("not_run") else []),
        "- PCK@0.05 on the TARGET test split (labels used for evaluation only), mean ± std over "
        "seeds. 'epoch chosen by the proxy': the epoch the label-free selection proxy kept; "
        "'the platform's answer': the best of source-only, AdaBN and that epoch by the same "
        "proxy (what `regda-dist train` says it would export). Time and peak RSS per run (one "
        "process, one torch thread; AdaBN's time is in source-only's).",
        "",
    ]
    for task in tasks:
        table = rows(runs, task)
        if not table:
            continue
        groups = sorted(k for k in table[0][1][0] if k.startswith(ALL + "/"))
        cols = [g.split("/")[-1] for g in groups] + ["all"]
        lines += [f"## {task}", "",
                  "| method | seeds | " + " | ".join(cols)
                  + " | source test | time (s) | peak RSS (MiB) |",
                  "|---" * (len(cols) + 5) + "|"]  # fmt: skip
        for label, metrics, done in table:
            vals = [[m[g] for m in metrics] for g in [*groups, ALL]]
            lines.append(
                f"| {label} | {len(metrics)} | " + " | ".join(ms(v) for v in vals)
                + f" | {ms([m['source/pck'] for m in metrics])}"
                + f" | {ms([r['seconds'] for r in done])}"
                + f" | {ms([r['peak_rss_mib'] for r in done])} |"
            )  # fmt: skip
        lines += ["", *_summary(table, runs, task), ""]
        lines += across_methods(runs, task)
    lines += proxy_choice(runs, tasks)
    return "\n".join(lines)


def _methods_run(runs: list[dict], task: str) -> list[str]:
    """The methods with a run on `task`, in METHODS' order."""
    return [m for m in METHODS if any(r["task"] == task and r["kind"] == m for r in runs)]


def _complete_seeds(runs: list[dict], task: str) -> dict[int, dict[str, dict]]:
    """{seed: {kind: run}} of the seeds of `task` that have phase 1 and every method run on
    the task."""
    by_seed: dict[int, dict[str, dict]] = {}
    for r in runs:
        if r["task"] == task and r["kind"] in ("pretrain", *METHODS):
            by_seed.setdefault(r["seed"], {})[r["kind"]] = r
    every = {"pretrain", *_methods_run(runs, task)}
    if every == {"pretrain"}:  # no method ran on the task: no answer over methods to give
        return {}
    return {s: k for s, k in sorted(by_seed.items()) if set(k) == every}


def _pool(kinds: dict[str, dict], read) -> dict[str, dict]:
    """{candidate: its metrics}: source-only and AdaBN, and each method at the metrics `read`
    takes of its run."""
    base = kinds["pretrain"]
    pool = {"source-only": base["source_only"], "AdaBN": base["adabn"]}
    return pool | {NAMES[m]: read(kinds[m]) for m in METHODS if m in kinds}


def _best(pool: dict[str, dict], key: str) -> str:
    """The candidate with the largest `key` (NaN or missing never wins; a tie to the first
    listed)."""
    values = {n: float(m.get(key, float("nan"))) for n, m in pool.items()}
    return max((n for n, v in values.items() if v == v), key=values.__getitem__)


def across_methods(runs: list[dict], task: str) -> list[str]:
    """One answer over every method at its defaults, per seed: what a search made only of its
    first trials (each method's defaults) and the baselines hands back, by its selection proxy at
    the epoch each method kept, beside the oracle's pick among the same candidates."""
    seeds = _complete_seeds(runs, task)
    if not seeds:
        return []
    present = _methods_run(runs, task)
    metric = next(iter(seeds.values()))[present[0]]["candidates"]["metric"]
    names = ["source-only", "AdaBN", *(NAMES[m] for m in present)]
    lines = [
        f"### {task}: one answer over every method at its defaults",
        "",
        f"Each candidate at the epoch {metric} kept (the baselines at theirs); 'the answer': the "
        f"best candidate by {metric} (no target label), what a search whose only trials are each "
        "method's defaults hands back; 'oracle's pick': the best by target PCK (labels, for "
        "judging only).",
        "",
        "| seed | " + " | ".join(names) + " | the answer | oracle's pick | answer − max(baselines)"
        " | oracle's pick − answer |",
        "|---" * (len(names) + 5) + "|",
    ]
    gains, regrets, picks = [], [], []
    for seed, kinds in seeds.items():
        pool = _pool(kinds, lambda r: r["selected"]["metrics"])
        answer, oracle = _best(pool, metric), _best(pool, ALL)
        pck = {n: m[ALL] for n, m in pool.items()}
        gains.append(pck[answer] - max(pck["source-only"], pck["AdaBN"]))
        regrets.append(pck[oracle] - pck[answer])
        picks.append(answer)
        lines.append(
            f"| {seed} | " + " | ".join(f"{pck[n]:.1f}" for n in names)
            + f" | {pck[answer]:.1f} ({answer}) | {pck[oracle]:.1f} ({oracle})"
            + f" | {gains[-1]:+.1f} | {regrets[-1]:+.1f} |"
        )  # fmt: skip
    lines += [
        "",
        f"- the answer over max(source-only, AdaBN): {ms(gains, '+')} PCK (goal >= +5; worst "
        f"seed {min(gains):+.1f}); the oracle's pick above the answer: {ms(regrets, '+')} PCK "
        f"(goal <= 1; worst seed {max(regrets):+.1f}); the answer per seed: {', '.join(picks)}",
        "",
    ]
    return lines


def proxy_choice(runs: list[dict], tasks: list[str]) -> list[str]:
    """Each proxy as the chooser among source-only, AdaBN and every method at its last epoch
    (an epoch no proxy chose), over every task and seed with all of them: the target PCK of its
    pick below the best candidate's (regret) and above max(source-only, AdaBN) (gain)."""
    cases = [
        (task, seed, kinds) for task in tasks for seed, kinds in _complete_seeds(runs, task).items()
    ]
    if not cases:
        return []
    proxies = sorted(k for k in cases[0][2]["pretrain"]["adabn"] if k.startswith("proxy/"))
    lines = [
        "## Which proxy chooses the method",
        "",
        "Each proxy choosing among source-only, AdaBN and each method at its last epoch, on "
        f"{len(cases)} (task, seed) pairs ({', '.join(sorted({t for t, _, _ in cases}))}): "
        "the target PCK of its pick below the best candidate's (regret) and above max(source-only, "
        "AdaBN) (gain), mean ± std, worst; how often it picked the best candidate.",
        "",
        "| proxy | regret | worst regret | gain over the baselines | worst gain "
        "| picked the best |",
        "|---|---|---|---|---|---|",
    ]
    pools = [_pool(kinds, lambda r: r["last"]) for _, _, kinds in cases]
    for proxy in proxies:
        regrets, gains, hits = [], [], 0
        for pool in pools:
            pck = {n: m[ALL] for n, m in pool.items()}
            pick = _best(pool, proxy)
            regrets.append(max(pck.values()) - pck[pick])
            gains.append(pck[pick] - max(pck["source-only"], pck["AdaBN"]))
            hits += pck[pick] == max(pck.values())
        lines.append(
            f"| {proxy.split('/')[-1]} | {ms(regrets)} | {max(regrets):.1f} | {ms(gains, '+')}"
            f" | {min(gains):+.1f} | {hits}/{len(cases)} |"
        )
    return [*lines, ""]


def _gains(runs: list[dict], task: str, method: str, read) -> list[float]:
    """Per seed: `read(run)`'s target PCK minus max(source-only, AdaBN) of the same seed (the
    same phase 1), over the seeds that have both."""
    mine = [r for r in runs if r["task"] == task]
    base = {r["seed"]: max(r["source_only"][ALL], r["adabn"][ALL])
            for r in mine if r["kind"] == "pretrain"}  # fmt: skip
    return paired({r["seed"]: read(r)[ALL] for r in mine if r["kind"] == method}, base)


def _summary(table, runs: list[dict], task: str) -> list[str]:
    by = {label: metrics for label, metrics, _ in table}
    out = []
    for method in METHODS:
        name = NAMES[method]
        if f"{name}, last epoch" not in by:
            continue
        gains = {
            how: _gains(runs, task, method, read)
            for how, read in (
                ("last epoch", lambda r: r["last"]),
                ("proxy's epoch", lambda r: r["selected"]["metrics"]),
                ("the platform's answer", lambda r: r["answer"]),
            )
        }
        done = [r for r in runs if r["task"] == task and r["kind"] == method]
        picks = [r["candidates"]["best"] for r in done]
        # by epoch: a run resumed from an earlier call's checkpoint has only the epochs after it
        by_epoch: dict[int, list[float]] = {}
        for r in done:
            for epoch, pck in r["curve"]:
                by_epoch.setdefault(epoch, []).append(pck)
        curve = [
            f"{mean(v):.1f}" + (f" ({len(v)} runs)" if len(v) < len(done) else "")
            for _, v in sorted(by_epoch.items())
        ]
        answer = gains["the platform's answer"]
        out.append(
            f"- {name} over max(source-only, AdaBN) of the same seed (mean ± std over "
            f"{len(answer)} seeds; goal >= +3 / +5): "
            + ", ".join(f"{how} {ms(g, '+')}" for how, g in gains.items())
            + (f"; the answer's worst seed {min(answer):+.1f}" if len(answer) > 1 else "")
            + f"; the answer per seed: {', '.join(picks)}; target PCK by epoch (mean): "
            + ", ".join(curve)
        )  # fmt: skip
    if "oracle (target labels)" in by:
        gap = [mean(m[ALL] for m in by[k]) for k in ("oracle (target labels)", "source-only")]
        out.append(f"- oracle − source-only: {gap[0] - gap[1]:+.1f} PCK")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument(
        "--tasks", nargs="+", default=["synth_hand", "synth_body", "quadruped", "lizard"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/benchmark-adaptation")
    parser.add_argument("--out", default=str(RESULTS / "adaptation"))
    parser.add_argument(
        "--reuse", nargs="+", help="earlier adaptation.json files whose runs are kept"
    )
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="run nothing: the tables of what the --reuse files hold (missing runs are listed)",
    )
    args = parser.parse_args(argv)
    start = time.time()
    if args.no_run and not args.reuse:
        parser.error("--no-run needs --reuse")
    earlier = grid.earlier_runs(args.reuse, KEYS)
    kinds = ["pretrain", *([] if args.no_oracle else ["oracle"])]
    # a method needs the cached phase 1 of its (task, seed): two stages
    stages = [[{"kind": k, "task": t, "seed": s} for k in group for t in args.tasks
               for s in args.seeds] for group in (kinds, args.methods)]  # fmt: skip

    def meta() -> dict:
        reused = grid.reused(args.reuse, earlier, _name)
        return {**record.provenance(__name__, argv, start), "seeds": args.seeds, **reused}

    job = partial(_job, work=args.work, extra=args.set)
    runs = grid.run(job, stages, KEYS, args.jobs, earlier, args.out, meta, dry=args.no_run)
    final = meta()
    if args.no_run:
        final["not_run"] = sorted(map(_name, grid.missing(stages, KEYS, earlier)))
    grid.write(args.out, final, runs, render_markdown(runs, final, args.tasks))
    return 0
