"""Fixed-seed numbers of every adaptation method and baseline, and of a search over methods:
recorded once before the method registry (tests/data/numbers.json: the runs by
`python -m tests.numbers record`, the search by tests/test_search.py's search over methods, both
on the code of before), compared bit for bit by tests/test_numbers.py and that search's test,
so that moving code never changes what a run computes.

A run's numbers are its result.json (every metric of source-only, AdaBN, the adapted model's
last and selected epochs, the candidates) without times and paths, and a digest of the weights
it writes (model.pt). One torch thread: the same reduction order wherever it runs.
"""

from __future__ import annotations

import hashlib
import json
import math
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


def search_numbers(search_dir: Path) -> list[dict]:
    """Every trial's parameters and run numbers, in the order of their parameters."""
    trials = []
    for params_file in search_dir.glob("*/trials/*/params.json"):
        (run_dir,) = [p.parent for p in params_file.parent.glob("*/result.json")]
        trials.append({"params": json.loads(params_file.read_text()), **run_numbers(run_dir)})
    return sorted(trials, key=lambda t: json.dumps(t["params"], sort_keys=True))


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def same_machine() -> bool:
    return golden()["machine"] == machine()


def renamed(value):
    """A result recorded before the registry, in today's keys ("regda" -> "adapted")."""
    if isinstance(value, dict):
        return {("adapted" if k == "regda" else k): renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v) for v in value]
    return value


def assert_same(got, want, where=""):
    if same_machine():
        assert got == want, where
        return
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-3) or got == want, where
    else:
        assert got == want, where


def assert_as_before(got: dict, want: dict, where: str) -> None:
    assert_same(got["result"], renamed(want["result"]), where)
    if same_machine():
        assert got["model"] == want["model"], f"{where}: model.pt differs"


def assert_search_as_before(search_dir: Path) -> None:
    """The search's every trial: its parameters and run numbers as recorded."""
    trials, want = search_numbers(search_dir), golden()["search"]
    assert [t["params"] for t in trials] == [t["params"] for t in want]
    for got, old in zip(trials, want, strict=True):
        assert_as_before(got, old, json.dumps(got["params"]))


def main(argv: list[str]) -> int:
    import tempfile

    if argv != ["record"]:
        print("usage: python -m tests.numbers record", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        runs = record_runs(Path(tmp) / "runs", "regda")
    golden = {**json.loads(GOLDEN.read_text()), "machine": machine(), "runs": runs}
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
