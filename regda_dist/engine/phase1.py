"""Phase 1 and its source-only and AdaBN baselines: computed once per phase-1 key, cached
(folders.Phase1Cache) and shared by every run and trial with the same phase-1 fields."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from regda_dist import config as C
from regda_dist.data.datasets import build_task
from regda_dist.engine import checkpoint
from regda_dist.engine.build import seed_everything
from regda_dist.engine.console import ConsoleLogger, say
from regda_dist.engine.evaluate import EVAL_VERSION
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.trainer import Trainer
from regda_dist.folders import Phase1Cache, visible
from regda_dist.methods import baseline_names

LOCK_POLL_S = 10.0  # far below any collective timeout (gloo 30 min, NCCL 10 min by default)


def phase1_cache(cfg: C.Config) -> Phase1Cache:
    """The shared phase-1 cache of this config: keyed by every field phase 1 depends on."""
    return Phase1Cache.of(cfg.train.output_dir, cfg.pretrain_key())


def phase1_cached(cfg: C.Config) -> bool:
    return phase1_cache(cfg).complete()  # model.pt is written first, then info.json


def check_cache(cfg: C.Config) -> None:
    """The phase-1 cache the run will read must load: a damaged one is one line naming it."""
    cache = phase1_cache(cfg)
    file = cache.model if cache.complete() else cache.checkpoint
    if file.is_file():
        checkpoint.load(file)


def pretrained_source(trainer: Trainer) -> tuple[torch.nn.Module, dict]:
    """Phase 1, or its cached result."""
    cache = phase1_cache(trainer.cfg)
    model = trainer.build_phase1_model()
    cache.path.mkdir(parents=True, exist_ok=True)
    # One computation per key at a time (concurrent trials of a search share it): rank 0 holds
    # the lock, every rank waiting for it together. Rank 0 decides for every worker: ranks
    # that saw the cache differently would run different collectives.
    with phase1_lock(cache, trainer.runtime):
        if trainer.runtime.comm.agree(cache.complete()):
            model.load_state_dict(checkpoint.load(visible(cache.model)))  # rank 0 saw them
            return model.eval(), {**json.loads(visible(cache.info).read_text()), "cached": True}
        return _pretrain(trainer, cache)


@contextmanager
def phase1_lock(cache: Phase1Cache, runtime: Runtime) -> Iterator[None]:
    """The phase-1 cache lock, held by rank 0 while every rank waits together: rank 0 tries
    for LOCK_POLL_S at a time and all ranks agree on each try, so no rank sits in a collective
    longer than that while another run computes this phase 1 (an hour, maybe)."""
    lock = FileLock(cache.lock) if runtime.is_main else None
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


def _pretrain(trainer: Trainer, cache: Phase1Cache):
    start = time.time()
    model, info = trainer.pretrain(cache.checkpoint, labelled="source")
    info["seconds"] = time.time() - start
    if trainer.runtime.is_main:
        checkpoint.save(model.state_dict(), cache.model)
        write_json(cache.info, info)  # model.pt first, then info.json: a hit needs both
    return model, {**info, "cached": False}


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)  # atomic: a reader sees all of it or nothing


def evaluation_key(cfg: C.Config) -> str:
    """What the baselines' evaluation reads beside phase 1: its version, proxies, batch, PCK
    rule, precision and seed."""
    t = cfg.train
    setup = [EVAL_VERSION, t.proxies, t.eval_batch_size, t.pck_normalize, t.precision, t.seed]
    return hashlib.sha256(json.dumps(setup).encode()).hexdigest()[:12]


def baseline_weights(cfg: C.Config, name: str) -> Path:
    """The weights of baseline `name` (source_only: phase 1's model; adabn: with the target's
    BatchNorm statistics), in the phase-1 cache."""
    cache = phase1_cache(cfg)
    return cache.model if name == "source_only" else cache.adabn(evaluation_key(cfg))


def baseline_files(cfg: C.Config) -> dict[str, str]:
    """{baseline: its weights file}: what a result records so `export` can write one."""
    return {name: str(baseline_weights(cfg, name)) for name in baseline_names()}


def baselines(trainer: Trainer, source_model: torch.nn.Module) -> tuple[dict, torch.Tensor]:
    """Source-only and AdaBN metrics of the phase-1 model, and the source-only model's target
    val predictions: they depend on phase 1 alone, so they are computed once and cached beside
    it, with AdaBN's weights (a candidate `export` may write). AdaBN re-estimates BatchNorm on
    the target train images without augmentation, in a seeded random order, for the target;
    the source is evaluated with phase 1's statistics."""
    cfg, cache, key = trainer.cfg, phase1_cache(trainer.cfg), evaluation_key(trainer.cfg)
    file, coords_file, weights = cache.baselines(key), cache.baseline_coords(key), cache.adabn(key)
    if trainer.runtime.comm.agree(all(f.is_file() for f in (file, coords_file, weights))):
        saved = json.loads(visible(file).read_text())  # rank 0 saw them: wait to see them here
        return saved, checkpoint.load(visible(coords_file))["coords"]
    if trainer.runtime.is_main:
        say("source-only and AdaBN baselines: evaluating once (cached beside phase 1)")
    evaluator = trainer.evaluator
    out = {"source_only": evaluator(source_model)}
    coords = evaluator.target_coords
    adapted = trainer.eval.adabn(source_model, trainer.task.target_train, cfg.train.seed)
    out["adabn"] = evaluator.evaluate({"source": source_model, "target": adapted})
    if trainer.runtime.is_main:  # the JSON last: its presence means the other files exist
        checkpoint.save({"coords": coords}, coords_file)
        checkpoint.save(adapted.state_dict(), weights)
        write_json(file, out)
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
