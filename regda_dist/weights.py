"""Reading torch files that may be damaged or hostile (weights files, checkpoints): tensors and
plain containers only (`weights_only=True`, so a file cannot run code), and one line naming the
file when it cannot be read."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch


class WeightsFileError(ValueError):
    """A torch file that cannot be used; the message is one line naming the file."""


_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _detail(err: Exception) -> str:
    """The informative line of a torch.load error (not its advice to load the file unsafely)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_BOILERPLATE)]
    text = (useful or lines or [type(err).__name__])[0].removeprefix("WeightsUnpickler error:")
    return text.strip().split(". ")[0].rstrip(".") or type(err).__name__


def load_weights(path: str | Path) -> dict:
    """The mapping saved in `path` (a state dict or a checkpoint), read with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: missing file")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"{path}: empty file, not a torch weights file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsFileError(
            f"{path}: not a plain weights file, refused by the weights-only loader "
            f"({_detail(err)}); a file that could run code is never loaded"
        ) from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise WeightsFileError(
            f"{path}: not a readable torch weights file ({type(err).__name__}: {_detail(err)})"
        ) from None
    if not isinstance(value, dict):
        raise WeightsFileError(
            f"{path}: holds a {type(value).__name__}, not a mapping of names to tensors"
        )
    return value
