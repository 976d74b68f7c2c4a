"""Is a joint objective dominated by one task? The two normalisations of a joint search, the
former (v - v0) / max(|v0|, unit) and the search's (search/joint.py: the value's rank among the
search's values on the task minus the source-only value's), computed over real trial values of
both synthetic tasks.

    python -m benchmarks joint_normalisation SEARCH_DIR [SEARCH_DIR ...]

Each SEARCH_DIR is a per_task search of synth_hand and synth_body (e.g. benchmarks/tpe_study.py's
runs/tpe_study/<sampler>-s<seed>): its completed trials on the two tasks are paired in the order
they ran (hand trial i with body trial i) as if each pair were one joint trial. The pairing does
not change the question asked, which is about scale: how much of the joint objective's variation
over trials each task's term carries (its share of the terms' variance: 0.5 each is balance) and
how well the objective ranks trials like each task's own value (Spearman). No search is run.
Writes benchmarks/results/joint_normalisation.{md,json}.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from scipy.stats import spearmanr

from benchmarks import RESULTS, record
from regda_dist.folders import TrialFolder
from regda_dist.proxies import create_proxy
from regda_dist.search.folder import load_trials
from regda_dist.search.joint import rescore, task_scores

TASKS = ("synth_hand", "synth_body")
METRIC = "proxy/pose_prior"


def pairs(search_dir: Path) -> dict[str, dict]:
    """{pair: {task: {value, source_only}}}: completed trials of each task, in the order run."""
    groups = load_trials(search_dir)
    ordered = {}
    for task in TASKS:
        done = [t for t in groups[task] if t.complete]
        when = {t.trial_id: TrialFolder(t.runs[task].parent).params.stat().st_mtime for t in done}
        done.sort(key=lambda t: when[t.trial_id])
        ordered[task] = [
            {"value": t.selected[task]["value"], "source_only": t.source_only[task][METRIC]}
            for t in done
        ]
    n = min(len(v) for v in ordered.values())
    return {f"{search_dir.name}/{i}": {k: ordered[k][i] for k in TASKS} for i in range(n)}


def analyse(trials: dict[str, dict]) -> dict:
    unit = create_proxy("pose_prior").unit
    terms = {
        "former": {
            i: {
                k: (x["value"] - x["source_only"]) / max(abs(x["source_only"]), unit)
                for k, x in p.items()
            }
            for i, p in trials.items()
        },  # fmt: skip
        "search": _rank_terms(trials, unit),
    }
    objectives = {
        "former": {i: statistics.mean(t.values()) for i, t in terms["former"].items()},
        "search": rescore(trials, unit),  # the mean of its terms
    }
    out = {"pairs": len(trials)}
    for name, objective in objectives.items():
        ids = sorted(objective)
        var = {k: statistics.pvariance([terms[name][i][k] for i in ids]) for k in TASKS}
        out[name] = {
            "share": {k: v / sum(var.values()) for k, v in var.items()},
            "spearman": {
                k: float(
                    spearmanr(
                        [objective[i] for i in ids], [trials[i][k]["value"] for i in ids]
                    ).statistic
                )
                for k in TASKS
            },  # fmt: skip
        }
    return out


def _rank_terms(trials: dict[str, dict], unit: float) -> dict[str, dict[str, float]]:
    """Each pair's per-task term of the search's objective, among all the other pairs."""
    return {
        i: task_scores(p, [o for j, o in trials.items() if j != i], unit) for i, p in trials.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("search_dirs", nargs="+")
    args = parser.parse_args(argv)
    per_search = {d.name: pairs(d) for d in (Path(d).resolve() for d in args.search_dirs)}
    merged = {i: p for trials in per_search.values() for i, p in trials.items()}
    result = {name: analyse(trials) for name, trials in per_search.items()}
    result["all pairs (ranked within their search)"] = _pooled(result, per_search)
    source_only = {k: next(iter(merged.values()))[k]["source_only"] for k in TASKS}
    meta = {**record.provenance(__name__, argv), "source_only": source_only}
    results = {"meta": meta, "result": result, "values": merged}
    record.write(RESULTS / "joint_normalisation", results, render(result, meta), indent=2)
    return 0


def _pooled(result: dict, per_search: dict) -> dict:
    """Mean share and Spearman over the searches (each pair ranked within its own search)."""
    names = list(per_search)
    return {
        "pairs": sum(result[n]["pairs"] for n in names),
        **{
            norm: {
                stat: {k: statistics.mean(result[n][norm][stat][k] for n in names) for k in TASKS}
                for stat in ("share", "spearman")
            }
            for norm in ("former", "search")
        },
    }


def render(result: dict, meta: dict) -> str:
    v0 = ", ".join(f"{k} {v:.3f}" for k, v in meta["source_only"].items())
    lines = [
        "# Joint objective: is it dominated by one task?",
        "",
        f"- command: `{meta['command']}` (no search run: reads the searches' trial values)",
        f"- date: {meta['date']}; machine: {meta['machine']}",
        "- values: pose_prior at each trial's selected epoch (experiments/synth_search.yaml, the "
        "demo schedule), per_task searches of benchmarks/tpe_study.py; hand trial i paired with "
        f"body trial i as one joint trial. Source-only pose_prior: {v0}.",
        "- former: (v - v0) / max(|v0|, unit), unit 0.1; search: F(v) - F(v0), F the rank among "
        "the search's values on the task and v0, ties within the unit (regda_dist/search/joint.py)"
        ". share: the task's share of the variance of the objective's terms over trials (0.5 "
        "each is balance); Spearman: of the objective with the task's own value over trials.",
        "",
        "| values of | pairs | normalisation | share hand | share body | Spearman hand | "
        "Spearman body |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result.items():
        for norm in ("former", "search"):
            e = r[norm]
            lines.append(
                f"| {name} | {r['pairs']} | {norm} | {e['share']['synth_hand']:.2f} | "
                f"{e['share']['synth_body']:.2f} | {e['spearman']['synth_hand']:.2f} | "
                f"{e['spearman']['synth_body']:.2f} |"
            )
    pooled = result["all pairs (ranked within their search)"]
    hand = {norm: pooled[norm]["share"]["synth_hand"] for norm in ("former", "search")}
    lines += [
        "",
        f"Reading: over all pairs, the former normalisation gave synth_hand {hand['former']:.2f} "
        f"of the objective's variance, the search's {hand['search']:.2f} (0.5 is balance). Both "
        "tasks' source-only values are far from pose_prior's optimum 0 here, so the former's "
        "imbalance comes from how much each task's values spread relative to |v0| (a collapsed "
        "trial counts in full), not from a baseline near 0; tests/test_search_joint.py shows "
        "that case (a baseline at -0.4 took over 0.85 of the weight). Under ranks a task whose "
        "values cluster within the proxy's unit (ties) weighs less, by design.",
    ]
    return "\n".join(lines) + "\n"
