"""How well each target validation proxy selects configurations AND epochs, judged by the
oracle (target-test PCK), over seeds, on both synthetic tasks and a held-out domain.

    python -m benchmarks proxy_study [--seeds 0 1 2] [--trials 16] [--heldout-trials 16]
        [--experiment experiments/synth_search.yaml] [--out benchmarks/results/proxy_study]

Runs `regda-dist tune EXPERIMENT` (by default synth_search.yaml: RegDA's space; with
synth_search_methods.yaml the trials of every adaptation method mixed) with FIFO scheduling
(every trial runs every epoch and evaluates each, so any proxy's choice of epoch can be
replayed) once per seed, and the same search on a held-out domain (benchmarks/heldout_domain.py:
a 13-keypoint quadruped read as COCO with data.keypoints from_data) that no proxy or default
was designed on. Then, per search, task and proxy: each trial's epoch chosen by the proxy;
Spearman of the proxy with the oracle over trials (at those epochs) and over epochs within a
trial; top-1 regret against the best trial at the proxy's epochs, and the gap to the oracle's
own pick of trial and epoch; the reference defaults (the first trial) for comparison; where
methods are mixed, the method of each proxy's pick. The consensus proxy is read at the epoch
the search's own metric chose. Writes OUT.{md,json}. Target labels are read here only to judge
the proxies.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import yaml

from benchmarks import RESULTS, ROOT, heldout_domain, record, searches
from benchmarks.stats import finite, mean, rho
from regda_dist.search.consensus import KEY as CONSENSUS
from regda_dist.search.folder import ORACLE
from regda_dist.search.space import METHOD, default_point

DEFAULT_EXPERIMENT = ROOT / "experiments" / "synth_search.yaml"


def study_name(experiment: Path) -> str:
    """proxy_study for the default experiment (RegDA's space), proxy_study_NAME for another
    (synth_search_methods.yaml: proxy_study_methods), so that one study's results and searches
    never overwrite another's."""
    if experiment == DEFAULT_EXPERIMENT:
        return "proxy_study"
    return "proxy_study_" + (experiment.stem.removeprefix("synth_search_") or experiment.stem)


def tune(experiment: Path, name: str, output_dir: Path, trials: int, seed: int) -> Path:
    """The seed's FIFO search of `experiment` (every trial runs and evaluates every epoch)."""
    sets = [f"search.num_samples={trials}", "search.scheduler=fifo", f"search.seed={seed}",
            f"train.seed={seed}"]  # fmt: skip
    return searches.tune(experiment, output_dir / name, sets)


def heldout_experiment(output_dir: Path, experiment: Path) -> Path:
    """The experiment's recipe on the held-out COCO pair (its own keypoint set)."""
    folders = heldout_domain.write(output_dir / "heldout-data")
    values = yaml.safe_load(experiment.read_text())
    values["data"].update(task="", keypoints="from_data")
    values["data"]["source"] = {"dataset": "coco", "root": str(folders["source"])}
    values["data"]["target"] = {"dataset": "coco", "root": str(folders["target"])}
    values["search"]["tasks"] = []  # the experiment's own (data.source -> data.target)
    path = output_dir / "heldout.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def analyse_task(trials, task: str, defaults: dict | None) -> dict:
    """Per proxy: its epochs, trial ranking, regret, gap to the oracle's pick, epoch ranking."""
    done = [t for t in trials if t.complete and t.curves.get(task)]
    curves = {t.trial_id: t.curves[task] for t in done}
    oracle_any = max(r[ORACLE] for c in curves.values() for r in c)
    proxies = sorted({k for c in curves.values() for r in c for k in r if k.startswith("proxy/")})
    out = {"trials": len(done), "oracle_pick": oracle_any, "proxies": {}}
    default_trial = next((t for t in done if t.params == defaults), None)
    method = {t.trial_id: t.params.get(METHOD) for t in done}  # None: a search of one method
    for proxy in [*proxies, CONSENSUS]:
        chosen = {}  # trial -> (proxy value, oracle) at the epoch the proxy chose
        within = []
        for t in done:
            if proxy == CONSENSUS:
                metrics = t.metrics(task)
                if CONSENSUS in metrics:
                    chosen[t.trial_id] = (metrics[CONSENSUS], metrics[ORACLE])
                continue
            rows = [r for r in curves[t.trial_id] if finite(r.get(proxy))]
            if rows:
                best = max(rows, key=lambda r: r[proxy])
                chosen[t.trial_id] = (best[proxy], best[ORACLE])
                within.append(rho([r[proxy] for r in rows], [r[ORACLE] for r in rows]))
        if len(chosen) < 2:
            continue
        values = list(chosen.values())
        picked_trial, pick = max(chosen.items(), key=lambda kv: kv[1][0])
        best_same = max(v[1] for v in values)
        entry = {
            "spearman": rho([v[0] for v in values], [v[1] for v in values]),
            "regret": best_same - pick[1],
            "gap_to_oracle_pick": oracle_any - pick[1],
            "picked": pick[1],
            "epoch_spearman": mean([r for r in within if not math.isnan(r)]),
            "mean_chosen": mean([v[1] for v in values]),
        }
        if method[picked_trial] is not None:
            entry["picked_method"] = method[picked_trial]
        if default_trial is not None and default_trial.trial_id in chosen:
            entry["defaults"] = chosen[default_trial.trial_id][1]
        out["proxies"][proxy] = entry
    out["last_epoch"] = mean([c[-1][ORACLE] for c in curves.values()])
    out["oracle_epoch"] = mean([max(r[ORACLE] for r in c) for c in curves.values()])
    if default_trial is not None:
        out["defaults_last"] = curves[default_trial.trial_id][-1][ORACLE]
    return out


def analyse(search_dir: Path) -> dict:
    search, groups = searches.read(search_dir)
    out = {}
    for _, trials in sorted(groups.items()):
        for task in sorted({task for t in trials for task in t.runs}):
            defaults = default_point(search.tasks[task], search.space)
            out[task] = analyse_task(trials, task, defaults)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--heldout-trials", type=int, default=16)
    parser.add_argument("--experiment", default=str(DEFAULT_EXPERIMENT.relative_to(ROOT)))
    parser.add_argument(
        "--output-dir", help="the searches' folder (default: runs/proxy_study[_NAME])"
    )
    parser.add_argument(
        "--out", help="the results, .md and .json (default: benchmarks/results/proxy_study[_NAME])"
    )
    args = parser.parse_args(argv)
    experiment = (ROOT / args.experiment).resolve()
    if not experiment.is_file():
        raise SystemExit(f"--experiment {args.experiment}: no such file")
    name = study_name(experiment)
    out = Path(args.out or RESULTS / name)
    output_dir = Path(args.output_dir or ROOT / "runs" / name).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {}
    for seed in args.seeds:
        results[f"seed {seed}"] = analyse(tune(experiment, f"synth-s{seed}", output_dir,
                                               args.trials, seed))  # fmt: skip
    if args.heldout_trials:
        heldout = heldout_experiment(output_dir, experiment)
        results["held-out, seed 0"] = analyse(tune(heldout, "heldout-s0", output_dir,
                                                   args.heldout_trials, 0))  # fmt: skip
    where = experiment.relative_to(ROOT) if experiment.is_relative_to(ROOT) else experiment
    meta = {**record.provenance(__name__, argv), "experiment": str(where),
            "minutes": round((time.time() - started) / 60, 1)}  # fmt: skip
    record.write(out, {"meta": meta, "results": results}, render(results, meta), indent=2)
    return 0


def summary(results: dict) -> list[str]:
    """Per proxy over every (task, seed) search: the issue's goals side by side (and, where
    methods are mixed, how often its pick was each method's trial)."""
    runs = [(f"{task}, {run}", r) for run, tasks in results.items() for task, r in tasks.items()]
    proxies = sorted({p for _, r in runs for p in r["proxies"]})
    mixed = methods_mixed(results)
    lines = [
        "",
        "## Summary over every search",
        "",
        f"{len(runs)} searches (task x seed, held-out included). Goals: pick within 1 PCK of the "
        "oracle's pick in every search, Spearman over trials >= 0.8, better than the reference "
        "defaults.",
        "",
        "| proxy | mean Spearman (trials) | min | mean Spearman (epochs) | mean gap to oracle's "
        "pick | within 1 PCK | pick > defaults | mean PCK of trials at its epochs |"
        + (" its picks' methods |" if mixed else ""),
        "|---" * (9 if mixed else 8) + "|",
    ]
    for proxy in proxies:
        entries = [r["proxies"][proxy] for _, r in runs if proxy in r["proxies"]]
        rho = [e["spearman"] for e in entries if not math.isnan(e["spearman"])]
        epoch_rho = [e["epoch_spearman"] for e in entries if not math.isnan(e["epoch_spearman"])]
        gaps = [e["gap_to_oracle_pick"] for e in entries]
        beats = [e["picked"] > e["defaults"] for e in entries if "defaults" in e]
        lines.append(
            f"| {proxy} | {mean(rho):.2f} | {min(rho, default=math.nan):.2f} | "
            f"{mean(epoch_rho):.2f} | {mean(gaps):.1f} | "
            f"{sum(g <= 1.0 for g in gaps)}/{len(gaps)} | {sum(beats)}/{len(beats)} | "
            f"{mean([e['mean_chosen'] for e in entries]):.1f} |"
            + (f" {_counts(e.get('picked_method') for e in entries)} |" if mixed else "")
        )
    lines += [
        "",
        "Epoch selection (mean target PCK over a search's trials): "
        + "; ".join(
            f"{name}: last {r['last_epoch']:.1f}, oracle's epoch {r['oracle_epoch']:.1f}"
            for name, r in runs
        )
        + ".",
    ]
    return lines


def _counts(names) -> str:
    counts = Counter(name or "?" for name in names)
    return ", ".join(f"{name} {n}" for name, n in counts.most_common())


def methods_mixed(results: dict) -> bool:
    """Whether the searches mixed methods (a proxy's pick has a method)."""
    searches = [r for tasks in results.values() for r in tasks.values()]
    return any("picked_method" in p for r in searches for p in r["proxies"].values())


def render(results: dict, meta: dict) -> str:
    mixed = methods_mixed(results)
    lines = [
        f"# Proxy study: selecting {'every method' if mixed else 'RegDA'}'s configurations and "
        "epochs without target labels",
        "",
        f"- command: `{meta['command']}` (wall time {meta['minutes']:.0f} min)",
        f"- date: {meta['date']}; machine: {meta['machine']}"
        + (f"; Python {meta['python']}" if "python" in meta else ""),
        f"- searches: {meta.get('experiment', 'experiments/synth_search.yaml')} per seed (both "
        "tasks) and the held-out quadruped (COCO, from_data), FIFO (every trial runs and "
        "evaluates every epoch), TPE over the experiment's space guided by its search.metric; "
        + (
            "the first trials run each method at the experiment's own values, every method's "
            "trials mixed; 'defaults' = the experiment's own method's (RegDA's) values. "
            if mixed
            else "the first trial runs the reference defaults. "
        )
        + "Oracle = target TEST PCK, read only to judge.",
        "- per proxy: each trial at the epoch the proxy chose. Spearman over trials and, "
        "averaged, over the epochs of a trial; regret = best trial at the proxy's epochs minus "
        "its pick; gap = the oracle's own pick (any trial, any epoch) minus its pick; defaults "
        "= the reference defaults at the proxy's epoch. consensus: at the search metric's epoch.",
    ]
    lines += summary(results)
    for run, tasks in results.items():
        for task, r in tasks.items():
            lines += [
                "",
                f"## {task}, {run} ({r['trials']} trials)",
                "",
                f"Mean target PCK over trials: last epoch {r['last_epoch']:.1f}, the oracle's "
                f"epoch {r['oracle_epoch']:.1f}; the oracle's pick {r['oracle_pick']:.1f}; "
                f"defaults at their last epoch {r.get('defaults_last', math.nan):.1f}.",
                "",
                "| proxy | Spearman (trials) | Spearman (epochs) | regret | gap to oracle's pick "
                "| its pick | defaults at its epoch | mean PCK at its epochs |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for proxy, p in sorted(r["proxies"].items(), key=lambda kv: kv[1]["regret"]):
                method = f" ({p['picked_method']})" if "picked_method" in p else ""
                lines.append(
                    f"| {proxy} | {p['spearman']:.2f} | {p['epoch_spearman']:.2f} | "
                    f"{p['regret']:.1f} | {p['gap_to_oracle_pick']:.1f} | {p['picked']:.1f}"
                    f"{method} | {p.get('defaults', math.nan):.1f} | {p['mean_chosen']:.1f} |"
                )
    return "\n".join(lines) + "\n"
