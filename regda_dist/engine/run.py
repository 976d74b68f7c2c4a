"""One experiment in a run folder (folders.RunFolder): phase 1 and its baselines (cached and
shared: engine/phase1.py), then phase 2 by adapt.method; results written next to the resolved
config, result.json last."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from regda_dist import config as C
from regda_dist.config.migrate import adapted
from regda_dist.data.datasets import ImagesOnly, TaskData, build_task
from regda_dist.engine import checkpoint
from regda_dist.engine.build import seed_everything
from regda_dist.engine.console import ConsoleLogger
from regda_dist.engine.phase1 import baseline_files, baselines, check_cache, pretrained_source
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.tensorboard import NUM_IMAGES, TensorBoardLogger, draw_predictions
from regda_dist.engine.trainer import Trainer
from regda_dist.folders import RunFolder
from regda_dist.methods import bones_problem, default_space, get_method
from regda_dist.proxies import auto_proxy


class RunExistsError(RuntimeError):
    """The run folder holds a finished or foreign result; nothing is overwritten."""


def prepare_run_dir(run_dir: Path, cfg: C.Config, resume: bool) -> None:
    """Create the run folder and write the resolved config (after check_run_dir)."""
    check_run_dir(run_dir, cfg, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    C.save(cfg, RunFolder(run_dir).config)


def check_run_dir(run_dir: Path, cfg: C.Config, resume: bool) -> None:
    """Refuse a finished run, an unfinished one without resume, or a resume with another config."""
    run = RunFolder(run_dir)
    if run.result.exists():
        raise RunExistsError(f"{run_dir} holds a finished run; choose another --name")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise RunExistsError(f"{run_dir} holds an unfinished run; pass --resume to continue it")
        try:
            saved = C.load(run.config)  # the strict loader: one-line errors
        except C.ConfigError as err:
            raise RunExistsError(f"cannot --resume: {err}") from None
        if saved.to_dict() != cfg.to_dict():
            raise RunExistsError(f"{run_dir}/config.yaml differs from this config; cannot --resume")


def check_checkpoints(cfg: C.Config, run_dir: Path | None = None) -> None:
    """Every checkpoint the run will read (the phase-1 cache; on resume, the run's own) must
    load: a damaged one is one line naming it, before anything is written or trained."""
    check_cache(cfg)
    if run_dir is not None and RunFolder(run_dir).checkpoint.is_file():
        checkpoint.load(RunFolder(run_dir).checkpoint)


class JsonlLogger:
    """Callback: one JSON line per evaluation event."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, phase: str, epoch: int, metrics: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"phase": phase, "epoch": epoch, **metrics}) + "\n")


def run_here(cfg: C.Config, run_dir: Path, resume: bool = False, callbacks=()) -> dict:
    """In this process: prepare the run folder, then execute."""
    prepare_run_dir(run_dir, cfg, resume)
    return execute(cfg, run_dir, callbacks=callbacks)


def _loggers(trainer: Trainer, run: RunFolder, trial: dict | None):
    """Rank 0's callbacks: metrics.jsonl, the console and TensorBoard (returned: the run ends
    its session). `trial`: a search trial's hparams and its search's whole space
    (hparam_columns: TensorBoard's HParams columns)."""
    cfg = trainer.cfg
    trainer.add_callback("on_eval", JsonlLogger(run.metrics))
    total = {"pretrain": cfg.pretrain.epochs, "adapt": cfg.adapt.epochs}
    label = f"trial {run.path.parent.name}" if trial else ""  # a search's
    trainer.add_callback("on_eval", ConsoleLogger(total, cfg.train.select_metric, label))
    if not cfg.train.tensorboard:
        return None
    tb = TensorBoardLogger(run.tensorboard)
    # the HParams row exists from the start (a trial stopped early shows its last values);
    # without named hyperparameters (a plain run), the default search space's knobs
    hparams = trial["hparams"] if trial else {k: C.get(cfg, k) for k in default_space()}
    tags = ["source/pck", "oracle/target_pck", *(f"proxy/{p}" for p in cfg.train.proxies)]
    columns = {k: C.get(cfg, k) for k in (trial or {}).get("columns") or ()}
    tb.start_session(hparams, tags, columns)
    trainer.add_callback("on_eval", tb)
    return tb


def execute(
    cfg: C.Config,
    run_dir: Path,
    runtime: Runtime | None = None,
    callbacks=(),
    task: TaskData | None = None,
    trial: dict | None = None,
) -> dict:
    """Phase 1 (or its cache), baselines, phase 2 in a prepared run folder. Resumes from the
    folder's checkpoints; rank 0 writes model.pt, result.json, TensorBoard. Returns the result.
    trial: {"hparams": a search trial's parameters, "columns": its search's space}."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    task = task or build_task(cfg.data)
    if problem := bones_problem(cfg.adapt.method, task.spec):  # before phase 1, not after it
        raise C.ConfigError(problem)
    trainer = Trainer(cfg, task, runtime)
    run = RunFolder(run_dir)
    tb = _loggers(trainer, run, trial) if trainer.runtime.is_main else None
    for fn in callbacks:
        trainer.add_callback("on_eval", fn)
    source_model, pretrain_info = pretrained_source(trainer)
    t = cfg.train
    measured, source_coords = baselines(trainer, source_model)
    result = {
        "pck": {"threshold": t.pck_threshold, "normalize": t.pck_normalize},  # how to read PCK
        "pretrain": pretrain_info,
        **measured,
        "baseline_weights": baseline_files(cfg),
    }
    if tb is not None:  # epoch 0 of the adaptation curves: the source-only model
        tb(phase="adapt", epoch=0, metrics=result["source_only"])
    method = get_method(cfg.adapt.method)
    if method.baseline:  # no phase 2: the run is that baseline
        return _baseline_run(trainer, run, result, source_coords, tb)
    seed_everything(cfg.train.seed)
    start = time.time()
    out = trainer.adapt(source_model.state_dict(), run.checkpoint)
    result["adapted"] = {**out.last, "seconds": time.time() - start}  # the last epoch's
    result["method"] = method.shown_as
    selected = out.selected
    if selected is not None:  # train.select_metric: the epoch it chose, its weights in model.pt
        result["selected"] = {k: selected[k] for k in ("epoch", "metric", "value", "metrics")}
    result["candidates"] = candidates(result, selection_metric(cfg, task))
    if tb is not None:
        _tensorboard_images(tb, task, (source_model, out.model), cfg.adapt.epochs)
    if trainer.runtime.is_main:  # result.json last: its presence means the run is complete
        # model.pt: the epoch the run reports (the selected one, as `export` names it; the last
        # without selection); last.pt: the last epoch's where a selection was made
        coords = {"source_only": source_coords, "last": out.coords}
        weights = out.model.state_dict()
        if selected is not None:
            checkpoint.save(weights, run.last)
            coords["selected"], weights = selected["coords"], selected["weights"]
        checkpoint.save(weights, run.model)
        checkpoint.save(coords, run.predictions)
        run.result.write_text(json.dumps(result, indent=2))
    return result


def _baseline_run(trainer: Trainer, run: RunFolder, result: dict, coords, tb) -> dict:
    """A run of a baseline method (source_only, adabn): its results are the baseline's, its
    model.pt the baseline's weights (from the phase-1 cache)."""
    cfg, name = trainer.cfg, trainer.cfg.adapt.method
    result.update(adapted=result[name], method=get_method(name).shown_as)
    result["candidates"] = candidates(result, selection_metric(cfg, trainer.task))
    if tb is not None:
        tb.end_session()
        tb.close()
    if trainer.runtime.is_main:
        shutil.copy2(result["baseline_weights"][name], run.model)
        checkpoint.save({"source_only": coords}, run.predictions)
        run.result.write_text(json.dumps(result, indent=2))
    return result


CANDIDATES = ("source_only", "adabn", "adapted")  # in the order ties are broken (the later)


def selection_metric(cfg: C.Config, task: TaskData) -> str:
    """What a run compares its candidates by: train.select_metric, else the proxy 'auto'
    stands for on this keypoint set (pose_prior with bones, else source_pck)."""
    has_bones, blind = bool(task.spec.skeleton), get_method(cfg.adapt.method).blind_proxies
    return cfg.train.select_metric or f"proxy/{auto_proxy(has_bones, cfg.train.proxies, blind)}"


def answer_metrics(result: dict) -> dict:
    """The adapted model as a run reports it: its selected epoch where it selected one, else
    its last."""
    return result["selected"]["metrics"] if "selected" in result else adapted(result)


def candidates(result: dict, metric: str) -> dict:
    """The run's answer by `metric` among source-only, AdaBN and the adapted model (its selected
    epoch where it selected one, else its last): {"metric", "values", "best"}. NaN never wins;
    a tie goes to the later of CANDIDATES (with no evidence either way, the one that used more
    of the target data)."""
    metrics = {
        "source_only": result["source_only"],
        "adabn": result["adabn"],
        "adapted": answer_metrics(result),
    }
    values = {name: float(metrics[name].get(metric, float("nan"))) for name in CANDIDATES}
    finite = [name for name in CANDIDATES if values[name] == values[name]]
    best = max(reversed(finite), key=values.__getitem__) if finite else "adapted"
    return {"metric": metric, "values": values, "best": best}


def _tensorboard_images(tb, task, models, step: int) -> None:
    """Keypoints of the source-only and the adapted model on the same target images."""
    target = ImagesOnly(task.target_val)
    images = torch.stack([target[i] for i in range(min(NUM_IMAGES, len(target)))])
    rows = [draw_predictions(m, images, task.spec) for m in models]
    tb.keypoints("keypoints/target_val (top: source-only, bottom: adapted)", rows, step)
    tb.end_session()
    tb.close()
