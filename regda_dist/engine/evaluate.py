"""Evaluation (PCK@threshold per group) and AdaBN (BatchNorm statistics re-estimated on target)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import Dataset

from regda_dist.data import heatmap
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.engine.loader import ordered
from regda_dist.metrics import PCK


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    spec: KeypointSpec,
    image_size: int,
    threshold: float,
    batch_size: int = 64,
) -> dict[str, float]:
    """PCK per group on a labelled split; `threshold` is a fraction of the heatmap size."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    device = next(model.parameters()).device
    pck = None
    for x, kp, vis in ordered(dataset, batch_size):
        y = model(x.to(device))  # (B, K, H, W)
        if pck is None:
            pck = PCK(spec.groups, spec.num_keypoints, threshold * y.shape[-1])
        centres, valid = heatmap.targets(kp, vis, image_size, y.shape[-1])
        pck.update(y.cpu(), centres, valid)
    for m, mode in modes.items():
        m.train(mode)
    return pck.compute()


@torch.no_grad()
def adabn(model: nn.Module, images: Dataset, batch_size: int = 64) -> nn.Module:
    """A copy of `model` whose BatchNorm running statistics are re-estimated on `images`
    (label-free batches), as a cumulative average; no weight changes."""
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    model.train()
    device = next(model.parameters()).device
    for x in ordered(images, batch_size):
        model(x.to(device))
    for m in norms:
        m.momentum = 0.1
    return model.eval()
