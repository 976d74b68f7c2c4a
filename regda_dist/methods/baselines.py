"""adapt.method source_only and adabn: no phase 2. The run is phase 1's model (AdaBN: with
BatchNorm statistics re-estimated on the target's train images); both are candidates of every
run and search (engine/run.py), and what `export` writes where one scores best."""

from __future__ import annotations

from regda_dist.methods.base import Method

SOURCE_ONLY = Method(name="source_only", label="source-only")
ADABN = Method(name="adabn", label="AdaBN")
