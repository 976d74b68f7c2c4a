"""Ray Tune + Optuna search: each trial is a function (the "train driver") that runs RegDA with
Ray Train (TorchTrainer.fit) on its sampled configuration, and reports to Tune.

The search folder (train.output_dir/<name>, folders.SearchFolder): search.yaml, the Optuna
study of every group, and per group Tune's state and a folder per trial (params.json, and a run
folder per task). A group is one task (mode per_task) or "joint". Phase 1 depends on no
searched adaptation field: it is computed once per task before the trials start and read from
the shared cache.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from regda_dist import config as C
from regda_dist.config.migrate import adapted
from regda_dist.distributed import capacity, cluster, train
from regda_dist.distributed.cluster import one_line
from regda_dist.distributed.scheduler import make_scheduler
from regda_dist.distributed.searcher import (
    EarlyStopAwareOptunaSearch,
    define_by_run,
    sampler,
    tune_space,
)
from regda_dist.engine.phase1 import phase1_cached
from regda_dist.engine.selection import best_logs
from regda_dist.folders import RunFolder, SearchFolder, TrialFolder
from regda_dist.proxies import create_proxy
from regda_dist.search import joint
from regda_dist.search.folder import load_trials
from regda_dist.search.settings import SearchConfig
from regda_dist.search.setup import storage_url, study_name
from regda_dist.search.space import METHOD, apply_params, default_points, startup_trials
from regda_dist.search.spec import Search


class SearchError(RuntimeError):
    """The search could not run or every trial failed; the message is one line."""


class SearchInterrupted(RuntimeError):
    """The search was stopped (Ctrl-C) before every trial finished; --resume continues it."""


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
        raise C.ConfigError(f"search.storage {settings.storage!r}: {one_line(err)}") from None


# ------------------------------------------------------------------------------------------
# The train driver: one Tune trial


def trial_driver(params: dict, spec: dict) -> None:
    trial = TrialFolder(Path(spec["trials_dir"]) / tune.get_context().get_trial_id())
    trial.path.mkdir(parents=True, exist_ok=True)
    trial.params.write_text(json.dumps(params, indent=2))
    tasks = {name: apply_params(C.from_dict(d), params) for name, d in spec["tasks"].items()}
    if spec["mode"] == "per_task":
        ((name, cfg),) = tasks.items()
        _run(cfg, trial.run(name), params, spec, report=True)
        return
    tune.report(_joint(trial, tasks, params, spec))


def _joint(trial: TrialFolder, tasks: dict[str, C.Config], params: dict, spec: dict) -> dict:
    """Every task of a joint trial in turn; its objective (search/joint.py) into joint.json."""
    per_task = {}
    for name, cfg in tasks.items():
        result = _run(cfg, trial.run(name), params, spec, report=False)
        selected = result.get("selected") or {}  # none: the metric was NaN at every epoch
        per_task[name] = {
            "value": selected.get("value", math.nan),
            "epoch": selected.get("epoch"),
            "source_only": result["source_only"].get(f"proxy/{spec['metric']}", math.nan),
            "oracle/target_pck": selected.get("metrics", {}).get("oracle/target_pck", math.nan),
        }
    unit = create_proxy(spec["metric"]).unit
    others = [  # the trials completed so far (search/joint.py: rescored at export)
        joint.per_task_of(json.loads(done.read_text()), list(tasks))
        for done in trial.path.parent.glob(f"*/{trial.joint.name}")
        if done.parent != trial.path
    ]
    for name, score in joint.task_scores(per_task, others, unit).items():
        per_task[name]["normalised"] = score
    result = {
        "joint/objective": joint.objective(per_task, others, unit),
        **{f"{n}/{k}": v for n, t in per_task.items() for k, v in t.items()},
        "unit": unit,
        "epoch": max(cfg.adapt.epochs for cfg in tasks.values()),
    }
    tmp = trial.path / ".joint.json.tmp"  # concurrent trials read it: all of it or nothing
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(trial.joint)
    return result


def _run(cfg: C.Config, run: RunFolder, params: dict, spec: dict, report: bool) -> dict:
    """One task of a trial with Ray Train; a run that finished before an interruption is read."""
    if run.result.is_file():
        result = json.loads(run.result.read_text())
        if report:
            selected = result.get("selected")
            best = best_logs(selected) if selected else {spec["objective"]: math.nan}
            tune.report({**best, **adapted(result), "epoch": cfg.adapt.epochs})
        return result
    callbacks = [TuneReportCallback()] if report else None
    trial = {"hparams": params, "columns": spec.get("columns")}
    # capacity: checked for the search's trials before any started (check_capacity)
    return train.fit(cfg, run.path, resume=True, callbacks=callbacks, trial=trial,
                     check_capacity=False)  # fmt: skip


# ------------------------------------------------------------------------------------------
# The search


def check_capacity(search: Search) -> None:
    """Refuse trials, or concurrency, the cluster can never place: CPUs and GPUs (RAY_NOTES:
    the CPU deadlock; trials beyond the GPUs would wait while Tune shows them running)."""
    s = search.settings
    for name, cfg in search.tasks.items():
        capacity.check(cfg.scaling, s.max_concurrent, s.driver_cpus, what=f"search: {name}")


def precompute_phase1(search: Search, search_dir: Path) -> None:
    """Phase 1 of every task, once, into the shared cache, before any trial starts."""
    for name, cfg in search.tasks.items():
        if phase1_cached(cfg):
            continue
        print(f"phase 1 (source only) of {name}: computing once for all trials", flush=True)
        if cluster.embedded():  # one machine: phase 1 alone may take every CPU
            cfg = phase1_scaling(cfg, ray.cluster_resources().get("CPU", 0))
        run_dir = SearchFolder(search_dir).phase1_run(name, cfg.pretrain_key())
        train.fit(cfg, run_dir, resume=True, phase="pretrain")


def phase1_scaling(cfg: C.Config, cpus: float) -> C.Config:
    """Phase 1 runs alone, before any trial: on the embedded (one-node) cluster each CPU worker
    takes its share of the node's CPUs, whole ones, with as many torch threads, where the trials'
    own share is smaller (trials sized to run two at a time would leave cores idle). Neither
    field is part of phase 1's cache key: they change its speed and, as another thread count
    sums floats in another order, the last bits of its weights, which training can grow (the likely
    reason a synth_hand phase 1 with 2 threads and one with 1 reached 43.1 and 43.3 target PCK
    source-only, benchmarks/results/method_search_task.md); whichever computes it first is the
    one cached."""
    s = cfg.scaling
    share = int(cpus // s.num_workers)
    if s.use_gpu or share <= s.cpus_per_worker:
        return cfg
    return dataclasses.replace(
        cfg,
        scaling=dataclasses.replace(s, cpus_per_worker=float(share)),
        train=dataclasses.replace(cfg.train, num_threads=share),
    )


def _tuner(search: Search, search_dir: Path, group: str, tasks: dict):
    s = search.settings
    folder = SearchFolder(search_dir.resolve())
    spec = {
        "trials_dir": str(folder.trials(group)),
        "tasks": {n: train.absolute_output_dir(c).to_dict() for n, c in tasks.items()},
        "mode": s.mode,
        "metric": s.metric,
        "objective": s.objective,
        "columns": sorted(search.space),  # TensorBoard's HParams table: every trial, every knob
    }
    trainable = tune.with_resources(
        tune.with_parameters(trial_driver, spec=spec), {"cpu": s.driver_cpus}
    )
    # what Tune prints of a finished trial: its epoch, selection value and the oracle
    trainable._progress_metrics = ["epoch", s.objective, "best/epoch", "oracle/target_pck"]
    path = folder.tune(group)
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True)
    scheduler = make_scheduler(s, tasks, search.space, folder.trials(group))
    grid = all("grid" in spec for spec in search.space.values())  # GridSampler: every point once
    first, own = [], next(iter(tasks.values()))
    if s.start_from_defaults and not grid:  # each method's, in a conditional space
        first = default_points(own, search.space)
    conditional = METHOD in search.space  # define-by-run: Tune gets no space of its own
    searcher = EarlyStopAwareOptunaSearch(
        space=define_by_run(search.space) if conditional else None,
        metric=s.objective if conditional else None,
        mode="max" if conditional else None,
        points_to_evaluate=first or None,
        sampler=sampler(
            s, search.space, startup_trials(own, search.space, s.tpe_startup, s.start_from_defaults)
        ),
        study_name=study_name(search_dir, group),
        storage=open_storage(s, search_dir),
        last_epoch=max(c.adapt.epochs for c in tasks.values()),
        trials_dir=folder.trials(group),
    )
    return tune.Tuner(
        trainable,
        param_space=None if conditional else tune_space(search.space),
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
            name=path.name,
            storage_path=str(path.parent),
            callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],  # TensorBoard: the trials'
            failure_config=tune.FailureConfig(max_failures=0),  # Train retries the workers
            verbose=1,
        ),
    )


def run_search(search: Search, search_dir: Path) -> dict:
    """Every group's search on the connected Ray cluster; returns {group: summary}."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no second TensorBoard per trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    precompute_phase1(search, search_dir)
    grids = {}
    for group, tasks in groups(search).items():
        grids[group] = grid = _tuner(search, search_dir, group, tasks).fit()
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
    """Per group: trials, completed (every epoch), stopped early, failed, the best completed
    trial by the objective, and the search's answer: that trial, or source-only or AdaBN where
    one scored better (what `export` and `report` pick: search/candidates.py)."""
    from regda_dist.search.candidates import ranked
    from regda_dist.search.export import ranking

    folders = load_trials(search_dir) if SearchFolder(search_dir).trial_folders() else {}
    summary = {}
    objective = search.settings.objective
    for group, grid in grids.items():
        errors = [train._root_cause(r.error) for r in grid if r.error is not None]
        trials = folders.get(group, [])
        # ran to the end without a value to select by: failed too (searcher.py told Optuna)
        errors += [f"{objective} has no value (NaN at every epoch)" for t in trials if t.failed]
        completed = sum(t.complete for t in trials)
        scored = ranking(trials, objective)
        answer = ranked(trials, scored, objective)[0] if scored else None
        summary[group] = {
            "trials": len(grid),
            "completed": completed,
            "stopped_early": len(grid) - len(errors) - completed,
            "errored": len(errors),
            "best_trial": scored[0][1].trial_id if scored else None,
            "best_value": scored[0][0] if scored else None,
            "answer": answer.name if answer else None,  # a baseline where one scored better
            "answer_value": answer.value if answer else None,
            "first_error": errors[0] if errors else "",
        }
    return summary
