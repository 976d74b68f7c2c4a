"""Ray Tune + Optuna search: each trial is a function (the "train driver") that runs RegDA with
Ray Train (TorchTrainer.fit) on its sampled configuration, and reports to Tune.

Folder of a search (train.output_dir/<name>):
    search.yaml                the resolved run config and search block (what --resume checks)
    optuna.db                  the Optuna study of every group (SQLite unless search.storage)
    <group>/tune/              Tune's experiment state (Tuner.restore reads it)
    <group>/trials/<trial_id>/ params.json (+ joint.json) and a run folder per task:
                 <task>/       config.yaml, metrics.jsonl, result.json, model.pt,
                               selected.pt, target_val_coords.pt, tb/
A group is one task (mode per_task) or "joint". Phase 1 depends on no searched adaptation field:
it is computed once per task before the trials start and read from the shared cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from regda_dist import config as C
from regda_dist.distributed import train
from regda_dist.engine import run as R
from regda_dist.engine.trainer import best_logs
from regda_dist.proxies import create_proxy, relative
from regda_dist.search.folder import load_trials
from regda_dist.search.spec import (
    Search,
    SearchConfig,
    apply_params,
    asha_rungs,
    default_point,
    storage_url,
    study_name,
)


class SearchError(RuntimeError):
    """The search could not run or every trial failed; the message is one line."""


class SearchInterrupted(RuntimeError):
    """The search was stopped (Ctrl-C) before every trial finished; --resume continues it."""


def tune_space(space: dict) -> dict:
    """The YAML space as Tune domains (OptunaSearch converts them to Optuna distributions)."""
    make = {
        "loguniform": lambda a: tune.loguniform(*a),
        "uniform": lambda a: tune.uniform(*a),
        "randint": lambda a: tune.randint(*a),
        "choice": tune.choice,
        "grid": tune.choice,  # enumerated by Optuna's GridSampler
    }
    return {key: make[kind](args) for key, spec in space.items() for kind, args in spec.items()}


def sampler(settings: SearchConfig, space: dict) -> optuna.samplers.BaseSampler:
    """GridSampler for a grid; else TPE, seeded. With concurrent trials, TPE models the
    parameters jointly (multivariate) and treats running trials as bad (constant liar), so
    concurrent suggestions spread out instead of repeating each other."""
    if all("grid" in spec for spec in space.values()):
        grid = {key: spec["grid"] for key, spec in space.items()}
        return optuna.samplers.GridSampler(grid, seed=settings.seed)
    concurrent = settings.max_concurrent > 1
    with warnings.catch_warnings():  # both options are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=settings.seed, multivariate=concurrent, constant_liar=concurrent
        )


class EarlyStopAwareOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch tells Optuna a trial that ASHA stopped early is COMPLETE with its early
    value, so TPE and the parameter importances mix values of different epochs. Here such a
    trial is PRUNED (its values per epoch are intermediate values); only a trial that reached
    `last_epoch` completes with its value."""

    def __init__(self, *args, last_epoch: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_epoch = last_epoch

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or self._metric not in result:
            return
        with warnings.catch_warnings():  # a resumed trial may repeat an epoch it reported
            warnings.simplefilter("ignore")
            self._ot_trials[trial_id].report(result[self._metric], step=int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        stopped = not error and result and result.get("epoch", 0) < self._last_epoch
        if not stopped or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def groups(search: Search) -> dict[str, dict[str, C.Config]]:
    """{group: {task: config}}: one group per task (per_task) or one for all (joint)."""
    if search.settings.mode == "joint":
        return {"joint": search.tasks}
    return {name: {name: cfg} for name, cfg in search.tasks.items()}


def check_new_study(search: Search, search_dir: Path) -> None:
    """A new search must not join a study of the same name in a shared storage (the default
    SQLite file lives in the new, empty search folder: nothing to join)."""
    if not search.settings.storage:
        return
    taken = {st.study_name for st in open_storage(search.settings, search_dir).get_all_studies()}
    for group in groups(search):
        if study_name(search_dir, group) in taken:
            raise C.ConfigError(
                f"the Optuna storage already holds a study {study_name(search_dir, group)!r}; "
                "choose another --name"
            )


def open_storage(settings: SearchConfig, search_dir: Path) -> optuna.storages.RDBStorage:
    try:
        return optuna.storages.RDBStorage(storage_url(settings, search_dir))
    except Exception as err:  # SQLAlchemy: bad URL, missing driver, unreachable database
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise C.ConfigError(f"search.storage {settings.storage!r}: {first}") from None


# ------------------------------------------------------------------------------------------
# The train driver: one Tune trial


def trial_driver(params: dict, spec: dict) -> None:
    trial_dir = Path(spec["group_dir"]) / "trials" / tune.get_context().get_trial_id()
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "params.json").write_text(json.dumps(params, indent=2))
    tasks = {name: apply_params(C.from_dict(d), params) for name, d in spec["tasks"].items()}
    if spec["mode"] == "per_task":
        ((name, cfg),) = tasks.items()
        _run(cfg, trial_dir / name, params, spec, report=True)
        return
    per_task = {}
    for name, cfg in tasks.items():
        result = _run(cfg, trial_dir / name, params, spec, report=False)
        selected, proxy = result["selected"], create_proxy(spec["metric"])
        baseline = result["source_only"][selected["metric"]]
        per_task[name] = {
            "value": selected["value"],
            "epoch": selected["epoch"],
            "source_only": baseline,
            "normalised": relative(proxy, selected["value"], baseline),
            "oracle/target_pck": selected["metrics"].get("oracle/target_pck", float("nan")),
        }
    joint = {
        "joint/objective": sum(t["normalised"] for t in per_task.values()) / len(per_task),
        **{f"{n}/{k}": v for n, t in per_task.items() for k, v in t.items()},
        "epoch": max(cfg.regda.epochs for cfg in tasks.values()),
    }
    (trial_dir / "joint.json").write_text(json.dumps(joint, indent=2))
    tune.report(joint)


def _run(cfg: C.Config, run_dir: Path, params: dict, spec: dict, report: bool) -> dict:
    """One task of a trial with Ray Train; a run that finished before an interruption is read."""
    done = run_dir / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if report:
            best = best_logs(result["selected"])
            tune.report({**best, **result["regda"], "epoch": cfg.regda.epochs})
        return result
    callbacks = [TuneReportCallback()] if report else None
    return train.fit(cfg, run_dir, resume=True, fixed_size=spec["fixed_size"],
                     callbacks=callbacks, hparams=params)  # fmt: skip


# ------------------------------------------------------------------------------------------
# The search


def check_capacity(search: Search) -> None:
    """Refuse concurrency the cluster can never place (RAY_NOTES: the CPU deadlock)."""
    cpus = ray.cluster_resources().get("CPU", 0)
    s = search.settings
    for name, cfg in search.tasks.items():
        train.check_resources(cfg.scaling)
        need = s.max_concurrent * (
            s.driver_cpus + cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
        )
        if need > cpus + 1e-9:
            raise C.ConfigError(
                f"search: {s.max_concurrent} concurrent trial(s) of {name} need {need:g} CPUs "
                f"(driver {s.driver_cpus:g} + workers) but the cluster has {cpus:g}; lower "
                "search.max_concurrent or scaling.cpus_per_worker"
            )


def precompute_phase1(search: Search, search_dir: Path, fixed_size: bool) -> None:
    """Phase 1 of every task, once, into the shared cache, before any trial starts."""
    for name, cfg in search.tasks.items():
        if R.phase1_cached(cfg):
            continue
        print(f"phase 1 (source only) of {name}: computing once for all trials", flush=True)
        if fixed_size:
            cfg = phase1_scaling(cfg, ray.cluster_resources().get("CPU", 0))
        train.fit(cfg, search_dir / ".phase1" / name / cfg.pretrain_key(), resume=True,
                  fixed_size=fixed_size, phase="pretrain")  # fmt: skip


def phase1_scaling(cfg: C.Config, cpus: float) -> C.Config:
    """Phase 1 runs alone, before any trial: on the embedded (one-node) cluster each CPU worker
    takes its share of the node's CPUs, whole ones, with as many torch threads, where the trials'
    own share is smaller (trials sized to run two at a time would leave cores idle). Neither
    field is part of phase 1's cache key: the same model comes out."""
    s = cfg.scaling
    share = int(cpus // s.num_workers)
    if s.use_gpu or share <= s.cpus_per_worker:
        return cfg
    return dataclasses.replace(
        cfg,
        scaling=dataclasses.replace(s, cpus_per_worker=float(share)),
        train=dataclasses.replace(cfg.train, num_threads=share),
    )


def make_scheduler(settings: SearchConfig, tasks: dict[str, C.Config]):
    """ASHA on the epoch, its first rung once the warm-start lambda has risen (asha_rungs), or
    FIFO."""
    if settings.scheduler_name != "asha":
        return FIFOScheduler()
    grace, max_t, rungs = asha_rungs(settings, tasks)
    print(
        f"ASHA judges trials at epochs {rungs or 'none'} (first rung: warm-start lambda at "
        f"{settings.warmup_share:.0%} of its rise, or search.grace_period)",
        flush=True,
    )
    return ASHAScheduler(
        time_attr="epoch",
        max_t=max_t,
        grace_period=grace,
        reduction_factor=settings.reduction_factor,
    )


def _tuner(search: Search, search_dir: Path, group: str, tasks: dict, fixed_size: bool):
    s = search.settings
    group_dir = (search_dir / group).resolve()
    spec = {
        "group_dir": str(group_dir),
        "tasks": {n: train.absolute_output_dir(c).to_dict() for n, c in tasks.items()},
        "mode": s.mode,
        "metric": s.metric,
        "fixed_size": fixed_size,
    }
    trainable = tune.with_resources(
        tune.with_parameters(trial_driver, spec=spec), {"cpu": s.driver_cpus}
    )
    # what Tune prints of a finished trial: its epoch, selection value and the oracle
    trainable._progress_metrics = ["epoch", s.objective, "best/epoch", "oracle/target_pck"]
    path = group_dir / "tune"
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True)
    scheduler = make_scheduler(s, tasks)
    grid = all("grid" in spec for spec in search.space.values())  # GridSampler: every point once
    first = None
    if s.start_from_defaults and not grid:
        first = default_point(next(iter(tasks.values())), search.space)
    searcher = EarlyStopAwareOptunaSearch(
        points_to_evaluate=[first] if first else None,
        sampler=sampler(s, search.space),
        study_name=study_name(search_dir, group),
        storage=open_storage(s, search_dir),
        last_epoch=max(c.regda.epochs for c in tasks.values()),
    )
    return tune.Tuner(
        trainable,
        param_space=tune_space(search.space),
        tune_config=tune.TuneConfig(
            metric=s.objective,
            mode="max",
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=s.num_samples,
            max_concurrent_trials=s.max_concurrent,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(group_dir),
            callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],  # TensorBoard: the trials'
            failure_config=tune.FailureConfig(max_failures=0),  # Train retries the workers
            verbose=1,
        ),
    )


