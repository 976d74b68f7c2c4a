"""The benchmark harness (benchmarks/): `python -m benchmarks` lists the benchmarks; the grid of
runs reuses what earlier results files hold and keeps what an interrupted run finished; every
result records its command, machine and date; no benchmark edits sys.path, imports another's
private helpers or patches the trainer."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

import pytest

from benchmarks import ROOT, grid, record

KEYS = ("task", "seed")


def _job(job: dict) -> dict:
    """A grid job in a spawn process: fails for task 'fail' (an interrupted benchmark)."""
    if job["task"] == "fail":
        raise RuntimeError("interrupted")
    return {**job, "by": "job", "made": time.time_ns(), "seconds": 0.0}


def test_python_m_benchmarks_lists_each_benchmark_with_its_first_docstring_line():
    done = subprocess.run([sys.executable, "-m", "benchmarks"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = dict(line.split(maxsplit=1) for line in done.stdout.splitlines() if line[:2] == "  ")
    assert {"adaptation", "ablation", "recipe", "method_search", "gpu_check"} <= set(listed)
    assert not {"grid", "record", "searches", "stats", "domains"} & set(listed)  # no main()
    assert listed["adaptation"].startswith("Target PCK of source-only, AdaBN")
    wrong = subprocess.run([sys.executable, "-m", "benchmarks", "no_such"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert wrong.returncode == 2 and "no benchmark 'no_such'" in wrong.stderr


def test_the_grid_reuses_earlier_runs_and_keeps_what_an_interrupted_run_finished(tmp_path):
    earlier_file = tmp_path / "earlier.json"
    runs = [{"task": "a", "seed": 0, "by": "earlier"}]
    earlier_file.write_text(json.dumps({"meta": {"command": "c", "date": "d0"}, "runs": runs}))
    out = tmp_path / "results" / "bench"
    stages = [[{"task": "a", "seed": 0}, {"task": "a", "seed": 1}, {"task": "b", "seed": 0}],
              [{"task": "fail", "seed": 0}]]  # fmt: skip
    earlier = grid.earlier_runs([str(earlier_file)], KEYS)
    with pytest.raises(RuntimeError, match="interrupted"):
        grid.run(_job, stages, KEYS, 2, earlier, out, lambda: {"date": "d1"})
    partial = json.loads(grid.partial_file(out).read_text())  # written as each run finished
    assert partial["meta"] == {"date": "d1", "partial": True}
    kept = sorted((r["task"], r["seed"], r["by"]) for r in partial["runs"])
    assert kept == [("a", 0, "earlier"), ("a", 1, "job"), ("b", 0, "job")]

    # resumed with --reuse on the partial file: nothing it holds runs again
    stages[1] = [{"task": "c", "seed": 0}]
    again = grid.earlier_runs([str(grid.partial_file(out))], KEYS)
    assert grid.missing(stages, KEYS, again) == [("c", 0)]
    by_key = {(r["task"], r["seed"]): r for r in partial["runs"]}
    done = [by_key["a", 0], by_key["a", 1], by_key["b", 0]]  # in the stages' order
    assert grid.run(_job, stages, KEYS, 2, again, out, dict, dry=True) == done
    runs = grid.run(_job, stages, KEYS, 2, again, out, dict)
    assert runs[:3] == done  # the very runs (each `made` once)
    assert [(r["task"], r["by"]) for r in runs[3:]] == [("c", "job")]
    grid.write(out, {"date": "d2"}, runs, "# bench\n")
    assert not grid.partial_file(out).exists()
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == runs
    meta = grid.reused([str(earlier_file)], earlier, lambda key: f"{key[0]} seed {key[1]}")
    assert meta["reused"] == {"from": str(earlier_file), "date": "d0", "runs": ["a seed 0"]}
    assert grid.reused(None, {}, str) == {}


def test_every_result_records_its_command_machine_date_and_wall_time():
    meta = record.provenance("benchmarks.adaptation", ["--seeds", "0", "--set", "a=b c"],
                             started=time.time() - 5)  # fmt: skip
    assert meta["command"] == "python -m benchmarks adaptation --seeds 0 --set 'a=b c'"
    assert meta["date"] == datetime.date.today().isoformat()
    import torch

    for part in (f"{os.cpu_count()} CPUs", f"torch {torch.__version__}", platform.node(),
                 f"Python {platform.python_version()}"):  # fmt: skip
        assert part in meta["machine"]
    assert 5 <= meta["wall_s"] < 60
    assert "wall_s" not in record.provenance("benchmarks.recipe", [])


def test_no_benchmark_edits_sys_path_imports_private_helpers_or_patches_the_trainer():
    sources = {p.name: p.read_text() for p in (ROOT / "benchmarks").glob("*.py")}
    assert len(sources) > 15
    rules = {
        "sys.path": r"sys\.path",
        "noqa: E402": r"noqa: E402",
        "another module's private helper": r"from benchmarks(\.\w+)? import [^\n]*\b_\w+"
        r"|benchmarks\.\w+\._\w+",
        "an assignment to the trainer": r"\btrainer\.[\w.]+\s*=(?!=)",
    }
    found = [f"{name}: {rule}" for name, text in sources.items()
             for rule, pattern in rules.items() if re.search(pattern, text)]  # fmt: skip
    assert found == []
