"""Atomic, weights-only-loadable checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save(state: dict, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(path)


def load(path: Path) -> dict:
    """Load with weights_only=True (no arbitrary code from pickles)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as err:  # torch raises several types for corrupt files
        why = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {why})"
        ) from None
