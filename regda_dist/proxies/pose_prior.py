"""Pose prior: how plausible the predicted target skeletons are under the statistics of the
labelled source skeletons. Features of the keypoint set's skeleton: each bone's log-length
relative to the pose's mean bone length (scale-free) and the angle between every two bones that
meet at a keypoint (rotation-free), each a Gaussian fitted on the source val labels (circular
for angles). The score is minus the mean squared z-score, each capped at 9 (3 sigma), so one
broken joint cannot dominate; a collapsed pose (bones of length 0) scores the cap."""

from __future__ import annotations

import math

import torch

from regda_dist.proxies.base import Proxy, SplitOutputs, register_proxy

CAP = 9.0  # squared z-score: 3 sigma
MIN_STD = (
    0.05,
    0.05,
)  # log-length, radians: a feature constant in the source is not infinitely sure


def _joint_pairs(skeleton) -> list[tuple[int, int, int]]:
    """(joint, end a, end b) for every two bones meeting at a joint."""
    pairs = []
    for i, (a, b) in enumerate(skeleton):
        for c, d in skeleton[i + 1 :]:
            for joint in {a, b} & {c, d}:
                pairs.append((joint, a + b - joint, c + d - joint))
    return pairs


def features(kp: torch.Tensor, valid: torch.Tensor, skeleton) -> tuple[torch.Tensor, ...]:
    """(log relative bone lengths (N, B), bone angles (N, P), their validity masks)."""
    bones = torch.tensor(skeleton, dtype=torch.long)
    vec = kp[:, bones[:, 1]] - kp[:, bones[:, 0]]  # (N, B, 2)
    length = vec.norm(dim=-1)
    bone_ok = valid[:, bones[:, 0]] & valid[:, bones[:, 1]]
    mean = (length * bone_ok).sum(1, keepdim=True) / bone_ok.sum(1, keepdim=True).clamp_min(1)
    log_rel = torch.log(length.clamp_min(1e-3) / mean.clamp_min(1e-3))
    triples = torch.tensor(_joint_pairs(skeleton), dtype=torch.long).view(-1, 3)
    u, v = (kp[:, triples[:, i]] - kp[:, triples[:, 0]] for i in (1, 2))
    angle = torch.atan2(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0], (u * v).sum(-1))
    angle_ok = valid[:, triples].all(dim=-1)
    return log_rel, angle, bone_ok, angle_ok


def _wrap(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def _fit(values: torch.Tensor, ok: torch.Tensor, circular: bool, floor: float):
    """Per-feature centre and spread over the rows where `ok`."""
    n = ok.sum(0).clamp_min(1)
    if circular:
        centre = torch.atan2((values.sin() * ok).sum(0), (values.cos() * ok).sum(0))
        dev = _wrap(values - centre)
    else:
        centre = (values * ok).sum(0) / n
        dev = values - centre
    spread = ((dev.square() * ok).sum(0) / n).sqrt().clamp_min(floor)
    return centre, spread


@register_proxy
class PosePrior(Proxy):
    name = "pose_prior"
    splits = ("source_val", "target_val")
    unit = 0.1
    needs_skeleton = True

    def score(self, source: SplitOutputs, target: SplitOutputs) -> float:
        skeleton = source.spec.skeleton if source.spec else ()
        if not skeleton:
            return float("nan")  # a keypoint set without bones has no pose to judge
        return float(self.per_image(source, target).mean())

    def per_image(self, source: SplitOutputs, target: SplitOutputs) -> torch.Tensor:
        """(N,) each target image's score (the score is their mean): two models' scores on the
        same images, paired, give the standard error of their difference."""
        skeleton = source.spec.skeleton
        fitted = features(source.keypoints.float(), source.valid.bool(), skeleton)
        predicted = features(
            target.coords.float(),
            torch.ones_like(target.coords[..., 0], dtype=torch.bool),
            skeleton,
        )
        z2 = []
        for i, circular in ((0, False), (1, True)):
            centre, spread = _fit(fitted[i], fitted[i + 2], circular, MIN_STD[i])
            dev = _wrap(predicted[i] - centre) if circular else predicted[i] - centre
            z2.append((dev / spread).square().clamp_max(CAP).flatten(1))
        return -torch.cat(z2, dim=1).mean(dim=1)
