"""One experiment: phase 1 and the source-only and AdaBN baselines (cached and shared by every
run with the same phase-1 fields), then phase 2; results written next to the resolved config."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from regda_dist import config as C
from regda_dist.data.datasets import ImagesOnly, TaskData, build_task
from regda_dist.engine import checkpoint
from regda_dist.engine.console import ConsoleLogger, say
from regda_dist.engine.evaluate import EVAL_VERSION
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.tensorboard import NUM_IMAGES, TensorBoardLogger, draw_predictions
from regda_dist.engine.trainer import Trainer, seed_everything
from regda_dist.proxies import auto_proxy

ADAPT_CHECKPOINT = "adapt.ckpt"  # phase 2's epoch checkpoint in the run folder
PREDICTIONS = "target_val_coords.pt"  # target val argmax of source-only, last, selected epoch


class RunExistsError(RuntimeError):
    """The run folder holds a finished or foreign result; nothing is overwritten."""


def prepare_run_dir(run_dir: Path, cfg: C.Config, resume: bool) -> None:
    """Create the run folder and write the resolved config (after check_run_dir)."""
    check_run_dir(run_dir, cfg, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    C.save(cfg, run_dir / "config.yaml")


def check_run_dir(run_dir: Path, cfg: C.Config, resume: bool) -> None:
    """Refuse a finished run, an unfinished one without resume, or a resume with another config."""
    if (run_dir / "result.json").exists():
        raise RunExistsError(f"{run_dir} holds a finished run; choose another --name")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise RunExistsError(f"{run_dir} holds an unfinished run; pass --resume to continue it")
        try:
            saved = C.load(run_dir / "config.yaml")  # the strict loader: one-line errors
        except C.ConfigError as err:
            raise RunExistsError(f"cannot --resume: {err}") from None
        if saved.to_dict() != cfg.to_dict():
            raise RunExistsError(f"{run_dir}/config.yaml differs from this config; cannot --resume")


class JsonlLogger:
    """Callback: one JSON line per evaluation event."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, phase: str, epoch: int, metrics: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"phase": phase, "epoch": epoch, **metrics}) + "\n")


def phase1_folder(cfg: C.Config) -> Path:
    """The shared phase-1 cache of this config: keyed by every field phase 1 depends on."""
    return Path(cfg.train.output_dir) / ".cache" / "pretrain" / cfg.pretrain_key()


def phase1_cached(cfg: C.Config) -> bool:
    folder = phase1_folder(cfg)  # model.pt is written first, then info.json: a hit needs both
    return (folder / "model.pt").is_file() and (folder / "info.json").is_file()


def check_checkpoints(cfg: C.Config, run_dir: Path | None = None) -> None:
    """Every checkpoint the run will read (the phase-1 cache; on resume, run_dir's adapt.ckpt)
    must load: a damaged one is one line naming it, before anything is written or trained."""
    folder = phase1_folder(cfg)
    files = [folder / ("model.pt" if phase1_cached(cfg) else "checkpoint.pt")]
    if run_dir is not None:
        files.append(run_dir / ADAPT_CHECKPOINT)
    for file in files:
        if file.is_file():
            checkpoint.load(file)


def pretrained_source(trainer: Trainer) -> tuple[torch.nn.Module, dict]:
    """Phase 1, or its cached result (phase1_folder)."""
    folder = phase1_folder(trainer.cfg)
    weights, info_file = folder / "model.pt", folder / "info.json"
    model = trainer.build_phase1_model()
    folder.mkdir(parents=True, exist_ok=True)
    # One computation per key at a time (concurrent trials of a search share it): rank 0 holds
    # the lock, every rank waiting for it together. Rank 0 decides for every worker: ranks
    # that saw the cache differently would run different collectives.
    with phase1_lock(folder, trainer.runtime):
        if trainer.runtime.comm.agree(phase1_cached(trainer.cfg)):
            model.load_state_dict(checkpoint.load(weights))
            return model.eval(), {**json.loads(info_file.read_text()), "cached": True}
        return _pretrain(trainer, folder, weights, info_file)


LOCK_POLL_S = 10.0  # far below any collective timeout (gloo 30 min, NCCL 10 min by default)


@contextmanager
def phase1_lock(folder: Path, runtime: Runtime) -> Iterator[None]:
    """The phase-1 cache lock of `folder`, held by rank 0 while every rank waits together:
    rank 0 tries for LOCK_POLL_S at a time and all ranks agree on each try, so no rank sits in
    a collective longer than that while another run computes this phase 1 (an hour, maybe)."""
    lock = FileLock(folder / ".lock") if runtime.is_main else None
    while not runtime.comm.agree(_acquired(lock)):
        pass
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _acquired(lock: FileLock | None) -> bool:
    """Whether rank 0 took the lock within LOCK_POLL_S (other ranks: no lock, no say)."""
    if lock is None:
        return False
    try:
        lock.acquire(timeout=LOCK_POLL_S)
    except Timeout:
        return False
    return True


