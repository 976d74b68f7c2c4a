"""Config: the core sections (config/sections.py) and every section a registered method
declares (methods/), composed into one dataclass, so that a new method's knobs are read, checked
and saved like any others without being listed here."""

from __future__ import annotations

import dataclasses
from typing import Any

from regda_dist.config.sections import (
    AdaptConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    ScalingConfig,
    TrainConfig,
)
from regda_dist.methods import get_method, sections

CORE = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "pretrain": PretrainConfig,
    "adapt": AdaptConfig,
    "scaling": ScalingConfig,
    "train": TrainConfig,
}


class _ConfigMethods:
    """What every Config can say about itself beyond its fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def adapt_sigma(self) -> float:
        """Label and pseudo-label sigma of phase 2: adapt.sigma, or data.sigma when it is 0."""
        return self.adapt.sigma or self.data.sigma

    @property
    def adapt_head(self) -> str:
        """adapt.head_init resolved: fresh or phase1 (auto: the method's own default)."""
        a = self.adapt
        return a.head_init if a.head_init != "auto" else get_method(a.method).head_init(self)

    def pretrain_key(self) -> str:
        """Hash of every field phase 1 depends on (none of the adaptation's): its cache key."""
        from regda_dist.config.cache_key import pretrain_key

        return pretrain_key(self)


def _compose() -> type:
    declared = sections()
    clash = sorted(set(declared) & set(CORE))
    if clash:
        raise ValueError(f"a method declares the core config section(s) {clash}")
    fields = [
        (name, kind, dataclasses.field(default_factory=kind))
        for name, kind in {**CORE, **declared}.items()
    ]
    cls = dataclasses.make_dataclass("Config", fields, bases=(_ConfigMethods,))
    cls.__module__ = __name__
    cls.__doc__ = "Every section of a run: " + ", ".join(f"{n}:" for n in (*CORE, *declared))
    return cls


Config = _compose()
