"""Typed configuration: dataclasses with the reference defaults, and a strict loader.

An experiment YAML holds only overrides of these defaults. Unknown keys, wrong types,
out-of-range and non-finite values raise ConfigError with one line naming the key, the file and
the line. Its rooms: the core sections (sections.py) and their composition with each method's
own (schema.py), the YAML text (yaml_io.py), cross-field checks (validate.py), files of an older
layout (migrate.py), the phase-1 cache key (cache_key.py) and loading (load.py). It reads two
modules below it: fields (typed fields) and methods (each method's section); data/keypoints for
keypoint sets written in YAML.
"""

from regda_dist.config.load import build, from_dict, load, save
from regda_dist.config.schema import Config
from regda_dist.config.sections import (
    AdaptConfig,
    AugmentConfig,
    DataConfig,
    DomainConfig,
    KeypointSetConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    ScalingConfig,
    TrainConfig,
)
from regda_dist.config.validate import categories_problem, validate
from regda_dist.config.yaml_io import nest, parse_override, read_yaml
from regda_dist.fields import ConfigError, OldFormat, apply, check_value, field_type, get

__all__ = [
    "AdaptConfig", "AugmentConfig", "Config", "ConfigError", "DataConfig", "DomainConfig",
    "KeypointSetConfig", "ModelConfig", "OldFormat", "OptimConfig", "PretrainConfig",
    "ScalingConfig", "TrainConfig", "apply", "build", "categories_problem", "check_value",
    "field_type", "from_dict", "get", "load", "nest", "parse_override", "read_yaml", "save",
    "validate",
]  # fmt: skip
