"""benchmarks/gpu_check.py in its tiny CPU mode, so the GPU check never rots: every section runs
(gloo stands in for NCCL), and it needs neither Ray nor an install (PYTHONPATH=.)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import runpy, sys
    sys.argv = ["gpu_check.py", "--smoke", "--out", {out!r}]
    try:
        runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    loaded = [m for m in sys.modules if m in ("ray", "optuna") or m.startswith(("ray.", "optuna."))]
    print("exit", code, "imported", loaded)
    """
)


def test_gpu_check_smoke_runs_every_section_without_ray(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(out=str(out))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "exit 0 imported []" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["device"] == "cpu" and result["train"]["fp32"]["images_per_s"] > 0
    # (b) steady state: >= 4 x budget timed iterations, every budgeted process alive
    assert [r["workers"] for r in result["loader"]] == [0, 2]
    assert [r["loader_processes"] for r in result["loader"]] == [0, 2]
    assert all(r["iterations"] >= max(10, 4 * r["workers"]) for r in result["loader"])
    assert all(result["collectives"].values()) and set(result["collectives"]) >= {
        "sync",
        "average",
        "agree",
        "reduce_sum",
        "gather",
        "evaluation",
    }
    phase2 = result["phase2"]  # (d): training loaders and the evaluation pool, all persistent
    assert phase2["finite"] and phase2["loader_processes"] == phase2["loader_budget"] == 4
    assert phase2["eval_s"] > 0 and phase2["checkpoint_s"] > 0
    overlap = result["overlap"]  # (e)
    assert overlap["ok"] and overlap["share_in_backward"] > 0.5
    text = out.with_suffix(".md").read_text()
    assert "(c) collectives on cpu: all passed" in text and "within the budget of 4" in text
    assert "launched during backward" in text


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_full_run_device_is_one_torch_cuda_set_device_accepts():
    """The branch --smoke skips: the CUDA device handed to torch.cuda.set_device. set_device
    first resolves the device's index (torch.cuda._utils._get_device_index), which refuses a
    device without one: checked here without CUDA, exactly as set_device would."""
    from torch.cuda._utils import _get_device_index

    gpu_check = _gpu_check_module()
    for name in (gpu_check.FULL.device, "cuda"):
        device = gpu_check.run_device(name)
        assert device.type == "cuda" and _get_device_index(device, optional=False) == 0
    assert gpu_check.run_device("cuda:1").index == 1
    assert gpu_check.run_device(gpu_check.SMOKE.device).type == "cpu"
