"""The objective of a joint search: one configuration run on several tasks, scored as one number.

Each task's proxy value v (at the epoch the trial chose) is placed among the search's own values
on that task:

    score = F(v) - F(v0),  F(x) = (#{r < x - unit} + #{|r - x| <= unit} / 2) / #reference

where the reference is the values of the search's completed trials on the task plus its
source-only value v0 (once), and unit is the proxy's smallest meaningful change (closer values
are ties). The objective is the mean of the scores over tasks: a mean per-task rank, in [-1, 1],
above 0 where a configuration beats not adapting on the tasks on average.

Why ranks: the former (v - v0) / max(|v0|, unit) divided by the baseline itself, so a task whose
source-only value sits near the proxy's optimum (pose_prior near 0) weighed many times more
than the others. A rank has the same spread on every task wherever the proxy's zero lies and
whatever its scale. Standardising by the spread of the search's values instead (a z-score) was
tried: with the few trials of a search a standard deviation is swung by one collapsed trial and
a median absolute deviation is too noisy (one task took 0.82 of the weight in a 6-trial
synthetic example with equal true spreads); ranks have neither problem. The unit tolerance
keeps a task on which the proxy barely moves from turning noise into a full share of the
objective. What ranks lose is magnitude: a large win on one task counts as much as a narrow one
elsewhere.

When: Tune and Optuna need a trial's objective when it finishes, so `objective` ranks it among
the trials completed so far (plus itself). `rescore` ranks every completed trial among all of
them: what ranking, export and report use, so the final order does not depend on the order in
which trials finished. The values Optuna saw first were ranked among fewer trials; TPE uses
them only to split trials into good and bad, which the early ranks serve.
"""

from __future__ import annotations

import math


def rank(x: float, reference: list[float], unit: float) -> float:
    """F(x): the share of `reference` below x by more than `unit`, ties counting half."""
    below = sum(r < x - unit for r in reference)
    tied = sum(abs(r - x) <= unit for r in reference)
    return (below + tied / 2) / len(reference)


def score(value: float, baseline: float, reference: list[float], unit: float) -> float:
    """F(value) - F(baseline) over reference + [baseline] (module docstring); NaN if either is."""
    if not (_finite(value) and _finite(baseline)):
        return math.nan
    values = [*reference, baseline]
    return rank(value, values, unit) - rank(baseline, values, unit)


def task_scores(per_task: dict[str, dict], others: list[dict], unit: float) -> dict[str, float]:
    """{task: score} of a trial ({task: {value, source_only}}) among `others` (other completed
    trials' per_task dicts) and itself; NaN where it has no value (a failed trial)."""
    out = {}
    for task, own in per_task.items():
        reference = [o[task]["value"] for o in others if _finite(o.get(task, {}).get("value"))]
        out[task] = score(own["value"], own["source_only"], [*reference, own["value"]], unit)
    return out


def objective(per_task: dict[str, dict], others: list[dict], unit: float) -> float:
    """The mean over tasks of `task_scores`; NaN if a task has none."""
    scores = list(task_scores(per_task, others, unit).values())
    return sum(scores) / len(scores) if all(map(_finite, scores)) else math.nan


def rescore(trials: dict[str, dict[str, dict]], unit: float) -> dict[str, float]:
    """{trial: objective against every other completed trial}; trials: {trial: per_task}."""
    complete = {t: p for t, p in trials.items() if all(_finite(x["value"]) for x in p.values())}
    return {
        t: objective(p, [o for u, o in complete.items() if u != t], unit) for t, p in trials.items()
    }


def per_task_of(saved: dict, tasks: list[str]) -> dict[str, dict]:
    """{task: {value, source_only}} of a trial's joint.json."""
    return {
        t: {"value": saved[f"{t}/value"], "source_only": saved[f"{t}/source_only"]} for t in tasks
    }


def joint_scores(trials: list) -> dict[str, float]:
    """{trial id: rescored objective} of the completed trials of a joint search (folder.Trial)."""
    done = [t for t in trials if t.complete and t.joint]
    if not done:
        return {}
    unit = done[0].joint.get("unit", 0.0)  # written with every joint.json
    return rescore({t.trial_id: per_task_of(t.joint, list(t.runs)) for t in done}, unit)


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
