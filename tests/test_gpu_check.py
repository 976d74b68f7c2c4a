"""benchmarks/gpu_check.py in its tiny CPU mode, so the GPU check never rots: every section runs
(gloo stands in for NCCL), run as the GPU machine runs it (`PYTHONPATH=. python -m benchmarks
gpu_check`), needing neither Ray nor Optuna nor an install."""

import json
import os
import subprocess
import sys

from benchmarks import ROOT, gpu_check


def imported(importtime_log: str) -> set[str]:
    """The top-level packages a `python -X importtime` run imported (its stderr)."""
    names = [line.split("|")[-1].strip() for line in importtime_log.splitlines()
             if line.startswith("import time:")]  # fmt: skip
    return {name.split(".")[0] for name in names}


def test_gpu_check_smoke_runs_every_section_without_ray(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-X", "importtime", "-m", "benchmarks", "gpu_check", "--smoke",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    loaded = imported(done.stderr)
    assert {"torch", "regda_dist", "benchmarks"} <= loaded  # the log is read as it should be
    assert not loaded & {"ray", "optuna"}, loaded & {"ray", "optuna"}
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["device"] == "cpu" and result["train"]["fp32"]["images_per_s"] > 0
    assert result["command"] == f"PYTHONPATH=. python -m benchmarks gpu_check --smoke --out {out}"
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
    assert 0 < phase2["eval_share"] < 1
    overlap = result["overlap"]  # (e)
    assert overlap["ok"] and overlap["share_in_backward"] > 0.5
    text = out.with_suffix(".md").read_text()
    assert "(c) collectives on cpu: all passed" in text and "within the budget of 4" in text
    assert "launched during backward" in text


def test_the_full_run_device_is_one_torch_cuda_set_device_accepts():
    """The branch --smoke skips: the CUDA device handed to torch.cuda.set_device. set_device
    first resolves the device's index (torch.cuda._utils._get_device_index), which refuses a
    device without one: checked here without CUDA, exactly as set_device would."""
    from torch.cuda._utils import _get_device_index

    for name in (gpu_check.FULL.device, "cuda"):
        device = gpu_check.run_device(name)
        assert device.type == "cuda" and _get_device_index(device, optional=False) == 0
    assert gpu_check.run_device("cuda:1").index == 1
    assert gpu_check.run_device(gpu_check.SMOKE.device).type == "cpu"
