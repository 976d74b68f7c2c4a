"""The joint objective (search/joint.py): no task dominates because its source-only value sits
near the proxy's optimum or because one trial collapsed; the final ranking does not depend on
the order trials finished in."""

import random
import statistics

import pytest

from regda_dist.proxies import create_proxy
from regda_dist.search.joint import objective, rank, rescore, score, task_scores

UNIT = create_proxy("pose_prior").unit  # 0.1
# pose_prior-like: one task's source-only value near the optimum 0, the other's far from it;
# the searched configurations move each by its own spread
BASELINE = {"near": -0.4, "far": -5.0}
SPREAD = {"near": 0.2, "far": 0.6}


def _trials(n=16, seed=0) -> dict[str, dict]:
    rng = random.Random(seed)
    return {
        f"t{i}": {
            task: {"value": v0 + rng.gauss(0.0, SPREAD[task]), "source_only": v0}
            for task, v0 in BASELINE.items()
        }
        for i in range(n)
    }


def _old(per_task: dict) -> dict[str, float]:
    """The former normalisation: (v - v0) / max(|v0|, unit)."""
    return {
        t: (x["value"] - x["source_only"]) / max(abs(x["source_only"]), UNIT)
        for t, x in per_task.items()
    }


def _shares(terms: list[dict[str, float]]) -> dict[str, float]:
    """Each task's share of the variance of the joint objective's terms over trials."""
    var = {t: statistics.pvariance([x[t] for x in terms]) for t in terms[0]}
    return {t: v / sum(var.values()) for t, v in var.items()}


def _terms(trials: dict) -> list[dict[str, float]]:
    done = list(trials.values())
    return [task_scores(p, [o for o in done if o is not p], UNIT) for p in done]


def test_neither_task_dominates_whatever_its_baselines_distance_to_the_optimum():
    trials = _trials()
    old = _shares([_old(p) for p in trials.values()])
    assert old["near"] > 0.85  # the task whose baseline is near 0 decided the joint ranking
    new = _shares(_terms(trials))
    assert 0.4 < new["near"] < 0.6


def test_one_collapsed_trial_does_not_take_its_tasks_weight():
    trials = _trials()
    trials["t0"]["far"]["value"] = -9.0  # the proxy's cap: a collapsed model on one task
    assert 0.4 < _shares(_terms(trials))["far"] < 0.6


def test_a_task_the_configurations_barely_move_adds_no_noise():
    trials = _trials()
    for i, p in enumerate(trials.values()):  # within the proxy's unit of each other
        p["near"]["value"] = BASELINE["near"] + 0.01 * (i % 3)
    assert _shares(_terms(trials))["near"] < 0.05
    assert rank(-0.40, [-0.45, -0.41, -0.2], UNIT) == pytest.approx(1 / 3)  # ties count half


def test_the_final_ranking_does_not_depend_on_the_order_trials_finished_in():
    trials = _trials(8)
    final = rescore(trials, UNIT)
    backwards = rescore(dict(reversed(list(trials.items()))), UNIT)
    assert final == pytest.approx(backwards)
    done = list(trials.values())  # the last trial to finish saw every other: the same score
    assert objective(done[-1], done[:-1], UNIT) == pytest.approx(final["t7"])
    assert score(-4.0, -5.0, [-4.0, -6.0], UNIT) == pytest.approx(2 / 3 - 1 / 3)  # v0 counts once


def test_a_trial_without_a_value_has_no_objective_and_others_ignore_it():
    trials = _trials(4)
    trials["t0"]["near"]["value"] = float("nan")
    scores = rescore(trials, UNIT)
    assert scores["t0"] != scores["t0"]  # NaN: told to Optuna as FAIL
    assert all(scores[t] == scores[t] for t in ("t1", "t2", "t3"))
    assert not create_proxy("head_agreement").has_baseline  # refused for joint (no v0)
