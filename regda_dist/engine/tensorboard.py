"""TensorBoard for one run (rank 0): every logged scalar per epoch, keypoint images of the
source-only and the adapted model on the same target images, and an HParams session so that
`tensorboard --logdir runs/<experiment>` compares every trial of a search in one table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from regda_dist.data import heatmap
from regda_dist.data.keypoints import KeypointSpec

NUM_IMAGES = 8
_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230)]  # fmt: skip


class TensorBoardLogger:
    """Engine callback ("on_eval"): scalars under their metric keys, step = epoch of the phase."""

    def __init__(self, logdir: Path):
        self.writer = SummaryWriter(str(logdir))
        self._end = None  # the HParams session-end summary, once started

    def __call__(self, phase: str, epoch: int, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def keypoints(self, tag: str, rows: list[np.ndarray], step: int) -> None:
        """One image: each row (H, W, 3) uint8 stacked vertically."""
        self.writer.add_image(tag, np.concatenate(rows, axis=0), step, dataformats="HWC")

    def start_session(
        self, values: dict, metric_tags: list[str], columns: dict | None = None
    ) -> None:
        """The run's HParams session: hyperparameters (scalars or str) and the scalar tags whose
        latest values the HParams table shows. `columns` ({name: a value of its type}): every
        column of the table, the run's own `values` among them. TensorBoard takes the table's
        columns from ONE run's experiment record (the first it finds), so every trial of a
        search writes the search's whole space there, though a trial of a conditional space
        holds only its own method's knobs."""

        def clean(d: dict) -> dict:
            return {
                k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in d.items()
            }

        own = clean(values)
        tags = dict.fromkeys(metric_tags, 0.0)
        experiment, _, _ = hparams_summary({**clean(columns or {}), **own}, tags)
        _, start, self._end = hparams_summary(own, tags)
        for summary in (experiment, start):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def end_session(self) -> None:
        if self._end is not None:
            self.writer.file_writer.add_summary(self._end)
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@torch.no_grad()
def draw_predictions(model, images: torch.Tensor, spec: KeypointSpec, scale: int = 2) -> np.ndarray:
    """(H*scale, N*W*scale, 3) uint8: uint8 images (N, 3, H, W) side by side, with the
    model's argmax keypoints and skeleton drawn on them."""
    was_training = model.training
    model.eval()
    y = model(images.to(next(model.parameters()).device)).float()
    model.train(was_training)
    coords, _ = heatmap.decode(y.cpu())  # (N, K, 2) heatmap px
    stride = images.shape[-1] / y.shape[-1]
    tiles = []
    for img, kp in zip(images, coords, strict=True):
        tile = Image.fromarray(img.permute(1, 2, 0).numpy()).resize(
            (img.shape[-1] * scale, img.shape[-2] * scale), Image.NEAREST
        )
        draw = ImageDraw.Draw(tile)
        pts = [(x * stride * scale, yy * stride * scale) for x, yy in kp.tolist()]  # codec
        for i, (a, b) in enumerate(spec.skeleton):
            draw.line([pts[a], pts[b]], fill=_COLOURS[i % len(_COLOURS)], width=1)
        for x, yy in pts:
            draw.ellipse([x - 1.5, yy - 1.5, x + 1.5, yy + 1.5], fill=(255, 255, 255))
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, axis=1)
