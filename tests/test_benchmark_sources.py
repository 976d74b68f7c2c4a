"""benchmarks/adaptation.py --reuse: the commands that made the reused runs are listed once
each, and a `--no-run` table (it ran nothing) is never listed as one of them."""

from __future__ import annotations

import json

from benchmarks.adaptation import sources


def _write(path, command, date, **meta):
    path.write_text(json.dumps({"meta": {"command": command, "date": date, **meta}, "runs": []}))
    return str(path)


def test_reused_runs_name_each_command_that_ran_them_once(tmp_path):
    a = {"command": "adaptation.py --seeds 0", "date": "d1", "machine": "m", "seeds": [0]}
    b = {"command": "adaptation.py --seeds 1", "date": "d1", "machine": "m", "seeds": [1]}
    ran_nothing = {"command": "adaptation.py --no-run --reuse x", "date": "d0", "seeds": [0]}
    merged = _write(tmp_path / "merged.json", "adaptation.py --no-run", "d2",
                    sources=[a, ran_nothing, b], not_run=[])  # fmt: skip
    new = _write(tmp_path / "new.json", "adaptation.py --seeds 2", "d3", machine="m", seeds=[2])
    again = _write(tmp_path / "again.json", "adaptation.py --no-run", "d4", sources=[a],
                   not_run=["x"])  # fmt: skip
    listed = [s["command"] for s in sources([merged, new, again])]
    assert listed == [f"adaptation.py --seeds {seed}" for seed in (0, 1, 2)]
