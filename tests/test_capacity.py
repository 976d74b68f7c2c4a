"""Whether a request can ever be placed, on fake cluster resources (no Ray started): GPUs count
like CPUs, fractions let several trials share a GPU, and what can never run is one line."""

import pytest

from regda_dist import config as C
from regda_dist.distributed.capacity import problem, worker_resources

NODE_8GPU = {"CPU": 64.0, "GPU": 8.0}


def _scaling(*sets):
    return C.load(None, ["scaling.use_gpu=true", *sets]).scaling


def test_fractional_gpus_let_several_trials_share_one():
    quarter = _scaling("scaling.gpus_per_worker=0.25")
    assert worker_resources(quarter) == {"CPU": 1.0, "GPU": 0.25}
    one_gpu = {"CPU": 8.0, "GPU": 1.0}
    assert problem(quarter, one_gpu, [one_gpu], trials=4, driver_cpus=0.05) is None
    too_many = problem(quarter, one_gpu, [one_gpu], trials=5, driver_cpus=0.05)
    assert too_many.startswith("5 concurrent trial(s) need 1.25 GPUs")
    assert "lower search.max_concurrent or scaling.gpus_per_worker" in too_many


def test_a_trial_that_can_never_be_placed_is_one_line():
    two_workers = _scaling("scaling.num_workers=2")  # 1 GPU each by default
    cpu_only = {"CPU": 16.0}
    found = problem(two_workers, cpu_only, [cpu_only], unit="trial")
    assert found.startswith("a worker needs 1 CPU + 1 GPU on one node and no node has that")
    small = [{"CPU": 8.0, "GPU": 1.0}]
    found = problem(two_workers, {"CPU": 8.0, "GPU": 1.0}, small, unit="trial")
    assert found == (
        "a trial can never be placed: 2 worker(s) x 1 GPU need 2 GPUs but the Ray cluster has 1; "
        "lower scaling.gpus_per_worker or the workers"
    )
    wide = _scaling("scaling.cpus_per_worker=48")
    assert "no node has that" in problem(wide, {"CPU": 128, "GPU": 8}, [{"CPU": 32, "GPU": 2}] * 4)
    assert problem(wide, NODE_8GPU, [NODE_8GPU]) is None
    assert "\n" not in found


def test_cpus_are_still_counted_and_cpu_runs_ask_for_no_gpu():
    cpu = C.load(None, ["scaling.num_workers=2", "scaling.cpus_per_worker=2"]).scaling
    assert worker_resources(cpu) == {"CPU": 2.0}
    two = {"CPU": 2.0}
    assert "need 4 CPUs but the Ray cluster has 2" in problem(cpu, two, [two])
    one = C.load(None, ["scaling.cpus_per_worker=0.9"]).scaling
    assert problem(one, two, [two], trials=2, driver_cpus=0.05) is None
    assert problem(one, two, [two], trials=3, driver_cpus=0.05).startswith("3 concurrent trial")


def test_a_worker_gets_one_whole_gpu_or_a_fraction_only_alone():
    # a worker trains on one cuda:N (more would sit idle); two fractional workers of one run
    # may share a GPU, which NCCL refuses ("Duplicate GPU detected")
    with pytest.raises(C.ConfigError, match=r"gpus_per_worker \(2\) above 1: a worker trains on"):
        C.load(None, ["scaling.use_gpu=true", "scaling.gpus_per_worker=2"])
    with pytest.raises(C.ConfigError, match=r"gpus_per_worker \(1.5\) above 1"):
        C.load(None, ["scaling.use_gpu=true", "scaling.gpus_per_worker=1.5"])
    with pytest.raises(C.ConfigError) as refused:
        _scaling("scaling.gpus_per_worker=0.5", "scaling.num_workers=2")
    assert "with scaling.num_workers (2): Ray may put two workers" in str(refused.value)
    assert "use num_workers: 1, or gpus_per_worker: 1" in str(refused.value)
    assert _scaling("scaling.gpus_per_worker=0.5").gpus_per_worker == 0.5  # one worker a trial
    assert _scaling("scaling.num_workers=2").gpus_per_worker == 1.0
    # without use_gpu the field is not read
    assert C.load(None, ["scaling.gpus_per_worker=2"]).scaling.gpus_per_worker == 2.0


def test_what_a_cluster_may_add_is_read_from_what_ray_publishes():
    # the embedded cluster and hand-started nodes (read-only monitor) cannot grow; published
    # node groups say what an autoscaler can add; anything else is unknown: not refused
    import json

    from ray.autoscaler._private.util import format_readonly_node_type
    from ray.core.generated.autoscaler_pb2 import NodeGroupConfig

    from regda_dist.distributed.capacity import UNKNOWN, growth_from

    gpu = NodeGroupConfig(name="gpu", resources={"CPU": 8, "GPU": 1}, max_count=4)
    idle = NodeGroupConfig(name="off", resources={"CPU": 64}, max_count=0)
    shapes, most = growth_from([gpu, idle], {"CPU": 32, "GPU": 4}, None, v2=True)
    assert shapes == [{"CPU": 8.0, "GPU": 1.0}] and most == {"CPU": 32.0, "GPU": 4.0}

    def status(mapping):
        return json.dumps({"autoscaler_report": {"node_type_mapping": mapping}}).encode()

    nodes = {n: format_readonly_node_type(n) for n in ("a1", "b2")}
    assert growth_from([], None, status(nodes), v2=False) is None  # nodes started by hand
    assert growth_from([], None, status({"a1": "ray.worker.gpu"}), v2=False) is UNKNOWN
    assert growth_from([], None, status({}), v2=False) is UNKNOWN  # no report yet
    assert growth_from([], None, None, v2=False) is UNKNOWN
    assert growth_from([], None, status(nodes), v2=True) is UNKNOWN
    # a worker no alive node fits, but a node type the autoscaler can add does
    two = _scaling("scaling.num_workers=2")
    alive = [{"CPU": 4.0}]
    assert "no node has that" in problem(two, {"CPU": 4.0}, alive)
    assert problem(two, {"CPU": 32.0, "GPU": 4.0}, alive + shapes) is None