def _pretrain(trainer: Trainer, folder: Path, weights: Path, info_file: Path):
    start = time.time()
    model, info = trainer.pretrain(folder / "checkpoint.pt", labelled="source")
    info["seconds"] = time.time() - start
    if trainer.runtime.is_main:
        checkpoint.save(model.state_dict(), weights)
        _write_json(info_file, info)  # model.pt first, then info.json: a hit needs both
    return model, {**info, "cached": False}


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)  # atomic: a reader sees all of it or nothing


def baselines_file(cfg: C.Config) -> Path:
    """Where the baselines of a phase-1 model live: beside it, keyed by what evaluation reads."""
    t = cfg.train
    setup = [EVAL_VERSION, t.proxies, t.eval_batch_size, t.pck_normalize, t.precision, t.seed]
    key = hashlib.sha256(json.dumps(setup).encode()).hexdigest()[:12]
    return phase1_folder(cfg) / f"baselines-{key}.json"


def baseline_weights(cfg: C.Config, name: str) -> Path:
    """The weights of baseline `name` (source_only: phase 1's model; adabn: with the target's
    BatchNorm statistics), in the phase-1 cache."""
    if name == "source_only":
        return phase1_folder(cfg) / "model.pt"
    return baselines_file(cfg).with_suffix(".adabn.pt")


def baselines(trainer: Trainer, source_model: torch.nn.Module) -> tuple[dict, torch.Tensor]:
    """Source-only and AdaBN metrics of the phase-1 model, and the source-only model's target
    val predictions: they depend on phase 1 alone, so they are computed once and cached beside
    it, with AdaBN's weights (a candidate `export` may write). AdaBN re-estimates BatchNorm on
    the target train images without augmentation, in a seeded random order, for the target;
    the source is evaluated with phase 1's statistics."""
    file = baselines_file(trainer.cfg)
    coords_file = file.with_suffix(".coords.pt")
    weights = baseline_weights(trainer.cfg, "adabn")
    if trainer.runtime.comm.agree(all(f.is_file() for f in (file, coords_file, weights))):
        return json.loads(file.read_text()), checkpoint.load(coords_file)["coords"]
    if trainer.runtime.is_main:
        say("source-only and AdaBN baselines: evaluating once (cached beside phase 1)")
    out = {"source_only": trainer.eval_metrics(source_model)}
    coords = trainer.target_coords
    adapted = trainer.eval.adabn(source_model, trainer.task.target_train, trainer.cfg.train.seed)
    out["adabn"] = trainer.evaluate({"source": source_model, "target": adapted})
    if trainer.runtime.is_main:  # the JSON last: its presence means the other files exist
        checkpoint.save({"coords": coords}, coords_file)
        checkpoint.save(adapted.state_dict(), weights)
        _write_json(file, out)
    return out, coords


