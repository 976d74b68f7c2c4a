"""A search space: dotted config paths, each with one distribution, checked against its field;
the points it holds (the experiment's own values, a trial's sampled values).

Distributions: loguniform [lo, hi], uniform [lo, hi] (float fields), randint [lo, hi] (hi
exclusive, int fields), choice [values], grid [values] (every dimension a grid).

With `adapt.method: {choice: [...]}` the space is conditional: a trial samples a method, then
only the dimensions that method reads. A method reads the sections of its own knobs
(Method.sections: regda:, mean_teacher:, both for regda+mean_teacher) and every dimension
outside the methods' sections (optim., adapt., data. ...).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from regda_dist import config as C
from regda_dist.fields import field_at
from regda_dist.methods import adapters, get_method, owned_sections

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
    cfg = C.Config()
    try:
        f = field_at(cfg, key)
    except C.ConfigError:
        raise C.ConfigError(f"{where}: search.space: {key!r} is not a config field") from None
    value = C.get(cfg, key)
    if dataclasses.is_dataclass(value) or isinstance(value, list):
        raise C.ConfigError(f"{where}: search.space: {key!r} is not a single value")
    return f


METHOD = "adapt.method"


def methods(space: dict) -> list[str]:
    """The methods a conditional space samples ([] for a space without adapt.method)."""
    spec = space.get(METHOD, {})
    return list(spec.get("choice", spec.get("grid", [])))


def reads(method: str, key: str) -> bool:
    """Whether a trial of `method` samples dimension `key`."""
    section = key.split(".")[0]
    return section not in owned_sections() or section in get_method(method).sections


def dimensions(space: dict, method: str | None) -> dict:
    """The dimensions a trial of `method` samples (all of them without a method)."""
    return {k: v for k, v in space.items() if method is None or reads(method, k)}


def check_methods(space: dict, method: str, where: str) -> None:
    """A method dimension lists adaptation methods; every method dimension is read by some
    method the search runs (else it would be sampled for nothing)."""
    chosen = methods(space)
    if METHOD in space and (not chosen or set(chosen) - set(adapters())):
        raise C.ConfigError(
            f"{where}: search.space.{METHOD} must be a choice among {', '.join(adapters())} "
            f"(source-only and AdaBN are candidates of every search without it), got "
            f"{space[METHOD]!r}"
        )
    for key in space:
        if key != METHOD and not any(reads(m, key) for m in chosen or [method]):
            raise C.ConfigError(
                f"{where}: search.space.{key} is read by no method the search runs "
                f"({', '.join(chosen or [method])}): drop it or add its method to {METHOD}"
            )


def default_points(cfg: C.Config, space: dict) -> list[dict]:
    """The first trials: the config's own values, for each method of a conditional space (the
    config's own method first), where they lie inside the space."""
    own = cfg.adapt.method
    order = sorted(methods(space), key=lambda m: m != own) or [None]
    points = []
    for method in order:
        part = dimensions(space, method)
        values = {k: method if k == METHOD else _own_value(cfg, k) for k in part}
        if not _outside(values, part):
            points.append(values)
    return points


def startup_trials(cfg: C.Config, space: dict, tpe_startup: int, from_defaults: bool) -> int:
    """TPE's start-up trials (Optuna counts the enqueued defaults among them): tpe_startup, plus
    one for each method's defaults trial beyond the first, so a conditional space still gets
    tpe_startup - 1 random trials before TPE models anything."""
    extra = len(default_points(cfg, space)) - 1 if from_defaults and methods(space) else 0
    return tpe_startup + max(0, extra)


def default_point(cfg: C.Config, space: dict) -> dict | None:
    """The config's own values of the searched fields (of its own method's, in a conditional
    space), if every one lies inside the space."""
    points = default_points(cfg, space)
    own = [p for p in points if p.get(METHOD, cfg.adapt.method) == cfg.adapt.method]
    return own[0] if own else None


def outside_space(cfg: C.Config, space: dict) -> list[str]:
    """'key = value, outside DISTRIBUTION [args]' for each of the config's own values (of its
    own method's dimensions) that the space cannot sample."""
    part = dimensions(space, cfg.adapt.method if methods(space) else None)
    return _outside({k: _own_value(cfg, k) for k in part}, part)


def _outside(values: dict, space: dict) -> list[str]:
    outside = []
    for key, spec in space.items():
        value = values[key]
        ((kind, args),) = spec.items()
        inside = value in args if kind in ("choice", "grid") else args[0] <= value <= args[1]
        if not inside or kind == "randint" and value == args[1]:
            outside.append(f"{key} = {value!r}, outside {kind} {args}")
    return outside


def _own_value(cfg: C.Config, key: str) -> Any:
    return cfg.adapt_sigma if key == "adapt.sigma" else C.get(cfg, key)  # 0: data.sigma


def apply_params(cfg: C.Config, params: dict[str, Any]) -> C.Config:
    """A copy of cfg with a trial's sampled values (dotted keys) set and validated."""
    out = C.from_dict(copy.deepcopy(cfg.to_dict()))
    for key, value in params.items():
        C.apply(out, C.nest(key, value), f"trial parameter {key}", {})
    return C.validate(out, "trial parameters")
