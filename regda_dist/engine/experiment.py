"""One experiment: phase 1 (cached and shared by every run with the same phase-1 fields), the
source-only and AdaBN baselines, then phase 2; results written next to the resolved config."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from regda_dist import config as C
from regda_dist.data.datasets import TaskData, build_task
from regda_dist.engine import checkpoint
from regda_dist.engine.evaluate import adabn
from regda_dist.engine.trainer import Runtime, Trainer, seed_everything


class RunExistsError(RuntimeError):
    """The run folder holds a finished or foreign result; nothing is overwritten."""


def prepare_run_dir(run_dir: Path, cfg: C.Config, resume: bool) -> None:
    """Create the run folder; refuse to touch a finished run or an unfinished one without resume."""
    if (run_dir / "result.json").exists():
        raise RunExistsError(f"{run_dir} holds a finished run; choose another --name")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise RunExistsError(f"{run_dir} holds an unfinished run; pass --resume to continue it")
        saved = C.from_dict(json.loads(json.dumps(_read_yaml(run_dir / "config.yaml"))))
        if saved.to_dict() != cfg.to_dict():
            raise RunExistsError(f"{run_dir}/config.yaml differs from this config; cannot --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    C.save(cfg, run_dir / "config.yaml")


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


class JsonlLogger:
    """Callback: one JSON line per evaluation event."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, phase: str, epoch: int, metrics: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"phase": phase, "epoch": epoch, **metrics}) + "\n")


def pretrained_source(trainer: Trainer, cache_dir: Path) -> tuple[torch.nn.Module, dict]:
    """Phase 1, or its cached result: keyed by every field phase 1 depends on."""
    folder = cache_dir / "pretrain" / trainer.cfg.pretrain_key()
    weights, info_file = folder / "model.pt", folder / "info.json"
    model = trainer.build_model()
    if weights.is_file() and info_file.is_file():
        model.load_state_dict(checkpoint.load(weights))
        return model.eval(), {**json.loads(info_file.read_text()), "cached": True}
    start = time.time()
    model, info = trainer.pretrain(folder / "checkpoint.pt", labelled="source")
    info["seconds"] = time.time() - start
    if trainer.runtime.is_main:
        checkpoint.save(model.state_dict(), weights)
        info_file.write_text(json.dumps(info))
    return model, {**info, "cached": False}


def run(
    cfg: C.Config,
    run_dir: Path,
    task: TaskData | None = None,
    runtime: Runtime | None = None,
    resume: bool = False,
    callbacks=(),
) -> dict:
    """Phase 1 (or cache), baselines, phase 2. Returns and writes result.json."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    prepare_run_dir(run_dir, cfg, resume)
    seed_everything(cfg.train.seed)
    task = task or build_task(cfg.data)
    trainer = Trainer(cfg, task, runtime)
    trainer.add_callback("on_eval", JsonlLogger(run_dir / "metrics.jsonl"))
    for fn in callbacks:
        trainer.add_callback("on_eval", fn)
    source_model, pretrain_info = pretrained_source(trainer, Path(cfg.train.output_dir) / ".cache")
    result = {
        "pretrain": pretrain_info,
        "source_only": trainer.eval_metrics(source_model),
        "adabn": trainer.eval_metrics(adabn(source_model, task.target_train)),
    }
    seed_everything(cfg.train.seed)
    start = time.time()
    model = trainer.adapt(source_model.state_dict(), run_dir / "adapt.ckpt")
    result["regda"] = {**trainer.eval_metrics(model), "seconds": time.time() - start}
    if trainer.runtime.is_main:
        checkpoint.save(model.state_dict(), run_dir / "model.pt")
        (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result
