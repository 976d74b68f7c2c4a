"""`make demo` timed as a newcomer runs it: a fresh clone of this repository, no virtual
environment, no pip cache, no synthetic data or phase-1 cache. Writes
benchmarks/results/demo.{md,json} (wall_s: set-up plus the demo).

    python -m benchmarks demo_timing [--keep]

The set-up (make setup: venv, CPU torch, this package) and the demo (make demo: tune, export,
report) are timed separately; their sum is what the README promises. The last lines the demo
printed are kept in the results, so what a user sees at the end is on record too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import RESULTS, ROOT, record


def timed(command: list[str], cwd: Path, env: dict, log: Path) -> float:
    start = time.time()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}); see {log}")
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--keep", action="store_true", help="keep the clone (default: removed)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="regda-demo-"))
    clone = work / "regda-dist"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "RAY_"))},
        "PIP_NO_CACHE_DIR": "1",  # a new machine has no pip cache
        "REGDA_DIST_CACHE": str(work / "cache"),  # nor generated data
        "PATH": os.environ["PATH"],
    }
    setup_s = timed(["make", "setup"], clone, env, work / "setup.log")
    print(f"set-up: {setup_s:.0f} s", flush=True)
    demo_s = timed(["make", "demo"], clone, env, work / "demo.log")
    print(f"demo: {demo_s:.0f} s", flush=True)
    tail = (work / "demo.log").read_text().splitlines()[-25:]
    result = {**record.provenance(__name__, argv), "revision": revision, "setup_s": setup_s,
              "demo_s": demo_s, "wall_s": setup_s + demo_s, "last_lines": tail}  # fmt: skip
    record.write(RESULTS / "demo", result, render(result), indent=2)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def render(r: dict) -> str:
    minutes = {k: r[k] / 60 for k in ("wall_s", "setup_s", "demo_s")}
    lines = [
        "# `make demo` on a fresh clone",
        "",
        f"- command: `{r['command']}` (a fresh `git clone`, no .venv, no pip cache "
        "(PIP_NO_CACHE_DIR=1), no generated data or phase-1 cache)",
        f"- machine: {r['machine']}; date: {r['date']}; revision {r['revision'][:12]}",
        f"- **wall time: {minutes['wall_s']:.1f} min** = set-up {minutes['setup_s']:.1f} min "
        f"(`make setup`) + demo {minutes['demo_s']:.1f} min (`make demo`: tune, export, report)",
        "",
        "The demo's last lines:",
        "",
        "```",
        *r["last_lines"],
        "```",
    ]
    return "\n".join(lines) + "\n"
