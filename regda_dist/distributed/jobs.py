"""Ray Jobs: send an experiment to a cluster's Jobs API (http://HEAD:8265) and follow it.

The job runs `python -m regda_dist.cli train|tune EXPERIMENT --address auto ...` on the head
node, with this project (without .venv, runs/, data/, .git, tests/) as its working directory, so
the cluster runs the code that was submitted. The token comes from the environment only:
RAY_AUTH_TOKEN (sent as a bearer token), else Ray's own loader (RAY_AUTH_MODE=token with
RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). Every failure is one ClusterError line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regda_dist
from regda_dist.distributed.cluster import ClusterError, one_line

_JOBS_ADDRESS = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?/?$"
)
# What travels to the cluster (an allow-list: nothing else of the checkout, no environments,
# results, data, credentials or stray files), minus build junk at any depth.
SHIPPED = ("regda_dist", "experiments", "pyproject.toml", "README.md")
JUNK = ("__pycache__", "*.pyc", "*.egg-info")
SUBMITTED = "_submitted"  # where an experiment from outside the project travels
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# A head that has just started answers this until its job agent is up: retried for a while.
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_S = 60.0


class JobFailedError(ClusterError):
    """The job ended FAILED or STOPPED; the message is one line."""


def resolve_address(address: str | None) -> str:
    """The Jobs API URL: --address, else RAY_API_SERVER_ADDRESS, else RAY_ADDRESS (as `ray job`)."""
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    raw = (address or env or "").strip()
    if not raw:
        raise ClusterError(
            "no Jobs API address: pass --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS"
        )
    match = _JOBS_ADDRESS.match(raw)
    if not match:
        hint = " (a Ray Client/GCS address)" if raw.startswith("ray://") else ""
        raise ClusterError(
            f"address {raw!r}{hint}: expected the head's Jobs API, http://HOST:PORT "
            "(port 8265 by default)"
        )
    port = int(match["port"] or (443 if match["scheme"] == "https" else 8265))
    if not 0 < port < 65536:
        raise ClusterError(f"address {raw!r}: port {port} is out of range")
    return f"{match['scheme']}://{match['host']}:{port}"


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.contextmanager
def _errors(address: str):
    """Jobs SDK exceptions (auth, HTTP, connection) as one ClusterError line."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except ClusterError:
        raise
    except AuthenticationError as err:
        why = (
            "the token was refused: RAY_AUTH_TOKEN does not match the cluster's"
            if "failed" in err.message.split(":")[0]
            else "authentication required: set RAY_AUTH_TOKEN to the cluster's token"
        )
        raise ClusterError(f"Ray at {address}: {why}") from None
    except Exception as err:  # requests/aiohttp errors, RuntimeError of the SDK, ...
        first = one_line(err)
        if "404" in first and "does not exist" in first:
            raise ClusterError(f"Ray at {address}: {first.split(': ', 1)[-1]}") from None
        raise ClusterError(f"Ray Jobs API at {address}: {first}") from None


@dataclass
class Head:
    """A cluster head's Jobs API: its URL and Ray's JobSubmissionClient for it."""

    url: str
    sdk: Any


def client(address: str | None, timeout_s: float = 5.0) -> Head:
    """The Jobs API of a reachable head that accepts our token."""
    from ray.job_submission import JobSubmissionClient

    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)  # not the SDK's packaging chatter
    url = resolve_address(address)
    host, port = url.rsplit(":", 1)
    try:
        socket.create_connection((host.split("://")[1].strip("[]"), int(port)), timeout_s).close()
    except OSError as err:
        raise ClusterError(f"no Ray Jobs API answers at {url} ({err.strerror or err})") from None
    with _errors(url):
        # Its version check (/api/version) is authenticated: a missing or wrong token ends here.
        return Head(url, JobSubmissionClient(url, headers=_auth_headers()))


def command_for(experiment: Path) -> str:
    """`tune` for an experiment with a top-level `search:` block, else `train`."""
    from regda_dist import config as C

    values, _ = C.read_yaml(experiment)  # one-line errors naming the file (and line)
    return "tune" if "search" in values else "train"


def entrypoint(command: str, experiment: str, overrides: list[str], name: str | None) -> str:
    """The job's shell command. `--address auto`: the cluster of the job (Ray sets RAY_ADDRESS
    for a job's driver), never an embedded local Ray on the head."""
    args = ["python", "-m", "regda_dist.cli", command, experiment, "--address", "auto"]
    args += [a for o in overrides for a in ("--set", o)]
    args += ["--name", name] if name else []
    return shlex.join(args)


