"""Real gloo ranks in spawned processes, set up and torn down one way (the `spawn` fixture).

Why the teardown is what it is: in this torch (2.13), importing torch._dynamo after
init_process_group (the first optimizer step imports it, so every test that trains does) keeps
the default process group alive past destroy_process_group. Its gloo threads (gloo_tcp_loop,
pt_gloo_runloop; rank 0's TCPStore server) then run on into interpreter shutdown, where a
worker thread can need the GIL while Python finalises: the thread is force-unwound through a
noexcept frame and the rank dies with "terminate called without an active exception" (SIGABRT,
one run in many: tests/test_ranks.py shows the threads outliving the group). Imported before the
group exists, torch._dynamo holds nothing of it, and destroy_process_group frees it. So each
rank imports it first, runs the test's function, waits at a barrier (no collective still in
flight anywhere), destroys the group and checks that no gloo thread outlived it: a change that
brings the leak back fails the test that spawned it, every run, instead of one run in fifty.
"""

from __future__ import annotations

import os
from datetime import timedelta

GLOO_THREADS = ("gloo_tcp_loop", "pt_gloo_runloop", "pt_tcpstore_uv")


def threads() -> list[str]:
    """The names of this process's threads (Linux)."""
    tasks = os.listdir("/proc/self/task")
    return [open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks]


def spawn(fn, *args, world: int = 2, timeout_s: float | None = None) -> None:
    """Run fn(rank, world, *args) on `world` gloo ranks (spawned processes); raises what a
    rank raised. timeout_s: the group's collective timeout (default: torch's)."""
    import torch.multiprocessing as mp

    from regda_dist.distributed.local_cluster import free_port

    mp.spawn(_rank, args=(world, free_port(), timeout_s, fn, args), nprocs=world)


def _rank(rank: int, world: int, port: int, timeout_s, fn, args) -> None:
    import torch._dynamo  # noqa: F401 - before the group exists: see the module docstring
    import torch.distributed as dist

    timeout = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, **timeout
    )
    fn(rank, world, *args)
    dist.barrier()
    dist.destroy_process_group()
    left = [name for name in threads() if name in GLOO_THREADS]
    if left:
        raise RuntimeError(f"rank {rank}: gloo threads outlived the process group: {left}")
