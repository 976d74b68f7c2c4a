"""The teardown of spawned gloo ranks (tests/ranks.py), and why it is what it is: in this torch,
importing torch._dynamo after init_process_group keeps the default process group, and its gloo
threads, alive past destroy_process_group (into interpreter shutdown, where they can abort the
rank); imported before, it does not."""

import ast
from pathlib import Path

import pytest

from tests.ranks import GLOO_THREADS, threads


def _leak_check(rank: int, world: int, dynamo_after_init: bool, out: str) -> None:
    """Run outside tests/ranks.py's teardown: init, maybe import torch._dynamo, destroy, and
    record which gloo threads are left."""
    import sys

    import torch.distributed as dist

    from regda_dist.distributed.local_cluster import free_port

    del world
    if not dynamo_after_init:
        import torch._dynamo  # noqa: F401
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)  # fmt: skip
    if dynamo_after_init and "torch._dynamo" not in sys.modules:
        import torch._dynamo  # noqa: F401
    dist.destroy_process_group()
    left = [name for name in threads() if name in GLOO_THREADS]
    Path(out).write_text(",".join(left))


@pytest.mark.parametrize("after", [True, False])
def test_dynamo_imported_after_the_group_keeps_its_threads_past_destroy(
    tmp_path, after, bare_spawn
):
    """The torch behaviour tests/ranks.py works around (in a fresh process, where torch._dynamo
    is not yet imported): if this starts failing for `after`, torch fixed it."""
    out = tmp_path / "left.txt"
    bare_spawn(_leak_check, args=(1, after, str(out)), nprocs=1)
    left = out.read_text().split(",") if out.read_text() else []
    assert ("gloo_tcp_loop" in left) is after, left


def _trains_then_ends(rank: int, world: int, out: str) -> None:
    """A rank that imports torch._dynamo through an optimizer step, as every training test does."""
    import torch

    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    (w - 1).square().sum().backward()
    opt.step()
    Path(out, f"rank{rank}").touch()


def test_a_spawned_rank_that_trains_leaves_no_gloo_thread_behind(tmp_path, spawn):
    spawn(_trains_then_ends, str(tmp_path))  # raises if a rank's gloo threads outlived its group
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]


def test_no_test_spawns_ranks_but_through_the_fixtures():
    """No test calls torch.multiprocessing's spawn itself: the spawn fixture (tests/ranks.py)
    tears ranks down, and bare_spawn is for the teardown's own test above; both mark."""
    found = []
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr in ("spawn", "start_processes"):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(func)}")
    assert found == []
