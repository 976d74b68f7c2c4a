"""Searches as a user runs them (`regda-dist tune` in a child process: embedded Ray, Optuna) for
method_search, proxy_study and tpe_study, and reading a search's folder back."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks import ROOT
from regda_dist.folders import SearchFolder
from regda_dist.search.consensus import add_consensus
from regda_dist.search.folder import Trial, load_trials, read_search
from regda_dist.search.spec import Search


def cli(*args: str, quiet: bool = False) -> None:
    """`regda-dist ARGS` from the repository root; `quiet`: its output shown only where it
    fails (Optuna's warnings on few trials)."""
    command = [sys.executable, "-m", "regda_dist.cli", *args]
    if quiet:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
        return
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def tune(experiment: str | Path, folder: Path, sets: list[str]) -> Path:
    """The search `folder` (train.output_dir/NAME) of `experiment` with `sets` (--set KEY=VALUE):
    run, continued (--resume) where it has begun, left as it is where it finished (its
    search.json written)."""
    if SearchFolder(folder).summary.is_file():
        return folder
    sets = [a for s in [f"train.output_dir={folder.parent}", *sets] for a in ("--set", s)]
    resume = ["--resume"] if SearchFolder(folder).spec.is_file() else []
    cli("tune", str(experiment), "--name", folder.name, *sets, *resume)
    return folder


def read(folder: Path) -> tuple[Search, dict[str, list[Trial]]]:
    """A search's settings and its trials by group, each with the consensus proxy as the
    report has it."""
    groups = load_trials(folder)
    add_consensus(groups)
    return read_search(folder), groups
