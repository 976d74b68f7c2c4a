import os
import secrets
from pathlib import Path

import pytest
import yaml

from regda_dist import config as C

# Ray reads its auth mode when imported: the test session's own token is set before any import of
# ray, so tests never read or write ~/.ray/auth_token and never join a cluster of the user's.
os.environ.update(
    {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
)

TINY = [
    "data.image_size=32", "data.heatmap_size=16", "data.num_train=24", "data.num_val=8",
    "data.num_test=8", "model.backbone=small_resnet", "model.upsample_channels=8",
    "pretrain.epochs=2", "pretrain.iters_per_epoch=2", "pretrain.batch_size=4",
    "pretrain.milestones=[1]", "adapt.epochs=2", "adapt.iters_per_epoch=2",
    "adapt.batch_size=4", "regda.warm_max_iters=2", "train.progress=false",
    "train.eval_batch_size=8",
]  # fmt: skip


@pytest.fixture
def tiny_cfg(tmp_path):
    """A config that trains both phases in about a second, with its data under tmp_path."""
    return C.load(
        None, [*TINY, f"data.root={tmp_path / 'data'}", f"train.output_dir={tmp_path / 'runs'}"]
    )


def write_experiment(tmp_path, **sections) -> "os.PathLike":
    """tmp_path/tiny.yaml: the TINY overrides as an experiment file, data and runs under
    tmp_path; `sections` (e.g. scaling={"num_workers": 2}) are merged into it."""
    values: dict = {}
    for item in TINY:
        key, raw = item.split("=", 1)
        section, name = key.split(".")
        values.setdefault(section, {})[name] = yaml.safe_load(raw)
    values["data"]["root"] = str(tmp_path / "data")
    values["train"]["output_dir"] = str(tmp_path / "runs")
    for section, entries in sections.items():
        values.setdefault(section, {}).update(entries)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# ------------------------------------------------------------------------------------------
# Markers are applied by the fixtures: a test that uses a fixture declared with `applies(mark)`
# gets the mark at collection (`ray`: real Ray processes; `multiprocess`: spawned gloo ranks).
# `make test-fast` leaves both out; no module marks its tests by hand.

FIXTURE_MARKS: dict[str, str] = {}


def applies(mark: str):
    """Declare that every test using the decorated fixture gets `mark` (put it under
    @pytest.fixture)."""

    def declare(fixture):
        FIXTURE_MARKS[fixture.__name__] = mark
        return fixture

    return declare


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name in FIXTURE_MARKS:
                item.add_marker(FIXTURE_MARKS[name])


def _ray_sessions() -> set[str]:
    """The session folders (Ray's default temp dir) of the Rays this pytest process, or a
    process it started that still runs, started: Ray names each session after the PID of the
    process that started it. Rays started by anything else on the machine (another test run, a
    search) are not this test's: counting them failed a multi-process test while a search ran
    beside it (scripts/repeat_tests.sh, 2026-12-07). The cost: a Ray started by a subprocess
    that has exited by the test's end (a CLI run) is not seen; those tests use starts_ray."""
    import psutil

    ours = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    return {
        str(p)
        for p in Path("/tmp/ray").glob("session_*")
        if p.name.rsplit("_", 1)[-1].isdigit() and int(p.name.rsplit("_", 1)[-1]) in ours
    }


@pytest.fixture(autouse=True)
def _a_test_that_starts_ray_is_marked(request):
    """A test that started a Ray session without a Ray fixture fails: its mark would be
    missing, and `make test-fast` would start Ray."""
    before = _ray_sessions()
    yield
    if "ray" not in request.node.keywords and _ray_sessions() - before:
        pytest.fail(
            "this test started Ray without a fixture that marks it (local_ray, own_ray, "
            "two_nodes, starts_ray)"
        )


@pytest.fixture
@applies("multiprocess")
def spawn():
    """tests/ranks.py spawn(fn, *args, world=2, timeout_s=None): fn(rank, world, *args) on real
    gloo ranks in spawned processes, torn down so that none can abort at exit."""
    from tests.ranks import spawn as run

    return run


@pytest.fixture
@applies("multiprocess")
def bare_spawn():
    """torch.multiprocessing.spawn itself, for a test of the teardown tests/ranks.py does."""
    import torch.multiprocessing as mp

    return mp.spawn


@pytest.fixture
@applies("ray")
def starts_ray():
    """For a test whose subprocesses start their own Ray (a CLI run without --no-ray): at its
    end, the Ray processes they left (and only those) are stopped."""
    import psutil

    from regda_dist.distributed.local_cluster import reap, with_descendants

    before = {p.pid for p in with_descendants(psutil.Process().children())}
    yield
    left = with_descendants(psutil.Process().children())
    reap([p for p in left if p.pid not in before and p.is_running()], grace_s=5)


@pytest.fixture(scope="module")
@applies("ray")
def two_nodes():
    """A real two-node Ray on loopback addresses (127.0.0.2, 127.0.0.3: 1 CPU and 1 GPU of Ray's
    accounting each, no GPU needed) for a module's tests: distributed/local_cluster.py
    loopback_cluster, its processes (and only those) stopped at the end."""
    from regda_dist.distributed.local_cluster import loopback_cluster

    with loopback_cluster(gpus_per_node=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
@applies("ray")
def local_ray():
    """The embedded local Ray of regda-dist (loopback, dashboard on 127.0.0.1), started by the
    first test that asks for it and shut down at the end of the session (one start for every
    module: a start and a stop cost about 10 s on 2 cores)."""
    import psutil
    import ray

    from regda_dist.distributed import cluster
    from regda_dist.distributed.local_cluster import reap, with_descendants

    cluster.connect(num_cpus=2)  # token: the session's own (tests/conftest.py)
    yield
    started = with_descendants(psutil.Process().children())  # Ray's processes, started by us
    ray.shutdown()
    reap([p for p in started if p.is_running()], grace_s=5)