def project_root() -> Path | None:
    """The source tree this package runs from (with pyproject.toml), or None if installed."""
    root = Path(regda_dist.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def stage(experiment: Path, into: Path) -> str:
    """Copy the project (or the installed package) into `into`, plus the experiment when it
    lives outside the project; return the experiment's path relative to `into`."""
    root = project_root()
    ignore = shutil.ignore_patterns(*JUNK)
    if root is None:
        shutil.copytree(Path(regda_dist.__file__).parent, into / "regda_dist", ignore=ignore)
    else:
        into.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            if (root / name).is_dir():
                shutil.copytree(root / name, into / name, ignore=ignore)
            elif (root / name).is_file():
                shutil.copy2(root / name, into / name)
    experiment = experiment.resolve()
    if root is not None and experiment.is_relative_to(root):
        relative = experiment.relative_to(root)
        if (into / relative).is_file():
            return relative.as_posix()
    target = into / SUBMITTED / experiment.name
    target.parent.mkdir(exist_ok=True)
    shutil.copy2(experiment, target)
    return target.relative_to(into).as_posix()


def check(experiment: Path, overrides: list[str]) -> str:
    """The command the job will run; the experiment (and its search block) is checked here,
    before anything is sent (bad keys and values fail locally with the loader's one line)."""
    from regda_dist import config as C

    command = command_for(experiment)
    if command == "train":
        cfg = C.load(experiment, overrides)
    else:
        from regda_dist.search.spec import load_search

        cfg = load_search(experiment, overrides, pick_metric=False).cfg  # tune picks there
    if not Path(cfg.train.output_dir).is_absolute():
        raise C.ConfigError(
            f"train.output_dir {cfg.train.output_dir!r} is relative: on a cluster the results "
            "would stay in the job's temporary folder; pass --storage /a/path/every/node/mounts"
        )
    return command


def submit(head: Head, experiment: Path, overrides: list[str], name: str | None = None) -> str:
    """Submit the experiment to run `check(experiment, overrides)`'s command; the job id."""
    command = check(experiment, overrides)
    with tempfile.TemporaryDirectory(prefix="regda-submit-") as staging:
        shipped = stage(experiment, Path(staging))
        request = {
            "entrypoint": entrypoint(command, shipped, overrides, name),
            "runtime_env": {"working_dir": staging},
            "metadata": {"regda_dist": regda_dist.__version__, "experiment": shipped},
        }
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                with _errors(head.url):
                    return head.sdk.submit_job(**request)
            except ClusterError as err:
                if NO_AGENT not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(2)


def follow(head: Head, job_id: str, poll_s: float = 1.0, out=sys.stdout) -> str:
    """Print the job's logs as they grow until it ends; JobFailedError unless it SUCCEEDED."""
    printed = 0
    while True:
        with _errors(head.url):
            status = str(head.sdk.get_job_status(job_id).value)
            logs = head.sdk.get_job_logs(job_id)
        out.write(logs[printed:])
        out.flush()
        printed = len(logs)
        if status in TERMINAL:
            break
        time.sleep(poll_s)
    if status != "SUCCEEDED":
        raise JobFailedError(failure_line(job_id, status, logs))
    return status


def failure_line(job_id: str, status: str, logs: str) -> str:
    """One line: the job's own regda-dist error when it printed one, else its last log line."""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("regda-dist: error: ")]
    cause = ours[-1].removeprefix("regda-dist: error: ") if ours else (lines or ["no logs"])[-1]
    return f"job {job_id} {status}: {cause}"


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def listing(head: Head) -> str:
    """One line per submitted job (driver-only jobs without a submission id are left out)."""
    with _errors(head.url):
        found = [j for j in head.sdk.list_jobs() if j.submission_id]
    rows = [f"{'job id':<28}{'status':<11}{'started':<21}experiment"]
    for j in sorted(found, key=lambda j: j.start_time or 0):
        experiment = (j.metadata or {}).get("experiment", j.entrypoint)
        rows.append(
            f"{j.submission_id:<28}{j.status.value:<11}{_when(j.start_time):<21}{experiment}"
        )
    return "\n".join(rows)


def status(head: Head, job_id: str) -> str:
    with _errors(head.url):
        info = head.sdk.get_job_info(job_id)
    message = one_line(info.message) if info.message else ""
    return (
        f"{job_id}: {info.status.value}  started {_when(info.start_time)}  "
        f"ended {_when(info.end_time)}  {message}"
    ).rstrip()


def logs(head: Head, job_id: str) -> str:
    with _errors(head.url):
        return head.sdk.get_job_logs(job_id)


def stop(head: Head, job_id: str) -> str:
    with _errors(head.url):
        stopped = head.sdk.stop_job(job_id)
    return f"{job_id}: stop requested" if stopped else f"{job_id}: already ended"
