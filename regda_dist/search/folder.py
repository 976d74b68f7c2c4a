"""Reading a search folder back: every trial's parameters and final values, per group and task.
Used by `export` and `report`; needs neither Ray nor a running search."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from regda_dist import __version__
from regda_dist.config import ConfigError
from regda_dist.config.migrate import adapted, migrate_keys
from regda_dist.folders import SearchFolder
from regda_dist.search.spec import Search, load_search

ORACLE = "oracle/target_pck"  # target-test PCK: target labels, for evaluation only


class SearchFolderError(ValueError):
    """The folder is not a (finished enough) search folder; the message is one line."""


@dataclass
class Trial:
    group: str
    trial_id: str
    params: dict
    runs: dict[str, Path]  # task -> run folder
    final: dict[str, dict] = field(default_factory=dict)  # task -> last evaluated metrics
    source_only: dict[str, dict] = field(default_factory=dict)  # task -> source-only metrics
    adabn: dict[str, dict] = field(default_factory=dict)  # task -> AdaBN metrics
    # task -> {source_only|adabn: the baseline's weights file} (the phase-1 cache)
    baseline_weights: dict[str, dict] = field(default_factory=dict)
    # task -> the epoch train.select_metric chose: {epoch, metric, value, metrics}
    selected: dict[str, dict] = field(default_factory=dict)
    curves: dict[str, list[dict]] = field(default_factory=dict)  # task -> evaluated epochs
    complete: bool = False  # every task finished with a value (not stopped early, not failed)
    # a task ran to its end without a value to select by (its metric NaN at every epoch)
    failed: bool = False
    joint: dict | None = None

    def value(self, task: str, key: str) -> float:
        """A metric of the trial's result on `task`: of its selected epoch where it selected
        one (best/<metric>: the selection value), else of its last evaluated epoch."""
        chosen = self.selected.get(task)
        if key.startswith("best/"):
            hit = chosen is not None and key == f"best/{chosen['metric']}"
            return float(chosen["value"]) if hit else float("nan")
        return float(self.metrics(task).get(key, float("nan")))

    def metrics(self, task: str) -> dict:
        """The evaluation of the epoch the trial chose (its last one without selection)."""
        chosen = self.selected.get(task)
        return chosen["metrics"] if chosen else self.final[task]


def read_search(search_dir: Path) -> Search:
    """The search's resolved search (search.yaml, read with the strict loader)."""
    saved = SearchFolder(search_dir).spec
    if not saved.is_file():
        raise SearchFolderError(f"{search_dir}: not a search folder (no search.yaml)")
    try:
        return load_search(saved)
    except ConfigError as err:
        raise SearchFolderError(f"unreadable search folder: {err}") from None


def evaluated_epochs(metrics_file: Path) -> list[dict]:
    """The adaptation lines of metrics.jsonl that carry an evaluation, in order."""
    rows = []
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
            if row.get("phase") == "adapt" and any(k.startswith("proxy/") for k in row):
                rows.append(row)
    return rows


def load_trials(search_dir: Path) -> dict[str, list[Trial]]:
    """{group: [Trial]} of every trial folder that recorded its parameters."""
    search = read_search(search_dir)
    expected = list(search.tasks)
    joint = search.settings.mode == "joint"
    groups: dict[str, list[Trial]] = {}
    for folder in SearchFolder(search_dir).trial_folders():
        group = SearchFolder.group_of(folder)
        runs = {p.parent.name: p.parent for p in sorted(folder.path.glob("*/config.yaml"))}
        params = migrate_keys(json.loads(folder.params.read_text()), str(folder.params))
        trial = Trial(group, folder.id, params, runs)
        done = []
        for task in runs:
            run = folder.run(task)
            trial.curves[task] = evaluated_epochs(run.metrics)
            if run.result.is_file():
                result = json.loads(run.result.read_text())
                trial.final[task], trial.source_only[task] = adapted(result), result["source_only"]
                trial.adabn[task] = result.get("adabn", {})
                trial.baseline_weights[task] = result.get("baseline_weights", {})
                if "selected" in result:
                    trial.selected[task] = result["selected"]
                    done.append(task)
                else:  # every search selects an epoch: this task had no value to select by
                    trial.failed = True
            else:
                trial.final[task] = trial.curves[task][-1] if trial.curves[task] else {}
        want = set(expected) if joint else {group}  # a trial killed before a task: incomplete
        trial.complete = set(done) == want and not folder.stopped.is_file()
        if folder.joint.is_file():
            trial.joint = json.loads(folder.joint.read_text())
        groups.setdefault(group, []).append(trial)
    if not groups:
        raise SearchFolderError(f"{search_dir}: no trials yet")
    return groups


def provenance(argv: list[str]) -> dict:
    """Versions, git revision and command line: what a result needs to be reproduced."""

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev, dirty = "", ""
    return {
        "regda_dist": __version__,
        "torch": version("torch"),
        "ray": version("ray"),
        "optuna": version("optuna"),
        "python": platform.python_version(),
        "git_revision": (rev + ("-dirty" if dirty else "")) or None,
        "command": argv,
    }
