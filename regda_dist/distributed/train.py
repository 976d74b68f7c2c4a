"""Ray Train around the pure-PyTorch engine: one RegDA run on N data-parallel workers.

Every worker runs the same engine with a Runtime whose collectives (engine/collectives.py, every
tensor on the worker's device: NCCL has no CPU backend) all-reduce exactly the gradients an
optimiser is about to step, give every worker rank 0's parameters and buffers (phase start,
before evaluation), average logged values and combine evaluation shards. Steps A, B and C each
sync their own parameter set, so no step waits on a parameter without a gradient (no DDP
reducer is involved).
BatchNorm: model.batchnorm 'train' normalises with each worker's own batch (like DDP's default),
'sync' uses SyncBatchNorm (CUDA), 'frozen' uses running statistics.

Files: train.output_dir must be reachable by every worker (a local folder on one machine, a
shared filesystem on a cluster). Rank 0 writes checkpoints, model.pt and result.json there and
reports each adaptation epoch with its checkpoint to Ray (`ray.train.report` on every worker),
as a hard link in Ray's checkpoint folder inside the run folder: no copy per epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import resource
import shutil
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    CheckpointUploadMode,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from regda_dist import config as C
from regda_dist.distributed import capacity
from regda_dist.engine.collectives import Collectives
from regda_dist.engine.phase1 import pretrain_only
from regda_dist.engine.run import execute, prepare_run_dir
from regda_dist.engine.runtime import Runtime, resolve_precision
from regda_dist.folders import RunFolder, visible


class TrainingError(RuntimeError):
    """Training failed inside the workers; the message is the root cause's first line."""


class _Reporter:
    """Engine callback: every worker reports each adaptation epoch; rank 0 attaches the
    checkpoint the engine has just written. The epoch, the selection metric (best so far and
    this epoch's) and the oracle come first: Tune's trial table shows the first metrics. The
    last epoch is reported only after the run has written its results (`flush`), so a
    scheduler that stops the trial on that report loses nothing."""

    def __init__(self, run: RunFolder, rank: int, cfg: C.Config):
        self.run, self.rank, self.last = run, rank, cfg.adapt.epochs
        self.key = key = cfg.train.select_metric
        self.first = ["epoch", f"best/{key}", "oracle/target_pck", "best/epoch"]
        self.pending: dict | None = None

    def __call__(self, phase: str, epoch: int, metrics: dict) -> None:
        if phase != "adapt":
            return
        # the selection value is in every report, NaN until an epoch has one: Tune raises for
        # the whole search on a report without the metric it compares (a trial whose proxy is
        # NaN at every epoch then fails alone: search/searcher.py)
        unset = {f"best/{self.key}": math.nan} if self.key else {}
        metrics = {**unset, **metrics, "epoch": epoch}
        ordered = {k: metrics[k] for k in self.first if k in metrics} | metrics
        if epoch == self.last:
            self.pending = ordered
        else:
            self._report(ordered)

    def flush(self) -> None:
        if self.pending is not None:
            self._report(self.pending)

    def _report(self, metrics: dict) -> None:
        """Rank 0 reports the run folder's checkpoint where Ray keeps it without copying it:
        Ray's storage is the run folder (fit: storage_path), so a hard link in Ray's checkpoint
        folder is the epoch's file (the engine replaces adapt.ckpt atomically: the link keeps
        this epoch's), and Ray uploads nothing (NO_UPLOAD). Without hard links: a copy."""
        name = f"checkpoint_epoch_{metrics['epoch']:04d}"  # the same on every rank
        checkpoint = self._link(name) if self.rank == 0 else None
        ray.train.report(
            metrics,
            checkpoint=checkpoint,
            checkpoint_dir_name=name,
            checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD,
        )

    def _link(self, name: str) -> Checkpoint:
        folder = Path(ray.train.get_context().get_storage().experiment_fs_path) / name
        folder.mkdir(parents=True, exist_ok=True)
        source = self.run.checkpoint
        target = folder / source.name
        target.unlink(missing_ok=True)  # an epoch reported again after a restart
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        return Checkpoint.from_directory(str(folder))


def _restore_reported_checkpoint(run: RunFolder, rank: int) -> None:
    """After a restart, take Ray's latest reported checkpoint when the folder has none."""
    reported = ray.train.get_checkpoint()
    if rank == 0 and reported is not None and not run.checkpoint.exists():
        with reported.as_directory() as folder:
            shutil.copy2(Path(folder) / run.checkpoint.name, run.checkpoint)
    dist.barrier()


