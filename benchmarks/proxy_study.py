"""How well each target validation proxy selects RegDA configurations, judged by the oracle.

    python benchmarks/proxy_study.py [--trials 16] [--name proxy_study]

Runs `regda-dist tune experiments/synth_search.yaml` with FIFO scheduling (every trial runs to the
end, so all are compared at the same epoch) and `--trials` trials per synthetic task, the first of
which runs the reference defaults; then, per task and proxy: Spearman with oracle target PCK over
trials, top-1 regret, and the target PCK of (a) the defaults, (b) each proxy's pick, (c) the
oracle's pick. Writes benchmarks/results/proxy_study.{md,json}. Target labels are read here only
to judge the proxies.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--name", default="proxy_study")
    parser.add_argument("--output-dir", default=str(ROOT / "runs"))
    parser.add_argument(
        "--guide", default="source_pck", help="the proxy TPE samples by (shapes the trials)"
    )
    args = parser.parse_args()
    search_dir = Path(args.output_dir) / args.name
    command = [
        str(Path(sys.executable).parent / "regda-dist"), "tune",
        str(ROOT / "experiments" / "synth_search.yaml"), "--name", args.name,
        "--set", f"search.num_samples={args.trials}", "--set", "search.scheduler=fifo",
        "--set", f"train.output_dir={args.output_dir}", "--set", f"search.metric={args.guide}",
    ]  # fmt: skip
    if (search_dir / "search.yaml").exists():
        command.append("--resume")
    started = time.time()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    minutes = (time.time() - started) / 60
    analyse(search_dir, " ".join(["python", "benchmarks/proxy_study.py", *sys.argv[1:]]), minutes)


def analyse(search_dir: Path, command: str, minutes: float) -> None:
    from regda_dist.search.folder import ORACLE, load_trials
    from regda_dist.search.report import proxy_table
    from regda_dist.search.spec import default_point, load_search

    exp = load_search(search_dir / "search.yaml")
    results = {}
    for task, trials in sorted(load_trials(search_dir).items()):
        done = [t for t in trials if t.complete]
        point = default_point(exp.tasks[task], exp.space)
        defaults = next((t for t in done if t.params == point), None)
        if defaults is None:
            raise SystemExit(f"{search_dir}/{task}: the trial of the default values did not finish")
        oracle_pick = max(done, key=lambda t: t.value(task, ORACLE))
        results[task] = {
            "trials": len(done),
            "defaults": {"params": defaults.params, "target_pck": defaults.value(task, ORACLE)},
            "oracle_pick": {
                "params": oracle_pick.params,
                "target_pck": oracle_pick.value(task, ORACLE),
            },
            "proxies": proxy_table(done, task),
        }
    write(results, command, minutes)


def write(results: dict, command: str, minutes: float) -> None:
    out = ROOT / "benchmarks" / "results"
    meta = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "minutes": round(minutes, 1),
    }
    (out / "proxy_study.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "# Proxy study: selecting RegDA configurations without target labels",
        "",
        f"- command: `{command}` (wall time {minutes:.0f} min)",
        f"- date: {meta['date']}; machine: {meta['machine']}; Python {meta['python']}",
        "- search: experiments/synth_search.yaml, FIFO (every trial runs its 3 epochs), TPE "
        "(seeded) over the default space guided by proxy/source_pck; the first trial runs the "
        "reference defaults. Oracle = target TEST PCK (labels used only to judge the proxies). "
        "All values are of the last epoch (no selection over epochs).",
    ]
    for task, r in results.items():
        lines += [
            "",
            f"## {task} ({r['trials']} trials)",
            "",
            f"- (a) reference defaults: target PCK {r['defaults']['target_pck']:.1f}",
            f"- (c) oracle's pick: target PCK {r['oracle_pick']['target_pck']:.1f}",
            "",
            "| proxy | Spearman vs oracle | top-1 regret (PCK) | (b) target PCK of its pick |",
            "|---|---|---|---|",
        ]
        for proxy, p in sorted(r["proxies"].items(), key=lambda kv: kv[1]["regret"]):
            lines.append(
                f"| {proxy} | {p['spearman']:.2f} | {p['regret']:.1f} | {p['picked']:.1f} |"
            )
        best, p = min(r["proxies"].items(), key=lambda kv: (kv[1]["regret"], -kv[1]["spearman"]))
        ok = p["regret"] <= 2.0 and p["picked"] > r["defaults"]["target_pck"]
        lines += [
            "",
            f"Goal (best proxy's pick within 2 PCK of the oracle's pick and above the defaults): "
            f"{'met' if ok else 'NOT met'} by {best} (regret {p['regret']:.1f}, "
            f"{p['picked'] - r['defaults']['target_pck']:+.1f} over the defaults).",
        ]
    (out / "proxy_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
