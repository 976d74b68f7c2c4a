"""Can a request ever be placed? Ray waits forever for resources a cluster cannot have, while
Tune shows the trial as pending (RAY_NOTES: the CPU deadlock): CPUs and GPUs are checked before
anything starts, on the cluster the run uses (the embedded one, or --address / submit's), counting
the node types its autoscaler may add where it publishes them."""

from __future__ import annotations

import json

import ray

from regda_dist import config as C

FIELDS = {"CPU": "scaling.cpus_per_worker", "GPU": "scaling.gpus_per_worker"}


def worker_resources(scaling: C.ScalingConfig) -> dict[str, float]:
    """What one Ray Train worker reserves: its CPUs and, with use_gpu, gpus_per_worker GPUs
    (a fraction lets several small trials share a GPU)."""
    gpus = {"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {}
    return {"CPU": scaling.cpus_per_worker, **gpus}


def problem(
    scaling: C.ScalingConfig,
    total: dict[str, float],
    nodes: list[dict[str, float]],
    trials: int = 1,
    driver_cpus: float = 0.0,
    unit: str = "run",
) -> str | None:
    """Why `trials` concurrent runs of scaling.num_workers workers (each run's Tune driver holding
    driver_cpus) can never be placed on a cluster with `total` resources and these alive nodes'
    resources; None if they can. One line."""
    worker = worker_resources(scaling)
    if nodes and not any(all(n.get(k, 0) + 1e-9 >= v for k, v in worker.items()) for n in nodes):
        wants = " + ".join(f"{v:g} {k}" for k, v in worker.items())
        have = ", ".join(" / ".join(f"{n.get(k, 0):g} {k}" for k in worker) for n in nodes[:4])
        return (
            f"a worker needs {wants} on one node and no node has that (nodes: {have}): "
            "it can never be placed"
        )
    for key, per_worker in worker.items():
        one = scaling.num_workers * per_worker + (driver_cpus if key == "CPU" else 0.0)
        have = total.get(key, 0.0)
        if one > have + 1e-9:
            return (
                f"a {unit} can never be placed: {scaling.num_workers} worker(s) x {per_worker:g} "
                f"{key} need {one:g} {key}s but the Ray cluster has {have:g}; lower "
                f"{FIELDS[key]} or the workers"
            )
        if trials * one > have + 1e-9:
            return (
                f"{trials} concurrent trial(s) need {trials * one:g} {key}s (driver and workers) "
                f"but the Ray cluster has {have:g}; lower search.max_concurrent or {FIELDS[key]}"
            )
    return None


def check(scaling: C.ScalingConfig, trials: int = 1, driver_cpus: float = 0.0, what="") -> None:
    """`problem` on the connected cluster and what its autoscaler can add, as a ConfigError
    prefixed by `what` (a search's trials: "search: <task>"). A cluster that may grow by what
    it does not say leaves the request unchecked, and says so."""
    total = dict(ray.cluster_resources())
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    grows = growth()
    if grows is UNKNOWN:
        print(f"note: {what or 'scaling'}: the Ray cluster may add nodes it does not describe "
              "(an autoscaler); what it can never place is not checked", flush=True)  # fmt: skip
        return
    if grows:
        shapes, most = grows
        nodes = nodes + shapes
        total = {k: max(total.get(k, 0.0), most.get(k, 0.0)) for k in {*total, *most}}
    unit = "trial" if what else "run"
    found = problem(scaling, total, nodes, trials, driver_cpus, unit)
    if found:
        raise C.ConfigError(f"{what or 'scaling'}: {found}")


UNKNOWN = object()


def growth():
    """What the connected cluster may add beyond its alive nodes: None where nothing (the
    embedded cluster; nodes started by hand, whose head's monitor runs Ray's read-only
    provider), (node shapes, the most of each resource the cluster may reach) where the
    autoscaler's cluster config is in the GCS, UNKNOWN otherwise (an autoscaler that does not
    publish what it can add, as v1's `ray up` and v2 do in Ray 2.60; a head whose monitor has
    not reported yet). Read through Ray's private state API, as Ray Data does."""
    from regda_dist.distributed import cluster

    if cluster.embedded():
        return None
    try:
        from ray._private import ray_constants
        from ray._private.state import state
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        from ray.experimental.internal_kv import _internal_kv_get

        config = state.get_cluster_config()
        groups = list(config.node_group_configs) if config is not None else []
        most = state.get_max_resources_from_cluster_config() if groups else None
        status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        v2 = is_autoscaler_v2(fetch_from_server=True)
    except Exception:  # a private API that moved: say the check is skipped
        return UNKNOWN
    return growth_from(groups, most, status, v2)


def growth_from(groups, most: dict | None, status: bytes | str | None, v2: bool):
    """growth() from what the GCS holds: the autoscaler's node groups (NodeGroupConfig:
    resources, max_count) and their most resources, v1's status report (JSON), whether v2
    runs."""
    if groups:
        shapes = [{k: float(v) for k, v in g.resources.items()} for g in groups if g.max_count]
        return shapes, {k: float(v) for k, v in (most or {}).items()}
    if v2 or not status:
        return UNKNOWN
    from ray.autoscaler._private.util import format_readonly_node_type

    report = json.loads(status).get("autoscaler_report") or {}
    types = (report.get("node_type_mapping") or {}).items()
    readonly = bool(types) and all(kind == format_readonly_node_type(n) for n, kind in types)
    return None if readonly else UNKNOWN
