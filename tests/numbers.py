"""Fixed-seed numbers of every adaptation method and baseline, and of a tiny search over all of
them: recorded once before the method registry (tests/data/numbers.json, by
`python -m tests.numbers record`), compared bit for bit by tests/test_numbers.py, so that moving
code never changes what a run computes.

A run's numbers are its result.json (every metric of source-only, AdaBN, the adapted model's
last and selected epochs, the candidates) without times and paths, and a digest of the weights
it writes (model.pt). One torch thread: the same reduction order wherever it runs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "numbers.json"
METHODS = ("regda", "mean_teacher", "regda+mean_teacher", "source_only", "adabn")
# what differs between two identical runs: wall-clock times, cache flags and file paths
VOLATILE = ("seconds", "cached", "baseline_weights")
SCHEDULE = {"epochs": 2, "iters_per_epoch": 3, "batch_size": 4}  # phase 2's
# the rest of the run, frozen here (tests/conftest.py TINY may change; this record may not)
FIXED = [
    "data.image_size=32", "data.heatmap_size=16", "data.num_train=24", "data.num_val=8",
    "data.num_test=8", "model.backbone=small_resnet", "model.upsample_channels=8",
    "pretrain.epochs=2", "pretrain.iters_per_epoch=2", "pretrain.batch_size=4",
    "pretrain.milestones=[1]", "train.progress=false", "train.eval_batch_size=8",
]  # fmt: skip


def run_overrides(root: Path, method: str, schedule_section: str) -> list[str]:
    """The run of `method`: tiny, one thread, epoch selection by the pose prior. Phase 2's
    schedule is under `schedule_section` (regda: before the registry, adapt: after it)."""
    return [
        *FIXED,
        *(f"{schedule_section}.{k}={v}" for k, v in SCHEDULE.items()),
        "regda.warm_max_iters=2",
        "mean_teacher.rampup_iters=2",
        f"data.root={root / 'data'}",
        f"train.output_dir={root / 'runs'}",
        "train.num_threads=1",
        "train.select_metric=proxy/pose_prior",
        f"adapt.method={method}",
    ]


def stable(value):
    """`value` without the entries that differ between identical runs."""
    if isinstance(value, dict):
        return {
            k: stable(v)
            for k, v in value.items()
            if k not in VOLATILE and not k.startswith("time/")
        }
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def weights_digest(path: Path) -> str:
    state = torch.load(path, weights_only=True)
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_numbers(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    return {"result": stable(result), "model": weights_digest(run_dir / "model.pt")}


def machine() -> dict:
    """What decides the last bits of a CPU run besides the code: torch and the CPU's vector
    instructions (oneDNN picks its kernels by them)."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
    }


def record_runs(root: Path, schedule_section: str) -> dict:
    from regda_dist import config as C
    from regda_dist.engine import run

    out = {}
    for method in METHODS:
        cfg = C.load(None, run_overrides(root, method, schedule_section))
        run_dir = root / "runs" / method.replace("+", "_")
        run.run_here(cfg, run_dir)
        out[method] = run_numbers(run_dir)
    return out


SEARCH = {
    "num_samples": 5,
    "metric": "pose_prior",
    "max_concurrent": 1,
    "seed": 0,
    "scheduler": "fifo",
    "space": {
        "adapt.method": {"choice": ["regda", "mean_teacher", "regda+mean_teacher"]},
        "regda.trade_off": {"loguniform": [0.1, 10.0]},
        "mean_teacher.keep": {"uniform": [0.2, 0.8]},
        "optim.lr": {"loguniform": [0.01, 0.3]},
    },
}


def search_experiment(root: Path, schedule_section: str) -> Path:
    """A 5-trial search over every method (each method's defaults first, then TPE's random
    start-up) of the run above, as an experiment file."""
    import yaml

    values: dict = {}
    for item in run_overrides(root, "regda", schedule_section):
        key, raw = item.split("=", 1)
        section, name = key.split(".")
        if key != "train.select_metric":  # the search sets it
            values.setdefault(section, {})[name] = yaml.safe_load(raw)
    values["scaling"] = {"cpus_per_worker": 1}
    values["search"] = SEARCH
    root.mkdir(parents=True, exist_ok=True)
    path = root / "search.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def search_numbers(search_dir: Path) -> list[dict]:
    """Every trial's parameters and run numbers, in the order of their parameters."""
    trials = []
    for params_file in search_dir.glob("*/trials/*/params.json"):
        (run_dir,) = [p.parent for p in params_file.parent.glob("*/result.json")]
        trials.append({"params": json.loads(params_file.read_text()), **run_numbers(run_dir)})
    return sorted(trials, key=lambda t: json.dumps(t["params"], sort_keys=True))


def record_search(root: Path, schedule_section: str) -> list[dict]:
    from regda_dist.cli import main as cli

    exp = search_experiment(root, schedule_section)
    assert cli(["tune", str(exp), "--name", "s"]) == 0
    return search_numbers(root / "runs" / "s")


def main(argv: list[str]) -> int:
    import tempfile

    if argv != ["record"]:
        print("usage: python -m tests.numbers record", file=sys.stderr)
        return 2
    from regda_dist.distributed import cluster

    with tempfile.TemporaryDirectory() as tmp:
        runs = record_runs(Path(tmp) / "runs", "regda")
        cluster.connect(num_cpus=2)
        search = record_search(Path(tmp) / "search", "regda")
    golden = {"machine": machine(), "runs": runs, "search": search}
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