def pretrain_only(cfg: C.Config, runtime: Runtime | None = None) -> dict:
    """Phase 1 and its baselines into the shared cache (a search computes them once per task
    before its trials)."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    trainer = Trainer(cfg, build_task(cfg.data), runtime)
    if trainer.runtime.is_main:
        trainer.add_callback("on_eval", ConsoleLogger({"pretrain": cfg.pretrain.epochs}))
    model, info = pretrained_source(trainer)
    baselines(trainer, model)
    return info


def run_here(cfg: C.Config, run_dir: Path, resume: bool = False, callbacks=()) -> dict:
    """In this process: prepare the run folder, then execute."""
    prepare_run_dir(run_dir, cfg, resume)
    return execute(cfg, run_dir, callbacks=callbacks)


def execute(
    cfg: C.Config,
    run_dir: Path,
    runtime: Runtime | None = None,
    callbacks=(),
    task: TaskData | None = None,
    hparams: dict | None = None,
    hparam_columns: list[str] | None = None,
) -> dict:
    """Phase 1 (or its cache), baselines, phase 2 in a prepared run folder. Resumes from the
    folder's checkpoints; rank 0 writes model.pt, result.json, TensorBoard. Returns the result.
    hparams: a trial's parameters; hparam_columns: its search's whole space (TensorBoard's
    HParams columns)."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    task = task or build_task(cfg.data)
    trainer = Trainer(cfg, task, runtime)
    if trainer.runtime.is_main:
        trainer.add_callback("on_eval", JsonlLogger(run_dir / "metrics.jsonl"))
        total = {"pretrain": cfg.pretrain.epochs, "adapt": cfg.regda.epochs}
        label = f"trial {run_dir.parent.name}" if hparams is not None else ""  # a search's
        trainer.add_callback("on_eval", ConsoleLogger(total, cfg.train.select_metric, label))
    tb = None
    if trainer.runtime.is_main and cfg.train.tensorboard:
        tb = TensorBoardLogger(run_dir / "tb")
        # the HParams row exists from the start (a trial stopped early shows its last values);
        # without named hyperparameters (a plain run), the default search space's knobs
        values = hparams if hparams is not None else {k: C.get(cfg, k) for k in C.DEFAULT_SPACE}
        tags = ["source/pck", "oracle/target_pck", *(f"proxy/{p}" for p in cfg.train.proxies)]
        columns = {k: C.get(cfg, k) for k in hparam_columns or ()}
        tb.start_session(values, tags, columns)
        trainer.add_callback("on_eval", tb)
    for fn in callbacks:
        trainer.add_callback("on_eval", fn)
    source_model, pretrain_info = pretrained_source(trainer)
    t = cfg.train
    measured, source_coords = baselines(trainer, source_model)
    result = {
        "pck": {"threshold": t.pck_threshold, "normalize": t.pck_normalize},  # how to read PCK
        "pretrain": pretrain_info,
        **measured,
        "baseline_weights": {name: str(baseline_weights(cfg, name)) for name in C.BASELINES},
    }
    if tb is not None:  # epoch 0 of the adaptation curves: the source-only model
        tb(phase="adapt", epoch=0, metrics=result["source_only"])
    if cfg.adapt.method in C.BASELINES:  # no phase 2: the run is that baseline
        return _baseline_run(trainer, run_dir, result, source_coords, tb)
    seed_everything(cfg.train.seed)
    start = time.time()
    model = trainer.adapt(source_model.state_dict(), run_dir / ADAPT_CHECKPOINT)
    result["regda"] = {**trainer.last_eval, "seconds": time.time() - start}  # the last epoch's
    result["method"] = method_label(cfg)
    selected = trainer.selected
    if selected is not None:  # train.select_metric: the epoch it chose, its weights in model.pt
        result["selected"] = {k: selected[k] for k in ("epoch", "metric", "value", "metrics")}
    result["candidates"] = candidates(result, selection_metric(cfg, task))
    if tb is not None:
        _tensorboard_images(tb, task, (source_model, model), cfg.regda.epochs)
    if trainer.runtime.is_main:  # result.json last: its presence means the run is complete
        # model.pt: the epoch the run reports (the selected one, as `export` names it; the last
        # without selection); last.pt: the last epoch's where a selection was made
        coords = {"source_only": source_coords, "last": trainer.target_coords}
        weights = model.state_dict()
        if selected is not None:
            checkpoint.save(weights, run_dir / "last.pt")
            coords["selected"], weights = selected["coords"], selected["weights"]
        checkpoint.save(weights, run_dir / "model.pt")
        checkpoint.save(coords, run_dir / PREDICTIONS)
        (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _baseline_run(trainer: Trainer, run_dir: Path, result: dict, coords, tb) -> dict:
    """A run of adapt.method source_only or adabn: its results are the baseline's, its
    model.pt the baseline's weights (from the phase-1 cache)."""
    cfg, name = trainer.cfg, trainer.cfg.adapt.method
    result.update(regda=result[name], method=method_label(cfg))
    result["candidates"] = candidates(result, selection_metric(cfg, trainer.task))
    if tb is not None:
        tb.end_session()
        tb.close()
    if trainer.runtime.is_main:
        shutil.copy2(baseline_weights(cfg, name), run_dir / "model.pt")
        checkpoint.save({"source_only": coords}, run_dir / PREDICTIONS)
        (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def method_label(cfg: C.Config) -> str:
    """The adapted model as users read it: its method, and which model a teacher method
    evaluates and exports."""
    names = {"regda": "RegDA", "mean_teacher": "mean teacher", "regda+mean_teacher": "RegDA+MT",
             "source_only": "source-only", "adabn": "AdaBN"}  # fmt: skip
    name = names[cfg.adapt.method]
    return f"{name} (teacher)" if "mean_teacher" in cfg.adapt.method else name


CANDIDATES = ("source_only", "adabn", "adapted")  # in the order ties are broken (the later)


def selection_metric(cfg: C.Config, task: TaskData) -> str:
    """What a run compares its candidates by: train.select_metric, else the proxy 'auto'
    stands for on this keypoint set (pose_prior with bones, else source_pck)."""
    has_bones = bool(task.spec.skeleton)
    return cfg.train.select_metric or f"proxy/{auto_proxy(has_bones, cfg.train.proxies)}"


def candidates(result: dict, metric: str) -> dict:
    """The run's answer by `metric` among source-only, AdaBN and the adapted model (its selected
    epoch where it selected one, else its last): {"metric", "values", "best"}. NaN never wins;
    a tie goes to the later of CANDIDATES (with no evidence either way, the one that used more
    of the target data)."""
    adapted = result["selected"]["metrics"] if "selected" in result else result["regda"]
    metrics = {"source_only": result["source_only"], "adabn": result["adabn"], "adapted": adapted}
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
