"""A real two-node Ray cluster on loopback addresses (each node declaring one GPU to Ray's
accounting; no GPU needed), reached by --address, shared by this module's tests: Ray Train
places one worker per node; the capacity check refuses what the cluster can never place; and
what Ray's own accounting does with fractional GPUs: trials share a GPU, and two workers of one
run may too, which is why a fractional GPU with several workers is refused at load
(tests/test_capacity.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write_experiment

# Ray's accounting of fractional GPUs, from a driver on the cluster: four one-worker "trials"
# of 0.5 GPU (placement groups, as Ray Train reserves its workers) all placed on 2 GPUs, and one
# "run" of two 0.5-GPU workers packed on one node, where both see the same GPU id.
ACCOUNTING = """
import json, sys, ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init(address=sys.argv[1])

@ray.remote(num_cpus=0, num_gpus=0.5)
def where():
    return ray.get_runtime_context().get_node_id(), ray.get_gpu_ids()

def run(bundles):
    pg = placement_group([{"GPU": 0.5}] * bundles, strategy="PACK")
    ray.get(pg.ready(), timeout=60)
    strategy = PlacementGroupSchedulingStrategy(placement_group=pg)
    return pg, [where.options(scheduling_strategy=strategy).remote() for _ in range(bundles)]

trials = [run(1) for _ in range(4)]
seen = [ray.get(refs[0], timeout=60) for _, refs in trials]
for pg, _ in trials:
    ray.util.remove_placement_group(pg)
_, refs = run(2)
print(json.dumps({"trials": seen, "workers": ray.get(refs, timeout=60)}))
"""


def _cli(cluster, *args):
    return subprocess.run(
        [sys.executable, "-m", "regda_dist.cli", *args, "--address", cluster["address"]],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=120,  # the check comes before any worker: an unchecked request waits forever
    )


def test_a_cluster_at_an_address_refuses_what_it_can_never_place(tmp_path, two_nodes):
    exp = write_experiment(tmp_path, scaling={"num_workers": 4})
    (tmp_path / "s").mkdir()
    search = write_experiment(
        tmp_path / "s",
        scaling={"use_gpu": True, "cpus_per_worker": 0.5},
        search={"num_samples": 3, "max_concurrent": 3},
    )
    train = _cli(two_nodes, "train", str(exp))
    tune = _cli(two_nodes, "tune", str(search))
    accounting = subprocess.run(
        [sys.executable, "-c", ACCOUNTING, two_nodes["address"]],
        env=two_nodes["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert train.returncode == 2, train.stderr[-2000:]
    assert train.stderr.strip().count("\n") == 0
    assert "4 worker(s) x 1 CPU need 4 CPUs but the Ray cluster has 2" in train.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    assert tune.returncode == 2, tune.stderr[-2000:]
    assert tune.stderr.strip().count("\n") == 0
    assert "3 concurrent trial(s) need 3 GPUs" in tune.stderr, tune.stderr
    assert not (tmp_path / "s" / "runs").exists()

    assert accounting.returncode == 0, accounting.stderr[-3000:]
    seen = json.loads(accounting.stdout.strip().splitlines()[-1])
    places = [(node, tuple(ids)) for node, ids in seen["trials"]]
    assert len(places) == 4 and all(len(ids) == 1 for _, ids in places)
    assert all(places.count(p) == 2 for p in places)  # 4 trials on 2 GPUs: 2 on each
    (first, ids_a), (second, ids_b) = seen["workers"]
    assert first == second and ids_a == ids_b  # one run's two workers, one GPU: NCCL refuses


def test_two_node_cluster_places_one_worker_per_node(tmp_path, two_nodes):
    exp = write_experiment(tmp_path, scaling={"num_workers": 2, "cpus_per_worker": 1.0})
    done = subprocess.run(
        [sys.executable, "-m", "regda_dist.cli", "train", str(exp), "--address",
         two_nodes["address"]],
        env=two_nodes["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RegDA" in done.stdout
    workers = [
        json.loads(p.read_text())
        for p in sorted((tmp_path / "runs" / "tiny" / "workers").iterdir())
    ]
    assert {w["node_ip"] for w in workers} == {"127.0.0.2", "127.0.0.3"}
    assert {w["node_rank"] for w in workers} == {0, 1}
    assert (tmp_path / "runs" / "tiny" / "result.json").is_file()
