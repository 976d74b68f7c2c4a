"""What `train` and `tune` will do, checked before anything is written or started: the resolved
config (or search), where it goes, and the notes to say first. Each is data; the commands
(cli/commands.py) print the notes and run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from regda_dist import config as C
from regda_dist.data.datasets import keypoint_notes, task_spec
from regda_dist.data.loader import batch_notes, loader_notes
from regda_dist.engine.build import preflight
from regda_dist.engine.run import check_checkpoints, check_run_dir
from regda_dist.search.setup import check_search_dir
from regda_dist.search.spec import Search, check_metric, load_search


@dataclass
class TrainPlan:
    cfg: C.Config
    run_dir: Path
    name: str
    notes: list[str]


@dataclass
class TunePlan:
    search: Search
    search_dir: Path
    notes: list[str]

    @property
    def oracle(self) -> bool:
        return self.search.settings.selection == "oracle"


def plan_train(
    experiment: str,
    overrides: list[str],
    name: str | None,
    address: str | None,
    resume: bool,
    no_ray: bool = False,
) -> TrainPlan:
    """One run of an experiment: refused in one line if the folder, a checkpoint, the model or
    the data cannot serve it."""
    cfg = C.load(experiment, overrides)
    name = name or Path(experiment).stem
    run_dir = Path(cfg.train.output_dir) / name
    if no_ray and (cfg.scaling.num_workers != 1 or address):
        raise C.ConfigError("--no-ray runs one process: drop --workers/--address")
    check_run_dir(run_dir, cfg, resume)
    check_checkpoints(cfg, run_dir if resume else None)
    spec = task_spec(cfg.data, check_roots=not address)  # a cluster may hold the data
    preflight(cfg, spec.num_keypoints)  # before any folder, data or Ray
    notes = [*keypoint_notes(cfg.data, spec), *batch_notes(cfg), *loader_notes(cfg)]
    return TrainPlan(cfg, run_dir, name, notes)


def plan_tune(
    experiment: str, overrides: list[str], name: str | None, address: str | None, resume: bool
) -> TunePlan:
    """A search of an experiment's search: block, every task checked as a run would be."""
    search = load_search(experiment, overrides)
    s = search.settings
    specs = {t: task_spec(c.data, check_roots=not address) for t, c in search.tasks.items()}
    check_metric(search, specs)
    oracle = " (ORACLE: target labels)" if s.selection == "oracle" else ""
    notes = [f"trials and epochs are selected by {s.select_metric}{oracle}", *search.notes]
    for task, cfg in search.tasks.items():
        preflight(cfg, specs[task].num_keypoints)
        check_checkpoints(cfg)  # the shared phase-1 cache every trial reads
        task_notes = [*keypoint_notes(cfg.data, specs[task]), *batch_notes(cfg), *loader_notes(cfg)]
        notes += [f"{task}: {note}" for note in task_notes]
    search_dir = Path(search.cfg.train.output_dir) / (name or Path(experiment).stem)
    check_search_dir(search_dir, search, resume)
    return TunePlan(search, search_dir, notes)
