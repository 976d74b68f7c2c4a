"""Atomic, weights-only-loadable checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from regda_dist.folders import visible
from regda_dist.weights import WeightsFileError, load_weights


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save(state: dict, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(path)


def load(path: Path) -> dict:
    """Load with weights_only=True (no arbitrary code from pickles); one line naming the file
    when it is missing, damaged, hostile or not a mapping."""
    try:
        return load_weights(path)
    except WeightsFileError as err:
        raise CheckpointError(f"checkpoint {err}") from None


def save_training(path: Path, state: dict, model, optimizers, schedules, runtime) -> None:
    """Rank 0 writes a phase's checkpoint: its state, the model, optimisers, schedules and the
    CPU random state."""
    if runtime.is_main:
        save(
            {
                **state,
                "model": model.state_dict(),
                "optimizers": [o.state_dict() for o in optimizers],
                "schedules": [s.state_dict() for s in schedules],
                "rng": torch.get_rng_state(),
            },
            path,
        )


def resumes(path: Path, runtime) -> bool:
    """Whether a phase restores its checkpoint `path`: rank 0 decides for every rank. Ranks
    that saw the file differently (NFS attribute caches) would train different epochs and
    hang in their collectives."""
    return runtime.comm.agree(path.is_file())


def restore_training(path: Path, model, optimizers, schedules) -> dict:
    """Load a phase's checkpoint into the model, optimisers and schedules; returns the rest of
    its state."""
    saved = load(visible(path))  # rank 0 saw it; a shared folder may show it later here
    try:
        model.load_state_dict(saved.pop("model"))
        for obj, s in zip(
            [*optimizers, *schedules],
            [*saved.pop("optimizers"), *saved.pop("schedules")],
            strict=True,
        ):
            obj.load_state_dict(s)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: does not match this model/config ({err})") from None
    torch.set_rng_state(saved.pop("rng"))
    return saved
