"""A grid of independent runs (adaptation, ablation, recipe): each job a fresh spawn process (its
peak RSS is its own, one torch thread), `processes` at a time, stage after stage (a stage reads
what the one before cached: phase 1). A job whose key an earlier results file holds (--reuse) is
not run again; every finished run is written at once to OUT.partial.json, so an interrupted
benchmark keeps what it did (resume it with --reuse on that file).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path

from benchmarks import record


def earlier_runs(paths: list[str] | None, keys: tuple[str, ...]) -> dict[tuple, dict]:
    """{key (a run's values of `keys`): run} of earlier results files (a later file's run wins
    a key two files share)."""
    out = {}
    for path in paths or []:
        try:
            runs = json.loads(Path(path).read_text())["runs"]
            out.update({key(r, keys): r for r in runs})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"--reuse {path}: not a results file here ({err})") from None
    return out


def sources(paths: list[str]) -> list[dict]:
    """How the runs of earlier results files were made: each file's command and the commands
    its own sources list, once each; a `--no-run` command (a table of reused runs) ran nothing
    and is not listed."""
    found: dict[tuple, dict] = {}
    for path in paths:
        meta = json.loads(Path(path).read_text())["meta"]
        for m in [*meta.get("sources", []), meta]:
            kept = {k: m.get(k) for k in ("command", "date", "machine", "seeds")}
            if "--no-run" not in str(kept["command"]).split():
                found.setdefault((kept["command"], kept["date"]), kept)
    return list(found.values())


def reused(paths: list[str] | None, earlier: dict[tuple, dict], name: Callable) -> dict:
    """The meta entries of the runs taken from earlier files: which (`name` of each key), from
    which files and dates, and the commands that made them ({} without --reuse)."""
    if not paths:
        return {}
    dates = {json.loads(Path(p).read_text())["meta"]["date"] for p in paths}
    return {"reused": {"from": " ".join(paths), "date": ", ".join(sorted(dates)),
                       "runs": sorted(name(k) for k in earlier)},
            "sources": sources(paths)}  # fmt: skip


def key(job: dict, keys: tuple[str, ...]) -> tuple:
    """A job's (or run's) key: its values of `keys`."""
    return tuple(job[k] for k in keys)


def missing(stages: list[list[dict]], keys: tuple[str, ...], earlier: dict) -> list[tuple]:
    """The keys of the jobs no earlier file holds."""
    return [key(j, keys) for stage in stages for j in stage if key(j, keys) not in earlier]


def partial_file(out: str | Path) -> Path:
    """Where the runs of an unfinished benchmark writing to `out` are kept."""
    return Path(out).with_suffix(".partial.json")


def run(job: Callable[[dict], dict], stages: list[list[dict]], keys: tuple[str, ...],
        processes: int, earlier: dict, out: str | Path, meta: Callable[[], dict],
        dry: bool = False) -> list[dict]:  # fmt: skip
    """The runs of `stages` (jobs: dicts naming at least `keys`): those `earlier` holds, then
    each job `earlier` does not hold, run by `job` (picklable) in a spawn pool of `processes`,
    stage after stage; {"meta": meta(), "runs"} goes to OUT.partial.json after each. `dry`:
    nothing is run."""
    runs = [earlier[key(j, keys)] for stage in stages for j in stage if key(j, keys) in earlier]
    todo = [[j for j in stage if key(j, keys) not in earlier] for stage in stages]
    if dry or not any(todo):
        return runs
    partial_file(out).parent.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(processes, maxtasksperchild=1) as pool:
        for stage in todo:
            for r in pool.imap_unordered(job, stage):
                done = r.get("skipped") or f"{r['seconds']:.0f} s"
                print(" ".join(map(str, key(r, keys))) + f": {done}", flush=True)
                runs.append(r)
                partial = {"meta": {**meta(), "partial": True}, "runs": runs}
                partial_file(out).write_text(json.dumps(partial, indent=1))
    return runs


def write(out: str | Path, meta: dict, runs: list[dict], text: str) -> None:
    """The final results, OUT.json and OUT.md, in place of the partial file."""
    record.write(out, {"meta": meta, "runs": runs}, text)
    partial_file(out).unlink(missing_ok=True)


def config_key(cfg) -> str:
    """A checkpoint name's key: every field of the run (data folders included), so a changed
    config or data never resumes another's checkpoint."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def trainer(task: str, seed: int, work: str, sets: list[str], select: bool = False):
    """A job's trainer: `task` (benchmarks/domains.py) with `seed`, the shared phase-1 cache
    under `work`, no progress bar, one torch thread, then `sets`; `select`: its epoch selected
    by the proxy a run selects by (engine/run.py selection_metric). (Imported here: the pool
    itself needs no torch.)"""
    import torch

    from benchmarks import domains
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.build import seed_everything
    from regda_dist.engine.run import selection_metric
    from regda_dist.engine.trainer import Trainer

    torch.set_num_threads(1)
    base = [f"train.seed={seed}", f"train.output_dir={work}", "train.progress=false",
            "train.num_threads=1"]  # fmt: skip
    cfg = domains.config(task, work, [*base, *sets])
    seed_everything(seed)
    data = build_task(cfg.data)
    if select:
        cfg.train.select_metric = selection_metric(cfg, data)
    return Trainer(cfg, data)
