"""A real multi-node Ray cluster on one machine, one node per loopback address, started with
`ray start` (for tests and benchmarks). It stops exactly the processes it started, found by its
own temp dir in their command lines: never `ray stop`, which stops every Ray on the machine."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def agent_ports() -> list[str]:
    """Free ports for a node's agents: their defaults (e.g. 52365) collide with any other Ray on
    the same address, and a raylet whose agent cannot bind dies with it."""
    names = (
        "dashboard-agent-listen",
        "dashboard-agent-grpc",
        "runtime-env-agent",
        "metrics-export",
    )
    return [f"--{name}-port={free_port()}" for name in names]


def auth_env(token: str) -> dict[str, str]:
    """Token authentication with the test's own token; nothing read from or written to ~/.ray."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}


def _owned(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def with_descendants(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes and all their descendants. Collect this BEFORE stopping anything: Ray's
    agents and actors rename their process titles (dropping the marker) and are re-parented to
    init once their raylet is gone."""
    found = {p.pid: p for p in procs}
    for p in procs:
        with suppress(psutil.NoSuchProcess):
            found.update({c.pid: c for c in p.children(recursive=True)})
    return list(found.values())


def reap(procs: list[psutil.Process], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after grace_s."""
    for p in procs:
        with suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def stop_owned(marker: str, grace_s: float = 10.0) -> None:
    """Stop every process whose command line names `marker` (our temp dir), with descendants."""
    reap(with_descendants(_owned(marker)), grace_s)


@contextmanager
def loopback_cluster(
    node_ips=("127.0.0.2", "127.0.0.3"), cpus_per_node: int = 1, gpus_per_node: int = 0
):
    """A real multi-node Ray cluster on this machine, one node per loopback address. Its
    dashboard (with the Jobs API) listens on 127.0.0.1; jobs run this venv's python (PATH).
    gpus_per_node: GPUs each node declares to Ray's accounting (none need exist)."""
    temp = tempfile.mkdtemp(prefix="rdray-", dir="/tmp")  # short: Unix socket paths are limited
    token = secrets.token_hex(16)
    env = {**os.environ, **auth_env(token), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    port = free_port(node_ips[0])
    dashboard_port = free_port()
    common = [f"--num-cpus={cpus_per_node}", f"--num-gpus={gpus_per_node}", "--disable-usage-stats"]
    try:
        subprocess.run(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                f"--node-ip-address={node_ips[0]}",
                f"--port={port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}",
                f"--temp-dir={temp}",
                *common,
                *agent_ports(),
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        for ip in node_ips[1:]:
            subprocess.run(
                [
                    str(BIN / "ray"),
                    "start",
                    f"--address={node_ips[0]}:{port}",
                    f"--node-ip-address={ip}",
                    *common,
                    *agent_ports(),
                ],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        yield {
            "address": f"{node_ips[0]}:{port}",
            "jobs_api": f"http://127.0.0.1:{dashboard_port}",
            "env": env,
            "temp": temp,
        }
    finally:
        stop_owned(temp, grace_s=3.0)  # Ray's agents ignore SIGTERM: they wait out the grace
        shutil.rmtree(temp, ignore_errors=True)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.2):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"condition not met within {timeout_s} s")
