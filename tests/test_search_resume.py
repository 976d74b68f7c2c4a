"""A search SIGKILLed mid-run that `--resume` finishes without losing or repeating a finished
trial; Ctrl-C (SIGINT) during phase 1: exit 130 and the --resume command; an ASHA search
SIGKILLed after its rungs have records gets them back on --resume. Its own
module: the search runs in subprocesses that start their own embedded Ray (no other module's
fixture shares the 2 cores with it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import optuna
import psutil
import pytest

from regda_dist.distributed.local_cluster import reap, wait_for, with_descendants
from tests.test_search import _experiment, _study


def _while_running(proc, ready, interval_s: float, why=lambda: "") -> None:
    """Wait (up to 300 s) until ready(); fail, saying why(), if proc exits first."""

    def check() -> bool:
        if ready():
            return True
        assert proc.poll() is None, why()
        return False

    wait_for(check, 300, interval_s)


def _kill_when(command, env, log_path, ready) -> None:
    """Run `command` (output to log_path) until ready(), then SIGKILL it as a crash or an
    OOM kill would, and reap the Ray processes it left (only its own)."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _while_running(proc, ready, 0.5, log_path.read_text)
        owned = with_descendants([psutil.Process(proc.pid)])  # before the kill: Ray's processes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    reap([p for p in owned if p.is_running()], grace_s=5)


def test_sigkilled_search_resumes_without_losing_or_repeating_trials(tmp_path, starts_ray):
    # (Ctrl-C and its --resume line: test_ctrl_c_during_phase_1_... below; a SIGKILL after
    # ASHA's rungs have records: the slow test after this one)
    exp = _experiment(tmp_path, scheduler="fifo", num_samples=2)
    command = [sys.executable, "-m", "regda_dist.cli", "tune", str(exp), "--name", "k"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    trials_dir = tmp_path / "runs" / "k" / "synth_hand" / "trials"
    _kill_when(
        command, env, tmp_path / "first.log",
        lambda: list(trials_dir.glob("*/synth_hand/result.json")),
    )  # fmt: skip
    before = {
        p.parent.parent.name: p.stat().st_mtime for p in trials_dir.glob("*/synth_hand/result.json")
    }
    assert len(before) == 1

    again = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = {
        p.parent.parent.name: p.stat().st_mtime for p in trials_dir.glob("*/synth_hand/result.json")
    }
    assert len(after) == 2  # all finished
    assert all(after[t] == mtime for t, mtime in before.items())  # none re-run
    study = _study(tmp_path / "runs" / "k")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 2  # none repeated


@pytest.mark.slow  # ~50 s; `make test-all` runs it (the SIGKILL/--resume path: the test above)
def test_asha_rungs_survive_a_sigkill_and_resume(tmp_path, starts_ray):
    # Tuner.restore brings ASHA back from the pickle made when the Tuner was built: every rung
    # was empty after --resume, so trials that should stop ran on
    exp = _experiment(tmp_path, scheduler="asha", num_samples=2)  # rungs at epochs 1 and 2
    command = [sys.executable, "-m", "regda_dist.cli", "tune", str(exp), "--name", "a"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    trials_dir = tmp_path / "runs" / "a" / "synth_hand" / "trials"
    _kill_when(  # once the first trial has passed both rungs
        command, env, tmp_path / "first.log",
        lambda: list(trials_dir.glob("*/synth_hand/result.json")),
    )  # fmt: skip
    reached = len(list(trials_dir.glob("*/synth_hand/metrics.jsonl")))
    again = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    rebuilt = re.search(
        r"ASHA's rungs rebuilt from the trials' saved results \((.*)\)", again.stdout
    )
    assert rebuilt, again.stdout[-3000:]
    counts = dict(re.findall(r"epoch (\d+): (\d+)", rebuilt[1]))
    assert 1 <= int(counts["1"]) <= reached and int(counts["2"]) >= 1, rebuilt[0]
    states = {t.state.name for t in _study(tmp_path / "runs" / "a").trials}
    assert "RUNNING" not in states and states <= {"COMPLETE", "PRUNED", "FAIL"}


def test_ctrl_c_during_phase_1_of_a_search_exits_130_with_the_resume_command(tmp_path, starts_ray):
    # Ray Train's own SIGINT handler (registered by fit() in the main thread) made this exit 1,
    # silently
    exp = _experiment(tmp_path, scheduler="fifo", num_samples=2)
    command = [sys.executable, "-m", "regda_dist.cli", "tune", str(exp), "--name", "c"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    phase1 = tmp_path / "runs" / "c" / ".phase1"
    try:
        _while_running(proc, lambda: list(phase1.glob("*/*/workers/*")), 0.2)  # phase 1 trains
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            owned = with_descendants([psutil.Process(proc.pid)])
            proc.kill()
            reap(owned)
    err = err.decode()
    assert proc.returncode == 130, out.decode()[-2000:] + err[-2000:]
    assert f"continue with: regda-dist {' '.join(command[3:])} --resume" in err, err[-2000:]
