"""Losses of RegDA: KL between heatmaps, MSE, pseudo labels and the regression disparity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regda_dist.data import heatmap


def joints_kl(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 0.0,
    reduce: bool = True,
):
    """Weighted KL(target || softmax(logits)) per keypoint, averaged over B * K.

    Shape: logits, target (B, K, H, W); weight (B, K) -> scalar, or (B, K) if not reduce. The
    target map is normalised to a distribution after adding eps; an empty map (all zero, eps = 0)
    contributes 0 loss and 0 gradient instead of NaN.
    """
    log_q = F.log_softmax(logits.flatten(2), dim=-1)  # (B, K, HW)
    t = target.flatten(2) + eps
    mass = t.sum(dim=-1, keepdim=True)
    t = t / mass.clamp_min(torch.finfo(t.dtype).tiny)
    kl = (torch.special.xlogy(t, t) - t * log_q).sum(dim=-1)  # (B, K); 0 where t == 0 everywhere
    return (kl * weight).mean() if reduce else kl * weight


class JointsKLLoss(nn.Module):
    """Supervised heatmap loss of RegDA (softmax over pixels, KL to the normalised label map)."""

    def __init__(self, eps: float = 0.0):
        super().__init__()
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.eps = eps

    def forward(self, logits, target, weight):
        return joints_kl(logits, target, weight, self.eps)


class JointsMSELoss(nn.Module):
    """0.5 * (P - T)^2 per pixel times the keypoint weight, mean over all (baseline recipe)."""

    def forward(self, pred, target, weight):
        return (0.5 * (pred - target) ** 2 * weight[..., None, None]).mean()


def pseudo_labels(logits: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth and ground-false maps from the (detached) main-head predictions.

    Shape: logits (B, K, H, W) -> (ground_truth, ground_false), each (B, K, H, W).
    ground_truth[b, k] is a Gaussian at the argmax of logits[b, k]; ground_false[b, k] is the
    clipped sum of the other keypoints' ground-truth maps: where keypoint k's errors tend to land.
    """
    centres, _ = heatmap.decode(logits.detach())
    valid = torch.ones(centres.shape[:-1], dtype=torch.bool, device=logits.device)
    truth = heatmap.gaussians(centres, valid, logits.shape[-1], sigma)
    false = (truth.sum(dim=1, keepdim=True) - truth).clamp(0.0, 1.0)
    return truth, false


class RegressionDisparity(nn.Module):
    """Disparity between the adversarial and the main head, measured against pseudo labels.

    mode "min": KL(y_adv -> ground truth of y); mode "max": KL(y_adv -> ground false of y). The max
    player is implemented by minimising KL towards ground false (the min-min game of RegDA).
    """

    def __init__(self, sigma: float = 2.0, eps: float = 1e-7):
        super().__init__()
        self.sigma, self.eps = sigma, eps

    def forward(self, y, y_adv, weight, mode: str):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        truth, false = pseudo_labels(y, self.sigma)
        return joints_kl(y_adv, truth if mode == "min" else false, weight, self.eps)
