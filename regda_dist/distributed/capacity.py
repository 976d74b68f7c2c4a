"""Can a request ever be placed? On a cluster that cannot grow (the embedded one, a fixed set of
nodes) Ray waits forever for resources it does not have, while Tune shows the trial as running
(RAY_NOTES: the CPU deadlock): CPUs and GPUs are checked before anything starts."""

from __future__ import annotations

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
    """`problem` on the connected cluster, as a ConfigError prefixed by `what` (a search's
    trials: "search: <task>")."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    unit = "trial" if what else "run"
    found = problem(scaling, ray.cluster_resources(), nodes, trials, driver_cpus, unit)
    if found:
        raise C.ConfigError(f"{what or 'scaling'}: {found}")
