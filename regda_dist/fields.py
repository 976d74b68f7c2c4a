"""Typed configuration fields: what every config section is built with.

A section is a dataclass whose fields carry their default, type and range (`bounded`). The core
sections live in config/, each adaptation method's own section in its module (methods/): both
use this module, which imports nothing of the project, so no layer has to import upwards to
declare a section.

Every bad value is a ConfigError of one line that names the key and where it was written;
a file in an older layout that is still read as the new one says so with an OldFormat warning
(the command line prints it as one `note:` line).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value; the message is one line that names what is wrong and where."""


class OldFormat(FutureWarning):
    """A file written in an older layout, read as the current one (one line: what moved)."""


def bounded(lo=None, hi=None, choices=None) -> dict:
    """Field metadata: the range (inclusive) or the choices a value must lie in."""
    return {"min": lo, "max": hi, "choices": choices}


_HINTS = {
    "str": str, "int": int, "float": float, "bool": bool, "list[int]": list[int],
    "list[str]": list[str], "list": list, "dict": dict,
}  # fmt: skip


def field_type(f: dataclasses.Field) -> Any:
    return f.type if not isinstance(f.type, str) else _HINTS[f.type]


def _is_type(value: Any, hint: type) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_value(path: str, value: Any, f: dataclasses.Field, where: str):
    """value, converted (int -> float for float fields), if it fits the field's type and range."""
    hint = field_type(f)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(_is_type(v, item) for v in value):
            raise ConfigError(f"{where}: {path} must be a list of {item.__name__}, got {value!r}")
        return list(value)
    if origin in (typing.Union, types.UnionType):
        hint = typing.get_args(hint)[0]
    if not _is_type(value, hint):
        raise ConfigError(f"{where}: {path} must be {hint.__name__}, got {value!r}")
    value = float(value) if hint is float else value
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{where}: {path} must be a finite number, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: {path} must be one of {list(meta['choices'])}, got {value!r}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{where}: {path} must be >= {meta['min']}, got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{where}: {path} must be <= {meta['max']}, got {value!r}")
    return value


def apply(obj: Any, values: dict, source: str, lines: dict[str, int], prefix: str = "") -> None:
    """Set nested `values` on a config dataclass, checking keys, types and ranges."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        where = f"{source}:{lines[path]}" if path in lines else source
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {path!r}; known: {', '.join(fields)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {path} must be a mapping, got {value!r}")
            apply(current, value, source, lines, path + ".")
        else:
            setattr(obj, key, check_value(path, value, fields[key], where))


def field_at(obj: Any, key: str) -> dataclasses.Field:
    """The field a dotted `key` names in the dataclass `obj`; ConfigError if none."""
    f = None
    for part in key.split("."):
        fields = (
            {x.name: x for x in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        )
        if part not in fields:
            raise ConfigError(f"{key!r} is not a config field")
        f, obj = fields[part], getattr(obj, part)
    return f


def get(obj: Any, key: str) -> Any:
    """The value at a dotted path, e.g. get(cfg, "regda.trade_off")."""
    field_at(obj, key)
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj
