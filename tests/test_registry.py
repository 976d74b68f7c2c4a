"""One registry shape: backbones, proxies, dataset readers and keypoint sets register, create and
list the same way, and an unknown name is one line that lists the registered ones."""

import pytest

from regda_dist.data.keypoints import KEYPOINT_SETS
from regda_dist.data.registry import DATASETS
from regda_dist.data.samples import DatasetError
from regda_dist.models.backbones import BACKBONES
from regda_dist.proxies.base import PROXIES
from regda_dist.registry import Registry


def test_register_create_list():
    shapes = Registry("shape")
    shapes.register("square", lambda side: side * side)
    shapes.register("line", lambda side: side)
    assert shapes.list() == ["line", "square"] and "square" in shapes and "disc" not in shapes
    assert shapes.create("square", 3) == 9 and shapes.get("line")(2) == 2
    with pytest.raises(ValueError, match=r"^unknown shape 'disc'; registered: line, square$"):
        shapes.create("disc", 1)


@pytest.mark.parametrize("name", ["", "square"])
def test_a_name_is_registered_once_and_never_empty(name):
    shapes = Registry("shape")
    shapes.register("square", 1)
    with pytest.raises(ValueError, match="empty or registered twice"):
        shapes.register(name, 2)


def test_populate_registers_the_built_in_entries_on_first_use():
    calls = []
    shapes = Registry("shape", KeyError, lambda: calls.append(shapes.register("dot", 0)))
    assert not calls and shapes.list() == ["dot"] and shapes.list() == ["dot"]
    assert calls == [0]  # once
    with pytest.raises(KeyError, match="unknown shape 'disc'"):
        shapes.get("disc")


@pytest.mark.parametrize(
    ("registry", "error", "builtin"),
    [(BACKBONES, ValueError, "small_resnet"), (PROXIES, ValueError, "aug_consistency"),
     (DATASETS, DatasetError, "coco"), (KEYPOINT_SETS, ValueError, "hand21")],
)  # fmt: skip
def test_every_project_registry_has_the_one_shape(registry, error, builtin):
    import regda_dist.proxies  # noqa: F401 - registers the proxies

    assert isinstance(registry, Registry) and builtin in registry.list()
    with pytest.raises(error, match=rf"unknown {registry.kind} 'nope'; registered: .*{builtin}"):
        registry.get("nope")
