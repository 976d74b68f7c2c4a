"""Adaptation methods: one module each (its config section, default search space, step class,
the model it evaluates and exports, label, head_init default, constraints, and the epoch from
which a scheduler may judge it), registered here in the order searches list them.

Adding a method: a module beside these whose METHOD is registered below; the contract test
(tests/test_methods.py) runs every registered method: it adapts, exports the model it declares,
and 2 workers equal 1. Nothing else lists methods: the config's sections and adapt.method
choices, the default search space, the step the trainer builds, the labels and the scheduler's
rungs are all read from here.
"""

from __future__ import annotations

from regda_dist.fields import ConfigError
from regda_dist.methods import (
    baselines,
    mean_teacher,
    prior_teacher,
    regda,
    regda_mean_teacher,
)
from regda_dist.methods.base import Method
from regda_dist.registry import Registry

METHODS: Registry[Method] = Registry("adapt.method", error=ConfigError)
for _method in (
    regda.METHOD,
    mean_teacher.METHOD,
    regda_mean_teacher.METHOD,
    prior_teacher.METHOD,
    baselines.SOURCE_ONLY,
    baselines.ADABN,
):
    METHODS.register(_method.name, _method)

# Knobs every adaptation method reads, searched by default: phase 2's label sigma and the
# learning rates of the feature generator and the main head.
SHARED_SPACE = {
    "adapt.sigma": {"choice": [1.5, 2.0, 3.0]},
    "optim.lr": {"loguniform": [0.01, 0.3]},
    "optim.backbone_lr": {"loguniform": [0.001, 0.03]},
}


def get_method(name: str) -> Method:
    return METHODS.get(name)


def adapters() -> list[str]:
    """The methods that train a phase 2, in registration order."""
    return [name for name in METHODS.ordered() if not METHODS.get(name).baseline]


def baseline_names() -> list[str]:
    """The methods without phase 2 (source-only, AdaBN): candidates of every run and search."""
    return [name for name in METHODS.ordered() if METHODS.get(name).baseline]


def sections() -> dict[str, type]:
    """Every config section a method declares: {section name: its dataclass}."""
    out: dict[str, type] = {}
    for name in METHODS.ordered():
        out.update(METHODS.get(name).declares)
    return out


def owned_sections() -> set[str]:
    """The sections whose knobs belong to methods: a trial samples only its method's."""
    return {s for name in METHODS.ordered() for s in METHODS.get(name).sections}


def default_space() -> dict:
    """The space a search without `search.space` samples: the methods searched by default, the
    shared knobs, then each method's own (a trial samples only its method's: search/space.py)."""
    searched = [name for name in adapters() if METHODS.get(name).searched_by_default]
    space = {"adapt.method": {"choice": searched}, **SHARED_SPACE}
    for name in searched:
        space.update(METHODS.get(name).space)
    return space


def blind_proxy_problems(method: str, metric: str) -> list[str]:
    """A selection metric that means nothing for `method` ("proxy/<name>" or a proxy name)."""
    m = METHODS.get(method)
    name = metric.removeprefix("proxy/")
    if name in m.blind_proxies:
        return [f"proxy {name!r} means nothing for {m.label} ({m.blind_proxies[name]})"]
    return []


def bones_problem(method: str, spec) -> str:
    """ "" or the line that refuses `method` on a keypoint set (`spec`) without bones."""
    if METHODS.get(method).needs_bones and not spec.skeleton:
        return (
            f"adapt.method {method} judges skeletons, and the keypoint set {spec.name!r} has no "
            "bones (data.keypoints' skeleton): use mean_teacher"
        )
    return ""