def _quiet_reports() -> None:
    """Ray Train logs every report at INFO ('Reporting training result ...', the whole metrics
    dict) through a logger named by its file, which neither its LoggingConfig nor Ray's reach;
    kept with REGDA_DIST_DEBUG=1."""
    if not os.environ.get("REGDA_DIST_DEBUG"):
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def worker_threads(cfg: C.Config) -> int:
    """A Ray worker's torch threads: its CPU share (at least 1), or train.num_threads where that
    is smaller. More threads than the CPUs Ray gave it oversubscribe the node: two 1-CPU workers
    with 2 threads each trained 4x slower than with 1 (gloo's all-reduce waits on descheduled
    threads; benchmarks/results/train_throughput.md)."""
    share = max(1, round(cfg.scaling.cpus_per_worker))
    return min(cfg.train.num_threads, share) if cfg.train.num_threads else share


def train_loop_per_worker(config: dict) -> None:
    _quiet_reports()
    cfg = C.from_dict(config["cfg"])
    run = RunFolder(Path(config["run_dir"]))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(worker_threads(cfg))
    cfg.train.num_threads = 0  # set above, per worker
    cfg.train.progress = False  # Ray forwards each bar refresh as a log line: epoch lines instead
    run.workers.mkdir(exist_ok=True)
    identity = {
        "rank": rank,
        "pid": os.getpid(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_rank": ctx.get_node_rank(),
        "world_size": world,
    }
    run.worker(rank).write_text(json.dumps(identity))
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    precision = resolve_precision(cfg.train.precision, device)
    runtime = Runtime(device, rank, world, precision=precision, cpus=cfg.scaling.cpus_per_worker)
    if world > 1:  # one worker keeps the engine's local no-ops: no collective to pay for
        runtime.comm = Collectives(device)
    if config.get("phase") == "pretrain":
        pretrain_only(cfg, runtime)
        return
    _restore_reported_checkpoint(run, rank)
    reporter = _Reporter(run, rank, cfg)
    execute(cfg, run.path, runtime, callbacks=[reporter], trial=config.get("trial"))
    reporter.flush()  # the last epoch, now that result.json is written
    identity["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run.worker(rank).write_text(json.dumps(identity))


_EXCEPTION_LINE = re.compile(r"^(?:[\w]+\.)*(\w+(?:Error|Exception)): (.*)$")


def _root_cause(err: BaseException | str) -> str:
    """'Name: message' of the innermost exception in the traceback text Ray wraps around it (a
    Tune result's error may also be that text alone)."""
    while getattr(err, "__cause__", None) is not None:
        err = err.__cause__
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            return f"{match[1]}: {match[2]}"
    return lines[-1] if lines else type(err).__name__ if isinstance(err, BaseException) else "error"


def absolute_output_dir(cfg: C.Config) -> C.Config:
    """A copy whose train.output_dir is absolute: Ray workers and trials run in other working
    directories, where a relative path (the shared phase-1 cache) would land elsewhere."""
    out = C.from_dict(cfg.to_dict())
    out.train.output_dir = str(Path(cfg.train.output_dir).resolve())
    return out


def fit(
    cfg: C.Config,
    run_dir: Path,
    resume: bool = False,
    callbacks: list | None = None,
    phase: str = "all",
    trial: dict | None = None,
    check_capacity: bool = True,
) -> dict:
    """Run one experiment with Ray Train on the connected Ray cluster; returns result.json
    (phase 'pretrain': phase 1 into the shared cache only; returns {}).
    callbacks: Ray Train callbacks (a Tune trial passes TuneReportCallback).
    trial: a search trial's {"hparams": parameters, "columns": its search's space} (TensorBoard).
    check_capacity: refuse what the cluster can never place (a search checks its trials once)."""
    run_dir = run_dir.resolve()
    if check_capacity:  # on any cluster: what it can never place would wait forever
        capacity.check(cfg.scaling)
    prepare_run_dir(run_dir, cfg, resume)
    s = cfg.scaling
    resources = capacity.worker_resources(s)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": absolute_output_dir(cfg).to_dict(),
            "run_dir": str(run_dir),
            "trial": trial,
            "phase": phase,
        },
        scaling_config=ScalingConfig(
            num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=RunFolder.TRAIN_RUN,
            storage_path=str(run_dir),
            failure_config=FailureConfig(max_failures=s.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=callbacks,
        ),
    )
    # Ray Train (v2) registers its own SIGINT handler when fit() runs in the main thread (a
    # plain `train`, phase 1 of a search): it aborts the run and exits 1 without a word, and
    # stays registered after fit(). Ctrl-C stays the command's: KeyboardInterrupt, exit 130,
    # and the --resume line (the run continues from its last checkpoint).
    if hasattr(trainer, "_register_sigint_handler"):
        trainer._register_sigint_handler = lambda controller: None
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise TrainingError(f"training failed in a worker: {_root_cause(err)}") from None
    if result.error is not None:
        raise TrainingError(f"training failed in a worker: {_root_cause(result.error)}")
    if phase == "pretrain":
        return {}
    return json.loads(visible(RunFolder(run_dir).result).read_text())  # rank 0 wrote it
