"""The search's decisions at the reference schedule, without a cluster: ASHA's rungs start once
adaptation has begun, an early-stopped trial reaches Optuna as PRUNED, concurrent TPE samples
jointly with a constant liar."""

import json
import math

import optuna
import pytest

from regda_dist import config as C
from regda_dist.distributed.scheduler import make_scheduler
from regda_dist.distributed.search import phase1_scaling
from regda_dist.distributed.searcher import EarlyStopAwareOptunaSearch, sampler
from regda_dist.distributed.train import worker_threads
from regda_dist.methods.regda import warm_start_epochs as grace_epochs
from regda_dist.models.regda import warm_start_lambda
from regda_dist.search.rungs import asha_rungs
from regda_dist.search.settings import SearchConfig

REFERENCE = C.Config()  # 30 x 500 iterations, warm-start 0 -> 0.1 over N = 1000


def _lambda_at_epoch(cfg, epoch):
    r = cfg.regda
    i = epoch * cfg.adapt.iters_per_epoch
    return warm_start_lambda(i, r.warm_lo, r.warm_hi, r.warm_alpha, r.warm_max_iters)


def test_asha_first_rung_at_the_reference_schedule_waits_for_the_warm_start(tmp_path):
    # lambda at epochs 1, 2, 4: 0.025, 0.046, 0.076; 90% of its 0.1 ceiling at iteration 2944
    assert _lambda_at_epoch(REFERENCE, 1) == pytest.approx(0.0245, abs=1e-3)
    grace = grace_epochs(REFERENCE, 0.9)
    assert grace == 6
    assert _lambda_at_epoch(REFERENCE, grace) >= 0.09 > _lambda_at_epoch(REFERENCE, grace - 1)
    search = SearchConfig()
    assert asha_rungs(search, {"t": REFERENCE}, {}) == (6, 31, [6, 12, 24])
    scheduler = make_scheduler(search, {"t": REFERENCE}, {}, tmp_path)
    (bracket,) = scheduler._brackets
    assert sorted(milestone for milestone, _ in bracket._rungs) == [6, 12, 24]  # Tune's own


def test_asha_rungs_follow_the_schedule_and_an_explicit_grace_period():
    short = C.load(None, ["adapt.epochs=3", "adapt.iters_per_epoch=100", "regda.warm_max_iters=60"])
    assert grace_epochs(short, 0.9) == 2  # iteration 177 of 300
    assert asha_rungs(SearchConfig(), {"t": short}, {}) == (2, 4, [2])
    assert asha_rungs(SearchConfig(grace_period=1), {"t": short}, {}) == (1, 4, [1, 2])
    flat = C.load(None, ["regda.warm_hi=0.0"])
    assert grace_epochs(flat, 0.9) == 1  # lambda never rises: nothing to wait for


class _Trial:  # what ASHA reads of a Tune trial
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


class _Controller:
    def get_trials(self):
        return []


def _rungs(scheduler) -> dict:
    (bracket,) = scheduler._brackets
    return {milestone: dict(recorded) for milestone, recorded in bracket._rungs}


def test_asha_rungs_come_back_on_resume_from_the_trials_saved_results(tmp_path, capsys):
    # Tuner.restore brings the scheduler back from its pickle at build time: empty rungs
    tasks = {"t": C.load(None, ["adapt.epochs=5"])}
    settings = SearchConfig(grace_period=1)  # rungs at epochs 1, 2, 4
    curves = {"a": [0.1, 0.4, 0.5, 0.6, 0.7], "b": [0.3, 0.2], "c": [0.2]}  # c: killed after 1
    live = make_scheduler(settings, tasks, {}, tmp_path)
    live.set_search_properties("best/proxy/p", "max")
    for trial_id, values in curves.items():
        live.on_trial_add(_Controller(), _Trial(trial_id))
        (tmp_path / trial_id / "t").mkdir(parents=True)
        with (tmp_path / trial_id / "t" / "metrics.jsonl").open("w") as lines:
            for epoch, value in enumerate(values, 1):
                row = {"epoch": epoch, "proxy/p": value, "best/proxy/p": max(values[:epoch])}
                lines.write(json.dumps({"phase": "adapt", **row}) + "\n")
                live.on_trial_result(_Controller(), _Trial(trial_id), row)
    restored = make_scheduler(settings, tasks, {}, tmp_path)
    restored.set_search_properties("best/proxy/p", "max")
    assert all(not recorded for recorded in _rungs(restored).values())
    for trial_id in curves:
        restored.on_trial_add(_Controller(), _Trial(trial_id))
    assert _rungs(restored) == _rungs(live) and _rungs(live)[1] == {"a": 0.1, "b": 0.3, "c": 0.2}
    restored.choose_trial_to_run(_Controller())
    out = capsys.readouterr().out
    assert "saved results (epoch 1: 3, epoch 2: 2, epoch 4: 1)" in out


def _searcher(last_epoch=3, **kwargs):
    return EarlyStopAwareOptunaSearch(
        space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        metric="best/proxy/p", mode="max", last_epoch=last_epoch, **{"seed": 0, **kwargs},
    )  # fmt: skip


