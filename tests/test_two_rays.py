"""The embedded Ray beside another Ray on the same machine: its workers still ask their own
State API. Ray Train's placement-group cleaner asks it whether a trial's controller lives; when
it could not tell its Ray from another ("Found multiple active Ray instances") its thread died,
the placement group of a trial the scheduler stopped was never removed, and a later trial waited
for its CPUs forever (a test search beside a running search hung this way)."""

from __future__ import annotations

import psutil
import ray

from regda_dist.distributed import cluster
from regda_dist.distributed.local_cluster import loopback_cluster, reap, wait_for, with_descendants


@ray.remote(num_cpus=0)
class _Probe:
    def ping(self) -> int:
        return 1


@ray.remote(num_cpus=0)
def _alive(actor_id: str) -> bool:
    """What Ray Train's placement-group cleaner asks, from a worker of the job."""
    from ray.train.v2._internal.state.util import is_actor_alive

    return is_actor_alive(actor_id, timeout=30)


def test_the_embedded_rays_workers_ask_their_own_state_api_beside_another_ray():
    assert not ray.is_initialized()
    with loopback_cluster(node_ips=("127.0.0.3",)):
        assert any(p.info["name"] == "gcs_server" for p in psutil.process_iter(["name"]))
        cluster.connect(num_cpus=1)
        try:
            probe = _Probe.remote()
            assert ray.get(probe.ping.remote()) == 1
            actor_id = probe._actor_id.hex()
            assert ray.get(_alive.remote(actor_id)) is True
            ray.kill(probe)
            assert wait_for(lambda: ray.get(_alive.remote(actor_id)) is False, timeout_s=60)
        finally:
            started = with_descendants(psutil.Process().children())  # Ray's, started by us
            ray.shutdown()
            reap([p for p in started if p.is_running()], grace_s=5)
