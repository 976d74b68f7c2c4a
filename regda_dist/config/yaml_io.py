"""Search YAML as text: a safe loader that also reads YAML 1.2 floats, documents nested at
most MAX_DEPTH levels, a dotted key -> line map for errors, and `--set KEY=VALUE` overrides.
Every failure is one ConfigError line naming the file (and line) or the override."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from regda_dist.fields import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as 1e-4 (YAML 1.1 needs a dot: 1.0e-4)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


MAX_DEPTH = 32  # nesting of a YAML document: far beyond any config, far below recursion limits


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and mappings nest deeper than `limit` (a cycle does). Iterative, and each
    shared (YAML alias) container is expanded again only when reached deeper."""
    reached: dict[int, int] = {}
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        if reached.get(id(item), 0) >= depth:
            continue
        reached[id(item)] = depth
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


def _line_map(node: yaml.Node, prefix: str = "", out: dict | None = None) -> dict[str, int]:
    """Dotted key -> 1-based line number, from a composed YAML node tree."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}{key.value}"
            out[path] = key.start_mark.line + 1
            _line_map(value, path + ".", out)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """'regda.trade_off=0.5' -> ('regda.trade_off', 0.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. regda.trade_off=0.5")
    key, raw = text.split("=", 1)
    try:
        value = _yaml(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: value is not valid YAML ({err.problem})") from None
    except RecursionError:
        raise ConfigError(f"--set {key}: value is not valid YAML (nested too deeply)") from None
    if too_deep(value):
        raise ConfigError(f"--set {key}: value nested more than {MAX_DEPTH} levels deep")
    return key.strip(), value


def nest(key: str, value: Any) -> dict:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def read_yaml(path: str | Path) -> tuple[dict, dict[str, int]]:
    """A YAML mapping and its dotted key -> line map; one-line ConfigError otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        values = _yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML (nested too deeply)") from None
    if too_deep(values):
        raise ConfigError(f"{path}: invalid YAML (nested more than {MAX_DEPTH} levels deep)")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: top level must be a mapping of sections, got {type(values).__name__}"
        )
    return values, _line_map(node) if node else {}