def test_an_early_stopped_trial_is_pruned_at_its_rungs_value_and_a_finished_one_complete():
    searcher = _searcher()
    for trial in ("a", "b"):
        assert searcher.suggest(trial)
    # as Tune calls it: the result that makes ASHA stop "a" (epoch 2) never reaches
    # on_trial_result, only on_trial_complete (as the trial's last result)
    searcher.on_trial_result("a", {"best/proxy/p": 0.2, "epoch": 1})
    searcher.on_trial_complete("a", {"best/proxy/p": 0.5, "epoch": 2})
    for epoch, value in ((1, 0.3), (2, 0.6), (3, 0.7)):
        searcher.on_trial_result("b", {"best/proxy/p": value, "epoch": epoch})
    searcher.on_trial_complete("b", {"best/proxy/p": 0.7, "epoch": 3})
    first, second = searcher._ot_study.trials
    assert first.state == optuna.trial.TrialState.PRUNED
    assert first.intermediate_values == {1: 0.2, 2: 0.5}
    assert first.value == 0.5  # Optuna keeps its last intermediate value: the rung's
    assert (second.state, second.value) == (optuna.trial.TrialState.COMPLETE, 0.7)
    assert second.intermediate_values == pytest.approx({1: 0.3, 2: 0.6, 3: 0.7})


def test_a_trial_the_scheduler_stopped_stays_stopped_though_its_workers_finished(tmp_path):
    # CI: Tune stops a trial after ASHA's decision, but its workers train on until they are
    # killed; a fast trial wrote result.json first and export, report and the summary counted it
    # completed while Optuna held it PRUNED
    from regda_dist.search.folder import load_trials

    (tmp_path / "search.yaml").write_text("search: {mode: per_task, storage: ''}\n")
    trials = tmp_path / "t" / "trials"
    searcher = _searcher(trials_dir=trials)
    for trial in ("a", "b"):
        searcher.suggest(trial)
        run = trials / trial / "t"
        run.mkdir(parents=True)
        (trials / trial / "params.json").write_text("{}")
        (run / "config.yaml").write_text("regda: {epochs: 3}\n")
        chosen = {"epoch": 3, "metric": "proxy/p", "value": 0.7, "metrics": {"proxy/p": 0.7}}
        result = {"regda": {}, "source_only": {}, "selected": chosen}
        (run / "result.json").write_text(json.dumps(result))  # both ran to the end
    searcher.on_trial_complete("a", {"best/proxy/p": 0.5, "epoch": 1})  # ASHA's rung: stopped
    searcher.on_trial_complete("b", {"best/proxy/p": 0.7, "epoch": 3})
    assert json.loads((trials / "a" / "stopped.json").read_text())["epoch"] == 1
    assert not (trials / "b" / "stopped.json").exists()
    complete = {t.trial_id: t.complete for t in load_trials(tmp_path)["t"]}
    assert complete == {"a": False, "b": True}
    states = [t.state.name for t in searcher._ot_study.trials]
    assert states == ["PRUNED", "COMPLETE"]
    # --resume of a search whose searcher was pickled before it had a trials folder
    older = _searcher()
    del older._trials_dir
    older.suggest("c")
    older.on_trial_complete("c", {"best/proxy/p": 0.1, "epoch": 1})
    assert older._ot_study.trials[0].state.name == "PRUNED"


def test_a_failed_trial_is_failed():
    searcher = _searcher()
    searcher.suggest("a")
    searcher.on_trial_complete("a", None, error=True)
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.FAIL


def test_a_trial_without_a_value_is_one_failed_trial_said_in_one_line(capsys):
    # its metric NaN at every epoch (a model gone NaN; dev with < 2 source-val samples): Ray's
    # own tell (COMPLETE with NaN) is refused by Optuna, which left the trial RUNNING
    searcher = _searcher()
    searcher.suggest("a")
    searcher.on_trial_result("a", {"best/proxy/p": float("nan"), "epoch": 1})
    searcher.on_trial_complete("a", {"best/proxy/p": float("nan"), "epoch": 3})
    (trial,) = searcher._ot_study.trials
    assert trial.state == optuna.trial.TrialState.FAIL and trial.intermediate_values == {}
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "trial a failed: best/proxy/p has no value" in out


def test_telling_a_grid_search_pruned_never_raises():
    # GridSampler.after_trial calls study.stop() once the grid is done, which raises outside
    # study.optimize: telling the last grid point PRUNED made the stopped trial an ERROR
    grid = optuna.samplers.GridSampler({"x": [0.25, 0.75]}, seed=0)
    searcher = _searcher(sampler=grid, seed=None)
    for trial in ("a", "b"):
        searcher.suggest(trial)
    searcher.on_trial_complete("a", {"best/proxy/p": 0.4, "epoch": 3})
    searcher.on_trial_complete("b", {"best/proxy/p": 0.1, "epoch": 1})  # stopped by ASHA
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]


def test_on_resume_a_study_trial_tune_never_saved_is_failed_not_left_running(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = _searcher(study_name="s/g", storage=optuna.storages.RDBStorage(storage))
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last saved state
    searcher.suggest("b")  # asked after it, then the search was killed
    restored = _searcher(study_name="s/g", storage=optuna.storages.RDBStorage(storage))
    restored.restore(str(tmp_path / "searcher.pkl"))
    states = [t.state for t in optuna.load_study(study_name="s/g", storage=storage).trials]
    assert states == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL]
    restored.on_trial_complete("a", {"best/proxy/p": 0.3, "epoch": 3})  # "a" goes on
    assert restored._ot_study.trials[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize(("samples", "startup"), [(5, 2), (8, 2), (16, 4), (40, 10), (200, 10)])
def test_tpe_is_model_based_after_a_start_up_that_follows_the_budget(samples, startup):
    # Optuna's own 10 random start-up trials made every default-sized search random search
    space = {"regda.margin": {"uniform": [1.0, 8.0]}}
    assert sampler(SearchConfig(num_samples=samples), space)._n_startup_trials == startup
    fixed = SearchConfig(num_samples=samples, startup_trials=3)
    assert sampler(fixed, space)._n_startup_trials == 3
    baseline = SearchConfig(sampler="random")
    assert isinstance(sampler(baseline, space), optuna.samplers.RandomSampler)


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
