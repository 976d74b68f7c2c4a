"""Every file name a run, the phase-1 cache, a search and an export write: one place.

    <train.output_dir>/<name>/           RunFolder: one run (`train`, or a task of a trial)
        config.yaml  metrics.jsonl  result.json  model.pt  last.pt  adapt.ckpt
        target_val_coords.pt  tb/  workers/rank<N>.json  ray-train/
    <train.output_dir>/.cache/pretrain/<key>/   Phase1Cache: phase 1 and its baselines
        model.pt  info.json  checkpoint.pt  .lock  baselines-<k>.json (.coords.pt, .adabn.pt)
    <train.output_dir>/<name>/           SearchFolder: one search
        search.yaml  provenance.json  search.json  optuna.db  .phase1/  best/  report/
        <group>/tune/  <group>/trials/<id>/   TrialFolder: params.json  joint.json
                                               stopped.json  <task>/ (a RunFolder)
    best/<task>/                         ExportFolder: config.yaml  model.pt  meta.json
        (best/summary.md; top<N>/ for ranks 2..k)

Plain paths, no I/O beyond existence checks: every layer may use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

VISIBLE_TIMEOUT_S = 60.0


def visible(path: Path, timeout_s: float | None = None) -> Path:
    """`path`, once it exists here: every read of a file another process wrote and saw (rank
    0's phase-1 cache and checkpoints on the other ranks, a worker's result.json on the driver)
    goes through this, as a shared filesystem (NFS attribute caches) can show a new file
    elsewhere up to a minute later. After timeout_s (VISIBLE_TIMEOUT_S) the path is returned
    as it is, and its reader says it is missing."""
    deadline = time.monotonic() + (VISIBLE_TIMEOUT_S if timeout_s is None else timeout_s)
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.25)
    return path


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"  # the full resolved config

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"  # a JSON line per evaluation event

    @property
    def result(self) -> Path:
        return self.path / "result.json"  # written last: the run is complete

    @property
    def model(self) -> Path:
        return self.path / "model.pt"  # the weights the run reports (its selected epoch's)

    @property
    def last(self) -> Path:
        return self.path / "last.pt"  # the last epoch's, where an earlier one was selected

    @property
    def selected_before(self) -> Path:
        return self.path / "selected.pt"  # runs of before model.pt became the selected epoch's

    @property
    def checkpoint(self) -> Path:
        return self.path / "adapt.ckpt"  # phase 2's epoch checkpoint

    @property
    def predictions(self) -> Path:
        return self.path / "target_val_coords.pt"  # target val argmax: source-only, last, selected

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def workers(self) -> Path:
        return self.path / "workers"

    def worker(self, rank: int) -> Path:
        return self.workers / f"rank{rank}.json"  # a Ray Train worker: pid, node, peak memory

    TRAIN_RUN = "ray-train"  # Ray Train's own folder inside the run folder


@dataclass(frozen=True)
class Phase1Cache:
    """Phase 1 of one key, shared by every run and trial with the same phase-1 fields."""

    path: Path

    @classmethod
    def of(cls, output_dir: str | Path, key: str) -> Phase1Cache:
        return cls(Path(output_dir) / ".cache" / "pretrain" / key)

    @property
    def model(self) -> Path:
        return self.path / "model.pt"  # written first ...

    @property
    def info(self) -> Path:
        return self.path / "info.json"  # ... then this: a cache hit needs both

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"  # phase 1 under way

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    def baselines(self, key: str) -> Path:
        """Source-only and AdaBN metrics of an evaluation setup `key` (JSON, written last)."""
        return self.path / f"baselines-{key}.json"

    def baseline_coords(self, key: str) -> Path:
        return self.baselines(key).with_suffix(".coords.pt")

    def adabn(self, key: str) -> Path:
        return self.baselines(key).with_suffix(".adabn.pt")

    def complete(self) -> bool:
        return self.model.is_file() and self.info.is_file()


@dataclass(frozen=True)
class TrialFolder:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def params(self) -> Path:
        return self.path / "params.json"  # the trial's sampled values

    @property
    def joint(self) -> Path:
        return self.path / "joint.json"  # a joint trial's objective and per-task values

    @property
    def stopped(self) -> Path:
        # the scheduler stopped the trial (distributed/searcher.py writes it when it tells
        # Optuna PRUNED); the trial is stopped early even where its workers, killed after
        # Tune's decision, finished first and wrote result.json
        return self.path / "stopped.json"

    def run(self, task: str) -> RunFolder:
        return RunFolder(self.path / task)


@dataclass(frozen=True)
class SearchFolder:
    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "search.yaml"  # the resolved search (what --resume compares)

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.json"

    @property
    def summary(self) -> Path:
        return self.path / "search.json"

    @property
    def optuna(self) -> Path:
        return self.path / "optuna.db"  # the default storage (SQLite)

    @property
    def best(self) -> Path:
        return self.path / "best"  # `export`'s default

    @property
    def report(self) -> Path:
        return self.path / "report"

    def phase1_run(self, task: str, key: str) -> Path:
        return self.path / ".phase1" / task / key  # the Ray Train run of a task's phase 1

    def group(self, name: str) -> Path:
        return self.path / name  # a task (per_task) or "joint"

    def tune(self, group: str) -> Path:
        return self.group(group) / "tune"  # Tune's experiment state

    def trials(self, group: str) -> Path:
        return self.group(group) / "trials"

    def trial(self, group: str, trial_id: str) -> TrialFolder:
        return TrialFolder(self.trials(group) / trial_id)

    def trial_folders(self) -> list[TrialFolder]:
        """Every trial that recorded its parameters, in name order."""
        found = sorted(self.path.glob("*/trials/*/params.json"))
        return [TrialFolder(p.parent) for p in found]

    @staticmethod
    def group_of(trial: TrialFolder) -> str:
        return trial.path.parent.parent.name


@dataclass(frozen=True)
class ExportFolder:
    """One exported configuration (best/<task>/, or best/<task>/top<N>/)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def meta(self) -> Path:
        return self.path / "meta.json"

    SUMMARY = "summary.md"  # beside the task folders
