"""Addresses are checked before anything connects."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")

from regda_dist.distributed.cluster import ClusterError, connect, parse_address  # noqa: E402
from tests.conftest import applies  # noqa: E402


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.2:6379", ("127.0.0.2", 6379)),
        ("ray://head.example:10001", ("head.example", 10001)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_parse_address_accepts_host_port(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    "address", ["", "head", "head:", "head:port", "http://head:8265x", "h:70000", "a b:1"]
)
def test_parse_address_rejects_malformed(address):
    with pytest.raises(ClusterError, match="HOST:PORT"):
        parse_address(address)


def test_connect_to_a_closed_port_fails_fast_with_the_address():
    with pytest.raises(ClusterError, match=r"127\.0\.0\.9:1"):
        connect("127.0.0.9:1", timeout_s=2)


@pytest.fixture
@applies("ray")
def own_ray():
    """For a test that starts the embedded Ray itself: at its end Ray is shut down and the
    processes it started (and only those) are stopped."""
    import psutil
    import ray

    from regda_dist.distributed.local_cluster import reap, with_descendants

    assert not ray.is_initialized()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    ray.shutdown()
    started = with_descendants(psutil.Process().children())
    reap([p for p in started if p.pid not in before and p.is_running()], grace_s=5)


def test_an_embedded_ray_whose_dashboard_port_is_taken_is_one_line(monkeypatch, own_ray):
    """The embedded Ray's dashboard port is chosen free, then bound by Ray: taken in between,
    the failure is one ClusterError line (and what Ray had started is stopped by the test)."""
    import socket

    import ray

    from regda_dist.distributed import cluster

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(cluster, "free_port", lambda host: taken.getsockname()[1])
        with pytest.raises(ClusterError, match=r"^the embedded Ray did not start: .*run again$"):
            connect(num_cpus=1)
        assert not ray.is_initialized()


def test_an_embedded_ray_beside_another_ray_gets_its_own_agent_port(own_ray):
    """Another Ray on the machine holds the dashboard agent's default port (52365) on 127.0.0.1
    and the node address: the embedded Ray's agent listens on a port of its own. Before, it
    could not bind, served no HTTP (port -1), and on a loaded machine its raylet died waiting
    for it ("The current node timed out during startup": the suite beside a search)."""
    import socket

    import ray

    from regda_dist.distributed import cluster

    held = []
    for host in ("127.0.0.1", cluster.LOCAL_NODE_IP):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent binds
        try:
            sock.bind((host, 52365))
            sock.listen()
            held.append(sock)
        except OSError:  # already held: another Ray on this machine (the condition tested)
            sock.close()
    try:
        params = ray._private.parameter.RayParams
        connect(num_cpus=1)
        assert ray._private.parameter.RayParams is params  # the patch lasts ray.init only
        (node,) = ray.nodes()
        assert node["Alive"]
        assert node["DashboardAgentListenPort"] not in (-1, 0, 52365)
        assert ray.get(ray.remote(lambda: 1).remote(), timeout=120) == 1
    finally:
        for sock in held:
            sock.close()


def test_concurrent_trials_epoch_lines_are_not_folded_by_ray_log_dedup():
    # Ray's driver folds lines that differ only in numbers and hex words, from different
    # workers, into "[repeated Nx across cluster]" (seen: two demo trials showed one epoch line).
    probe = """
import regda_dist.distributed  # before ray, as the CLI does
from ray._private.ray_logging import stdout_deduplicator as dedup
shown = []
lines = ["adapt 2/3  source/pck 50.1", "adapt 2/3  source/pck 48.7", "regda 2/3: 40/200 iterations"]
for text in lines:
  for pid, trial in ((1, "0a1b"), (2, "9c8d")):
    batch = {"ip": "127.0.0.2", "pid": pid, "lines": [f"[trial {trial}] {text}"]}
    shown += [line for out in dedup.deduplicate(batch) for line in out["lines"]]
print(len(shown))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_DEDUP")}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split()[-1] == "6", out.stdout + out.stderr
