"""Files of an older layout, read as the current one, never silently misread.

Before the method registry, phase 2's schedule and label sigma lived under `regda:` whatever the
method (regda.epochs, iters_per_epoch, batch_size, sigma); they are `adapt:`'s now. Experiment
files, saved run and search configs, search spaces, `--set` overrides and trial parameters
written the old way are read the new way with one OldFormat note naming what moved; a file that
sets a value both ways is refused. Results keyed "regda" (the adapted model) read as "adapted".
"""

from __future__ import annotations

import warnings

from regda_dist.fields import ConfigError, OldFormat

MOVED = {
    f"regda.{name}": f"adapt.{name}"
    for name in ("epochs", "iters_per_epoch", "batch_size", "sigma")
}


def _note(source: str, moved: list[str]) -> None:
    pairs = ", ".join(f"{old} -> {MOVED[old]}" for old in moved)
    warnings.warn(
        f"{source}: phase 2's schedule and sigma moved under adapt: ({pairs}); read as such",
        OldFormat,
        stacklevel=3,
    )


def migrate_key(key: str, source: str) -> str:
    """A dotted key of the old layout as the current one (with a note), else `key`."""
    if key in MOVED:
        _note(source, [key])
        return MOVED[key]
    return key


def migrate_keys(values: dict, source: str) -> dict:
    """A mapping of dotted keys (a search space, trial parameters, a task's `set:`) in the
    current layout; refused where an old key and its new one are both present."""
    old = [k for k in values if k in MOVED]
    for key in old:
        if MOVED[key] in values:
            raise ConfigError(f"{source}: {key} and {MOVED[key]} are both set ({key} is the "
                              f"old name of {MOVED[key]})")  # fmt: skip
    if old:
        _note(source, old)
    return {MOVED.get(k, k): v for k, v in values.items()}


def migrate_sections(values: dict, lines: dict[str, int], source: str) -> None:
    """Move the old keys of a nested mapping (an experiment file, a saved config) and their
    line numbers to where they live now, in place."""
    regda = values.get("regda")
    if not isinstance(regda, dict):
        return
    old = [f"regda.{k}" for k in regda if f"regda.{k}" in MOVED]
    for key in old:
        new = MOVED[key]
        section, name = new.split(".")
        target = values.setdefault(section, {})
        if not isinstance(target, dict):
            return  # adapt: is not a mapping: the loader says so
        if name in target:
            line = lines.get(key)
            where = f"{source}:{line}" if line else source
            raise ConfigError(f"{where}: {key} and {new} are both set ({key} is the old name "
                              f"of {new})")  # fmt: skip
        target[name] = regda.pop(key.split(".")[1])
        if key in lines:
            lines[new] = lines.pop(key)
    if old:
        _note(source, old)
    if not regda:
        del values["regda"]


def adapted(result: dict) -> dict:
    """The adapted model's metrics of a result.json ("regda" in files of before, noted)."""
    if "adapted" not in result and "regda" in result:
        warnings.warn(
            "result files written before the method registry key the adapted model 'regda'; "
            "read as 'adapted'",
            OldFormat,
            stacklevel=2,
        )
        return result["regda"]
    return result["adapted"]
