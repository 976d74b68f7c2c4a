"""Connecting to Ray: the embedded local cluster (loopback, dashboard on 127.0.0.1) or an
existing one at --address. Failures end in one ClusterError line."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket

import ray

from regda_dist.distributed.local_cluster import free_port

# 127.0.0.1 as a node address is rewritten to the machine's outward address (ray #26293);
# other loopback addresses are kept. Ray 2.60's gcs_server/raylet/core workers still listen on
# all interfaces whatever the node address: token authentication (on by default for a local
# ray.init in 2.60) is what keeps others out; see README "Security".
LOCAL_NODE_IP = "127.0.0.2"
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


class ClusterError(RuntimeError):
    """Ray cannot be reached or used; the message is one line."""


def one_line(err: BaseException | str) -> str:
    """The first line of an error's message (its type's name where it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def parse_address(address: str) -> tuple[str, int]:
    match = _ADDRESS.match(address.strip())
    if not match or not 0 < int(match["port"]) < 65536:
        raise ClusterError(f"--address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    return match["host"].strip("[]"), int(match["port"])


_EMBEDDED: list[bool] = []  # set by connect(): whether this process started the embedded Ray


def connected() -> bool:
    return ray.is_initialized()


def embedded() -> bool:
    """Whether the connected Ray is the embedded local cluster this process started (one
    machine, no autoscaler: what is alive is all there is)."""
    return bool(_EMBEDDED) and _EMBEDDED[-1] and ray.is_initialized()


def own_state_api(dashboard_port: int) -> dict:
    """The job's runtime_env for the embedded Ray: every worker of the job (Ray Train's
    detached placement-group cleaner included) asks the State API of its own Ray. Left to find
    it, Ray looks for gcs_server processes; beside another Ray on the machine it finds two and
    raises "Found multiple active Ray instances", the cleaner's thread dies, and the placement
    group of a trial the scheduler stopped is never removed: a later trial waits for its CPUs
    forever (seen: a test search beside a running search)."""
    return {"env_vars": {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}"}}


@contextlib.contextmanager
def agent_port_chosen_by_the_os():
    """While the embedded Ray starts, its dashboard agent's HTTP port is 0 (the OS picks a free
    one; the agent reports it to its raylet). Its default, 52365, is bound on 127.0.0.1 and the
    node address by the first Ray on the machine; a second Ray's agent fails to bind it and,
    on a loaded machine, its raylet dies waiting for the agent's ports ("The current node timed
    out during startup"; seen: the test suite beside a running search). `ray start` has a flag
    for this port, ray.init has none (ray #34886), hence the narrow patch of the parameters
    ray.init builds; tests/test_cluster.py fails if a Ray upgrade stops honouring it."""
    params = ray._private.parameter.RayParams

    class Params(params):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", 0)
            super().__init__(*args, **kwargs)

    ray._private.parameter.RayParams = Params
    try:
        yield
    finally:
        ray._private.parameter.RayParams = params


def connect(address: str | None = None, num_cpus: int | None = None, timeout_s: float = 5.0):
    """ray.init for the embedded local cluster (address None) or an existing cluster
    (HOST:PORT, ray://HOST:PORT, or "auto" as in ray.init: what a submitted job passes)."""
    if ray.is_initialized():
        return
    level = logging.INFO if os.environ.get("REGDA_DIST_DEBUG") else logging.WARNING
    quiet = {  # Ray's INFO lines ('Reporting training result ...') only in debug mode
        "logging_level": level,
        "log_to_driver": True,
        "logging_config": ray.LoggingConfig(log_level=logging.getLevelName(level)),
    }
    if not address:
        # One machine: nothing preempts its nodes (Train's watcher would poll and log), and
        # training workers run at the niceness of Ray's own daemons, not below them
        # (benchmarks/results/train_throughput.md).
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        # Train's controller polls its workers every 2 s by default: a run whose function has
        # returned waited 4 s to be seen finished (measured: a tiny `train` 17.4 s at 2 s,
        # 11.4 s at 0.5 s, 11.3 s at 0.25 s); polling one machine's few workers is cheap
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        nice = {} if "RAY_worker_niceness" in os.environ else {"worker_niceness": 0}
        port = free_port("127.0.0.1")
        try:
            with agent_port_chosen_by_the_os():
                ray.init(
                    _node_ip_address=LOCAL_NODE_IP,
                    include_dashboard=True,
                    dashboard_host="127.0.0.1",
                    dashboard_port=port,  # fixed: Ray raises rather than move to another port
                    runtime_env=own_state_api(port),
                    num_cpus=num_cpus,
                    _system_config=nice,
                    **quiet,
                )
        except Exception as err:  # e.g. the port was taken between choosing and binding it
            ray.shutdown()
            message = f"the embedded Ray did not start: {one_line(err)}; run again"
            raise ClusterError(message) from None
        _EMBEDDED.append(True)
        return
    _EMBEDDED.append(False)
    if address != "auto":  # auto: $RAY_ADDRESS (Ray sets it for a job's driver) or this node's
        host, port = parse_address(address)
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as err:
            raise ClusterError(
                f"no Ray head answers at {host}:{port} ({err.strerror or err})"
            ) from None
    try:
        ray.init(address=address, **quiet)
    except Exception as err:  # ray raises ConnectionError, RuntimeError, auth errors, ...
        raise ClusterError(f"cannot connect to Ray at {address}: {one_line(err)}") from None