def run_search(search: Search, search_dir: Path, fixed_size: bool = True) -> dict:
    """Every group's search on the connected Ray cluster; returns {group: summary}."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no second TensorBoard per trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    precompute_phase1(search, search_dir, fixed_size)
    grids = {}
    for group, tasks in groups(search).items():
        grids[group] = grid = _tuner(search, search_dir, group, tasks, fixed_size).fit()
        finished = grid.num_terminated + grid.num_errors
        if finished < search.settings.num_samples:  # Tune returns normally after a Ctrl-C
            raise SearchInterrupted(
                f"search interrupted in {group}: {finished} of {search.settings.num_samples} "
                "trials finished"
            )
    summary = summarise(search, search_dir, grids)
    if all(g["completed"] == 0 for g in summary.values()):
        first = next((g["first_error"] for g in summary.values() if g["first_error"]), "")
        raise SearchError(f"no trial completed: {first or 'see the trial logs'}")
    return summary


def summarise(search: Search, search_dir: Path, grids: dict) -> dict:
    """Per group: trials, completed (every epoch), stopped early, failed, and the best completed
    trial by the objective: the same trials `export` and `report` can pick (search/folder.py)."""
    from regda_dist.search.export import ranking

    folders = load_trials(search_dir) if any(search_dir.glob("*/trials/*/params.json")) else {}
    summary = {}
    for group, grid in grids.items():
        errors = [r.error for r in grid if r.error is not None]
        trials = folders.get(group, [])
        ranked = ranking(trials, search.settings.objective)
        summary[group] = {
            "trials": len(grid),
            "completed": sum(t.complete for t in trials),
            "stopped_early": len(grid) - len(errors) - sum(t.complete for t in trials),
            "errored": len(errors),
            "best_trial": ranked[0][1].trial_id if ranked else None,
            "best_value": ranked[0][0] if ranked else None,
            "first_error": train._root_cause(errors[0]) if errors else "",
        }
    return summary
