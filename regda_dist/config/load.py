"""A Config from its defaults, an experiment YAML (overrides only) and `--set` overrides, checked
(keys, types, ranges, then cross-field) and saved back as the full resolved YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from regda_dist.config.migrate import migrate_key, migrate_sections
from regda_dist.config.schema import Config
from regda_dist.config.validate import validate
from regda_dist.config.yaml_io import nest, parse_override, read_yaml
from regda_dist.fields import apply


def build(values: dict, lines: dict[str, int], source: str, overrides: list[str] = ()) -> Config:
    """Defaults, then `values` (read from `source`), then `--set` overrides; validated."""
    cfg = Config()
    migrate_sections(values, lines, source)
    apply(cfg, values, source, lines)
    for text in overrides:
        key, value = parse_override(text)
        key = migrate_key(key, f"--set {key}")
        apply(cfg, nest(key, value), f"--set {key}", {})
        lines = {k: n for k, n in lines.items() if k != key and not k.startswith(key + ".")}
    return validate(cfg, source, lines)


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then `--set` overrides; validated. An experiment's
    `search:` block is not part of the run config (see regda_dist.search.spec) and is skipped."""
    if path is None:
        return build({}, {}, "config", overrides)
    values, lines = read_yaml(path)
    values.pop("search", None)
    return build(values, lines, str(path), overrides)


def from_dict(values: dict) -> Config:
    """A Config from a plain dict (e.g. a resolved config.yaml), with the same checks."""
    cfg = Config()
    migrate_sections(values, {}, "config")
    apply(cfg, values, "config", {})
    return validate(cfg)


def save(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
