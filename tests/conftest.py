import os
import secrets

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


@pytest.fixture(scope="module")
def local_ray():
    """The embedded local Ray of regda-dist (loopback, dashboard on 127.0.0.1), shut down at
    the end of the module."""
    import psutil
    import ray

    from regda_dist.distributed import cluster
    from regda_dist.distributed.local_cluster import reap, with_descendants

    cluster.connect(num_cpus=2)  # token: the session's own (tests/conftest.py)
    yield
    started = with_descendants(psutil.Process().children())  # Ray's processes, started by us
    ray.shutdown()
    reap([p for p in started if p.is_running()], grace_s=5)
