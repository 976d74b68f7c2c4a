"""What a benchmark records of its run, and writing its results/NAME.md without losing what a
person added to it.

`provenance` is the record every results file's meta starts with (the command as run, the
machine, the date, the wall time). A results file ends, after a run, with a "## Notes ..."
section written by hand (what ran beside it, what the numbers mean). Re-running or re-rendering
the benchmark rewrites the tables above it; `write_markdown` keeps the earlier file's notes under
the new tables and says so, as they were written about the earlier numbers and may need reading
again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

NOTES = "## Notes"  # the heading of the hand-written section: "## Notes (by hand)" and the like


def parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The command line of benchmark `module` (its __name__), its docstring as the help."""
    name = module.rpartition(".")[2]
    return argparse.ArgumentParser(
        prog=f"python -m benchmarks {name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def command(module: str, argv: list[str] | None = None) -> str:
    """How benchmark `module` was run: `python -m benchmarks NAME ARGS` (ARGS: `argv`, else
    this process's own)."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", "benchmarks", module.rpartition(".")[2], *args])


def machine() -> str:
    """This machine in one line: host, CPU, cores, OS, torch and Python."""
    import torch

    return (
        f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}, torch {torch.__version__}, Python {platform.python_version()}"
    )


def provenance(module: str, argv: list[str] | None, started: float | None = None) -> dict:
    """The record a results file's meta starts with: command, machine, date and, given when it
    `started` (time.time()), wall_s."""
    out = {"command": command(module, argv), "machine": machine(),
           "date": datetime.date.today().isoformat()}  # fmt: skip
    if started is not None:
        out["wall_s"] = time.time() - started
    return out


def write(out: str | Path, results: dict, text: str, indent: int = 1) -> None:
    """`out`.json (the results) and `out`.md (their tables, the notes kept); prints the tables."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=indent))
    write_markdown(out.with_suffix(".md"), text)
    print(text)


def hand_notes(text: str) -> str:
    """`text`'s notes section, from its heading to the end ("" without one)."""
    if text.startswith(NOTES):
        return text
    at = text.find("\n" + NOTES)
    return text[at + 1 :] if at >= 0 else ""


def write_markdown(path: Path, text: str) -> str:
    """Write `text` to `path`, followed by the notes section of the file already there (unless
    `text` has its own); returns the notes kept ("" where none)."""
    path = Path(path)
    notes = "" if hand_notes(text) else hand_notes(path.read_text() if path.is_file() else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n\n" + notes if notes else text)
    if notes:
        print(f"{path}: kept its hand-written notes ({NOTES} ...); they were written about the "
              "earlier numbers: read them again")  # fmt: skip
    return notes
