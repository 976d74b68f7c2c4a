"""Ray Tune + Optuna search: each trial is a function (the "train driver") that runs RegDA with
Ray Train (TorchTrainer.fit) on its sampled configuration, and reports to Tune.

Folder of an experiment (train.output_dir/<name>):
    experiment.yaml            the resolved run config and search block (what --resume checks)
    optuna.db                  the Optuna study of every group (SQLite unless search.storage)
    <group>/tune/              Tune's experiment state (Tuner.restore reads it)
    <group>/trials/<trial_id>/ params.json (+ joint.json) and a run folder per task:
                 <task>/       config.yaml, metrics.jsonl, result.json, model.pt, tb/
A group is one task (mode per_task) or "joint". Phase 1 depends on no searched adaptation field:
it is computed once per task before the trials start and read from the shared cache.
"""

from __future__ import annotations

import json
import math
import os
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
from regda_dist.engine import experiment as E
from regda_dist.proxies import create_proxy, relative
from regda_dist.search_space import (
    Experiment,
    SearchConfig,
    apply_params,
    default_point,
    storage_url,
    study_name,
)


class SearchError(RuntimeError):
    """The search could not run or every trial failed; the message is one line."""


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


def sampler(search: SearchConfig, space: dict) -> optuna.samplers.BaseSampler:
    if all("grid" in spec for spec in space.values()):
        grid = {key: spec["grid"] for key, spec in space.items()}
        return optuna.samplers.GridSampler(grid, seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed)


def groups(exp: Experiment) -> dict[str, dict[str, C.Config]]:
    """{group: {task: config}}: one group per task (per_task) or one for all (joint)."""
    if exp.search.mode == "joint":
        return {"joint": exp.tasks}
    return {name: {name: cfg} for name, cfg in exp.tasks.items()}


def check_new_study(exp: Experiment, exp_dir: Path) -> None:
    """A new search must not join a study of the same name in a shared storage (the default
    SQLite file lives in the new, empty search folder: nothing to join)."""
    if not exp.search.storage:
        return
    taken = {st.study_name for st in open_storage(exp.search, exp_dir).get_all_studies()}
    for group in groups(exp):
        if study_name(exp_dir, group) in taken:
            raise C.ConfigError(
                f"the Optuna storage already holds a study {study_name(exp_dir, group)!r}; "
                "choose another --name"
            )


def open_storage(search: SearchConfig, exp_dir: Path) -> optuna.storages.RDBStorage:
    try:
        return optuna.storages.RDBStorage(storage_url(search, exp_dir))
    except Exception as err:  # SQLAlchemy: bad URL, missing driver, unreachable database
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise C.ConfigError(f"search.storage {search.storage!r}: {first}") from None


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
        key, proxy = f"proxy/{spec['metric']}", create_proxy(spec["metric"])
        per_task[name] = {
            "value": result["regda"][key],
            "source_only": result["source_only"][key],
            "normalised": relative(proxy, result["regda"][key], result["source_only"][key]),
            "oracle/target_pck": result["regda"].get("oracle/target_pck", float("nan")),
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
            tune.report({**result["regda"], "epoch": cfg.regda.epochs})
        return result
    callbacks = [TuneReportCallback()] if report else None
    return train.fit(cfg, run_dir, resume=True, fixed_size=spec["fixed_size"],
                     callbacks=callbacks, hparams=params)  # fmt: skip


# ------------------------------------------------------------------------------------------
# The search


def check_capacity(exp: Experiment) -> None:
    """Refuse concurrency the cluster can never place (RAY_NOTES: the CPU deadlock)."""
    cpus = ray.cluster_resources().get("CPU", 0)
    s = exp.search
    for name, cfg in exp.tasks.items():
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


def precompute_phase1(exp: Experiment, exp_dir: Path, fixed_size: bool) -> None:
    """Phase 1 of every task, once, into the shared cache, before any trial starts."""
    for name, cfg in exp.tasks.items():
        if E.phase1_cached(cfg):
            continue
        print(f"phase 1 (source only) of {name}: computing once for all trials", flush=True)
        train.fit(cfg, exp_dir / ".phase1" / name / cfg.pretrain_key(), resume=True,
                  fixed_size=fixed_size, phase="pretrain")  # fmt: skip


def _tuner(exp: Experiment, exp_dir: Path, group: str, tasks: dict, fixed_size: bool):
    s = exp.search
    group_dir = (exp_dir / group).resolve()
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
    path = group_dir / "tune"
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True)
    if s.scheduler_name == "asha":
        # max_t one past the last epoch: ASHA then never stops a trial that is ending anyway
        # (a stop kills the Train run; a trial that returns releases its workers cleanly)
        max_t = max(c.regda.epochs for c in tasks.values()) + 1
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=s.grace_period,
                                  reduction_factor=s.reduction_factor)  # fmt: skip
    else:
        scheduler = FIFOScheduler()
    grid = all("grid" in spec for spec in exp.space.values())  # GridSampler: every point once
    first = None
    if s.start_from_defaults and not grid:
        first = default_point(next(iter(tasks.values())), exp.space)
    searcher = OptunaSearch(
        points_to_evaluate=[first] if first else None,
        sampler=sampler(s, exp.space),
        study_name=study_name(exp_dir, group),
        storage=open_storage(s, exp_dir),
    )
    return tune.Tuner(
        trainable,
        param_space=tune_space(exp.space),
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


def run_search(exp: Experiment, exp_dir: Path, fixed_size: bool = True) -> dict:
    """Every group's search on the connected Ray cluster; returns {group: summary}."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no second TensorBoard per trial
    precompute_phase1(exp, exp_dir, fixed_size)
    summary = {}
    for group, tasks in groups(exp).items():
        grid = _tuner(exp, exp_dir, group, tasks, fixed_size).fit()
        summary[group] = _summarise(grid, exp.search.objective)
    if all(g["completed"] == 0 for g in summary.values()):
        first = next((g["first_error"] for g in summary.values() if g["first_error"]), "")
        raise SearchError(f"no trial completed: {first or 'see the trial logs'}")
    return summary


def _summarise(grid, objective: str) -> dict:
    errors = [r.error for r in grid if r.error is not None]
    values = [
        (r.metrics.get(objective), r.metrics.get("trial_id"))
        for r in grid
        if r.error is None and r.metrics and isinstance(r.metrics.get(objective), float)
    ]
    values = [(v, t) for v, t in values if not math.isnan(v)]
    best = max(values, default=(None, None))
    return {
        "trials": len(grid),
        "completed": len(values),
        "errored": len(errors),
        "best_trial": best[1],
        "best_value": best[0],
        "first_error": train._root_cause(errors[0]) if errors else "",
    }
