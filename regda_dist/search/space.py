"""A search space: dotted config paths, each with one distribution, checked against its field;
the points it holds (the experiment's own values, a trial's sampled values).

Distributions: loguniform [lo, hi], uniform [lo, hi] (float fields), randint [lo, hi] (hi
exclusive, int fields), choice [values], grid [values] (every dimension a grid).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from regda_dist import config as C

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice", "grid")


def check_dimension(key: str, spec: Any, where: str) -> None:
    """One search dimension: an existing scalar field and a distribution its values fit."""
    f = _field(key, where)
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
        raise C.ConfigError(
            f"{where}: search.space.{key} must be {{DISTRIBUTION: [...]}} with DISTRIBUTION one "
            f"of {', '.join(DISTRIBUTIONS)}; got {spec!r}"
        )
    (kind, args), path = next(iter(spec.items())), f"search.space.{key}"
    if not isinstance(args, list) or not args:
        raise C.ConfigError(f"{where}: {path}.{kind} needs a non-empty list, got {args!r}")
    for value in args:
        C.check_value(path, value, f, where)
    if kind in ("loguniform", "uniform", "randint"):
        if len(args) != 2 or not args[0] < args[1]:
            raise C.ConfigError(
                f"{where}: {path}.{kind} needs [low, high] with low < high, got {args}"
            )
        hint = C.field_type(f)
        if hint not in (int, float):
            raise C.ConfigError(f"{where}: {key} is not numeric: use choice")
        if (kind == "randint") != (hint is int):
            need = "randint" if hint is int else "uniform or loguniform"
            raise C.ConfigError(f"{where}: {key} is {hint.__name__}: use {need}")
        if kind == "loguniform" and args[0] <= 0:
            raise C.ConfigError(f"{where}: {path}.loguniform needs low > 0, got {args[0]}")


def _field(key: str, where: str) -> dataclasses.Field:
    obj, f = C.Config(), None
    for part in key.split("."):
        fields = (
            {x.name: x for x in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        )
        if part not in fields:
            raise C.ConfigError(f"{where}: search.space: {key!r} is not a config field")
        f, obj = fields[part], getattr(obj, part)
    if dataclasses.is_dataclass(obj) or isinstance(obj, list):
        raise C.ConfigError(f"{where}: search.space: {key!r} is not a single value")
    return f


def default_point(cfg: C.Config, space: dict) -> dict | None:
    """The config's own values of the searched fields, if every one lies inside the space."""
    if outside_space(cfg, space):
        return None
    return {key: _own_value(cfg, key) for key in space}


def outside_space(cfg: C.Config, space: dict) -> list[str]:
    """'key = value, outside DISTRIBUTION [args]' for each of the config's own values that the
    space cannot sample."""
    outside = []
    for key, spec in space.items():
        value = _own_value(cfg, key)
        ((kind, args),) = spec.items()
        inside = value in args if kind in ("choice", "grid") else args[0] <= value <= args[1]
        if not inside or kind == "randint" and value == args[1]:
            outside.append(f"{key} = {value!r}, outside {kind} {args}")
    return outside


def _own_value(cfg: C.Config, key: str) -> Any:
    return cfg.adapt_sigma if key == "regda.sigma" else C.get(cfg, key)  # 0: data.sigma


def apply_params(cfg: C.Config, params: dict[str, Any]) -> C.Config:
    """A copy of cfg with a trial's sampled values (dotted keys) set and validated."""
    out = C.from_dict(copy.deepcopy(cfg.to_dict()))
    for key, value in params.items():
        C.apply(out, C.nest(key, value), f"trial parameter {key}", {})
    return C.validate(out, "trial parameters")
