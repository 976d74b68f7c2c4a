"""Atomic, weights-only-loadable checkpoints."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from regda_dist.weights import WeightsFileError, load_weights


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save(state: dict, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(path)


def wait_visible(path: Path, timeout_s: float = 60.0) -> None:
    """Wait until `path` exists here (another process saw it on a shared filesystem, whose
    attribute cache can lag by up to a minute); after timeout_s, load() says it is missing."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)


def load(path: Path) -> dict:
    """Load with weights_only=True (no arbitrary code from pickles); one line naming the file
    when it is missing, damaged, hostile or not a mapping."""
    try:
        return load_weights(path)
    except WeightsFileError as err:
        raise CheckpointError(f"checkpoint {err}") from None
