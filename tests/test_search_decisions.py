"""The search's decisions at the reference schedule, without a cluster: ASHA's rungs start once
adaptation has begun, an early-stopped trial reaches Optuna as PRUNED, concurrent TPE samples
jointly with a constant liar."""

import math

import optuna
import pytest

from regda_dist import config as C
from regda_dist.distributed.search import (
    EarlyStopAwareOptunaSearch,
    make_scheduler,
    phase1_scaling,
    sampler,
)
from regda_dist.distributed.train import worker_threads
from regda_dist.models.regda import warm_start_lambda
from regda_dist.search.spec import SearchConfig, asha_rungs, grace_epochs

REFERENCE = C.Config()  # 30 x 500 iterations, warm-start 0 -> 0.1 over N = 1000


def _lambda_at_epoch(cfg, epoch):
    r = cfg.regda
    i = epoch * r.iters_per_epoch
    return warm_start_lambda(i, r.warm_lo, r.warm_hi, r.warm_alpha, r.warm_max_iters)


def test_asha_first_rung_at_the_reference_schedule_waits_for_the_warm_start():
    # lambda at epochs 1, 2, 4: 0.025, 0.046, 0.076; 90% of its 0.1 ceiling at iteration 2944
    assert _lambda_at_epoch(REFERENCE, 1) == pytest.approx(0.0245, abs=1e-3)
    grace = grace_epochs(REFERENCE, 0.9)
    assert grace == 6
    assert _lambda_at_epoch(REFERENCE, grace) >= 0.09 > _lambda_at_epoch(REFERENCE, grace - 1)
    search = SearchConfig()
    assert asha_rungs(search, {"t": REFERENCE}) == (6, 31, [6, 12, 24])
    scheduler = make_scheduler(search, {"t": REFERENCE})
    (bracket,) = scheduler._brackets
    assert sorted(milestone for milestone, _ in bracket._rungs) == [6, 12, 24]  # Tune's own


def test_asha_rungs_follow_the_schedule_and_an_explicit_grace_period():
    short = C.load(None, ["regda.epochs=3", "regda.iters_per_epoch=100", "regda.warm_max_iters=60"])
    assert grace_epochs(short, 0.9) == 2  # iteration 177 of 300
    assert asha_rungs(SearchConfig(), {"t": short}) == (2, 4, [2])
    assert asha_rungs(SearchConfig(grace_period=1), {"t": short}) == (1, 4, [1, 2])
    flat = C.load(None, ["regda.warm_hi=0.0"])
    assert grace_epochs(flat, 0.9) == 1  # lambda never rises: nothing to wait for


def _searcher(last_epoch=3):
    searcher = EarlyStopAwareOptunaSearch(
        space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        metric="best/proxy/p", mode="max", last_epoch=last_epoch, seed=0,
    )  # fmt: skip
    return searcher


def test_an_early_stopped_trial_is_pruned_and_a_finished_one_complete():
    searcher = _searcher()
    for trial in ("a", "b"):
        assert searcher.suggest(trial)
    for epoch, value in ((1, 0.2), (2, 0.5)):
        searcher.on_trial_result("a", {"best/proxy/p": value, "epoch": epoch})
        searcher.on_trial_result("b", {"best/proxy/p": value + 0.1, "epoch": epoch})
    searcher.on_trial_complete("a", {"best/proxy/p": 0.5, "epoch": 2})  # stopped by ASHA
    searcher.on_trial_result("b", {"best/proxy/p": 0.7, "epoch": 3})
    searcher.on_trial_complete("b", {"best/proxy/p": 0.7, "epoch": 3})
    states = {t.number: (t.state, t.value) for t in searcher._ot_study.trials}
    assert states[0][0] == optuna.trial.TrialState.PRUNED
    assert states[0][1] == 0.5  # Optuna keeps its last intermediate value, as pruned
    assert states[1] == (optuna.trial.TrialState.COMPLETE, 0.7)
    assert searcher._ot_study.trials[1].intermediate_values == pytest.approx(
        {1: 0.3, 2: 0.6, 3: 0.7}
    )


def test_a_failed_trial_is_failed():
    searcher = _searcher()
    searcher.suggest("a")
    searcher.on_trial_complete("a", None, error=True)
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.FAIL


@pytest.mark.parametrize("concurrent", [1, 3])
def test_tpe_models_jointly_with_a_constant_liar_when_trials_run_concurrently(concurrent):
    search = SearchConfig(max_concurrent=concurrent, seed=7)
    tpe = sampler(search, {"regda.margin": {"uniform": [1.0, 8.0]}})
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._multivariate is (concurrent > 1) and tpe._constant_liar is (concurrent > 1)
    again = sampler(search, {"regda.margin": {"uniform": [1.0, 8.0]}})
    assert not math.isnan(again._rng.rng.random())  # seeded sampler
    first = optuna.create_study(sampler=tpe).ask().suggest_float("x", 0, 1)
    assert first == optuna.create_study(sampler=again).ask().suggest_float("x", 0, 1)


def test_phase1_alone_before_the_trials_takes_the_node_cpus_its_cache_key_unchanged():
    demo = C.load(None, ["scaling.cpus_per_worker=0.9", "train.num_threads=1"])
    alone = phase1_scaling(demo, cpus=2.0)
    assert (alone.scaling.cpus_per_worker, alone.train.num_threads) == (2.0, 2)
    assert alone.pretrain_key() == demo.pretrain_key()
    assert phase1_scaling(demo, cpus=0.95) is demo  # nothing more to take
    two = C.load(None, ["scaling.num_workers=2", "scaling.cpus_per_worker=1"])
    assert phase1_scaling(two, cpus=2.0) is two  # one CPU each already
    assert phase1_scaling(two, cpus=6.0).scaling.cpus_per_worker == 3.0


def test_a_ray_worker_never_runs_more_torch_threads_than_its_cpu_share():
    # synth_hand.yaml's num_threads 2 (for --no-ray) with --workers 2 x 1 CPU ran 2 x 2 threads
    # on 2 cores: 45 images/s instead of 194 (benchmarks/results/train_throughput.md)
    def threads(*sets):
        return worker_threads(C.load(None, list(sets)))

    assert threads("scaling.cpus_per_worker=1", "train.num_threads=2") == 1
    assert threads("scaling.cpus_per_worker=2", "train.num_threads=2") == 2
    assert threads("scaling.cpus_per_worker=4", "train.num_threads=2") == 2
    assert threads("scaling.cpus_per_worker=0.9", "train.num_threads=0") == 1
    assert threads("scaling.cpus_per_worker=3") == 3
