"""Reading dataset files with errors that name the file and what is wrong (DatasetError)."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from regda_dist.data.samples import DatasetError


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: missing folder ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file ({what})")
    return path


def read_json(path: Path, what: str) -> Any:
    require_file(path, what)
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: malformed JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise DatasetError(f"{path}: malformed JSON (nested too deeply)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a dataset file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (arrays only)")
        return super().find_class(module, name)


def read_pickle(path: Path, what: str) -> Any:
    """RHD's annotations are a pickle: read with an unpickler that builds arrays, nothing else."""
    require_file(path, what)
    try:
        with path.open("rb") as f:
            return _ArraysOnly(f).load()
    except Exception as err:  # pickle raises many types on truncated or foreign files
        raise DatasetError(f"{path}: malformed pickle ({type(err).__name__}: {err})") from None


def read_mat(path: Path, key: str, what: str) -> np.ndarray:
    require_file(path, what)
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, OSError on bad files
        raise DatasetError(f"{path}: malformed .mat file ({err})") from None
    if key not in data:
        raise DatasetError(f"{path}: no variable {key!r} (found: {', '.join(_public(data))})")
    return np.asarray(data[key], dtype=np.float64)


def _public(data: dict) -> list[str]:
    return [k for k in data if not k.startswith("__")]


def field_array(value: Any, shape: tuple[int, ...], where: str, name: str) -> np.ndarray:
    """A numeric array of the given shape (None = any length) from a JSON/pickle field."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {name} is not numeric") from None
    if arr.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)
    ):
        want = "x".join("N" if s is None else str(s) for s in shape)
        got = "x".join(map(str, arr.shape)) or "a scalar"
        raise DatasetError(f"{where}: {name} must be {want}, got {got}")
    return arr


def open_image(path: Path, shrink: Callable[[int, int], float] | None = None):
    """(RGB PIL image, the factor it was decoded smaller by); DatasetError naming the file if it
    is missing or unreadable. shrink(width, height) may allow decoding up to that many times
    smaller, which JPEG decoders do at a fraction of the cost (DCT scaling, in powers of two;
    other formats decode at full size)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            allowed = shrink(width, height) if shrink else 1.0
            if allowed >= 2:
                image.draft("RGB", (math.ceil(width / allowed), math.ceil(height / allowed)))
            return image.convert("RGB"), width / image.size[0]
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing image") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from None


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 (3, H, W)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
