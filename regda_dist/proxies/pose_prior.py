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


class PoseModel:
    """The source pose prior: a Gaussian per skeleton feature (bone log-lengths relative to the
    pose's mean bone, circular for the angles between bones meeting at a keypoint), fitted on
    labelled source poses (N, K, 2) with their validity (N, K)."""

    def __init__(self, keypoints: torch.Tensor, valid: torch.Tensor, skeleton):
        self.skeleton = tuple(tuple(bone) for bone in skeleton)
        fitted = features(keypoints.float(), valid.bool(), self.skeleton)
        self.fits = [_fit(fitted[i], fitted[i + 2], i == 1, MIN_STD[i]) for i in (0, 1)]

    def to(self, device) -> PoseModel:
        self.fits = [(c.to(device), s.to(device)) for c, s in self.fits]
        return self

    def z2(self, keypoints: torch.Tensor, valid: torch.Tensor | None = None, sign=None):
        """(N, B + P) the squared z-score of every feature of poses (N, K, 2), each capped at
        CAP, and (N, B + P) whether it exists (its keypoints are `valid`, default all). sign
        (N, 1) of +-1 multiplies the angles (-1: judged as the pose's mirror image)."""
        if valid is None:
            valid = torch.ones_like(keypoints[..., 0], dtype=torch.bool)
        log_rel, angle, bone_ok, angle_ok = features(keypoints.float(), valid, self.skeleton)
        (lc, ls), (ac, as_) = self.fits
        bones = ((log_rel - lc) / ls).square().clamp_max(CAP)
        angles = (_wrap((angle if sign is None else sign * angle) - ac) / as_).square()
        return torch.cat((bones, angles.clamp_max(CAP)), 1), torch.cat((bone_ok, angle_ok), 1)

    def mirror_signs(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(N, 1) -1 where a pose's mirror image fits the prior better than the pose (a left
        hand seen as a right one, a quadruped facing the other way), else 1."""
        plain = self.z2(keypoints)[0].mean(1, keepdim=True)
        flipped = self.z2(keypoints, sign=-torch.ones_like(plain))[0].mean(1, keepdim=True)
        return torch.where(flipped < plain, -1.0, 1.0).to(plain.dtype)

    def blame(self, keypoints: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
        """(N, K) how much of each pose's implausibility its keypoint k explains: the pose's
        mean squared z-score minus the mean over the features that remain without k (a bone's
        length is relative to the pose's mean bone, so one keypoint off its place makes every
        bone look wrong; leaving it out shows which one it is). Small for the keypoints of a
        plausible pose. Leaving k out also measures the other bones against a mean bone the
        prior was not fitted on, which biases the blame by up to about 1 (negative for a
        keypoint on a long bone, such as a hand's wrist)."""
        sign = self.mirror_signs(keypoints) if mirrored else None
        z2, _ = self.z2(keypoints, sign=sign)
        whole = z2.mean(1)
        out = []
        for k in range(keypoints.shape[1]):
            valid = torch.ones_like(keypoints[..., 0], dtype=torch.bool)
            valid[:, k] = False
            z2, ok = self.z2(keypoints, valid, sign)
            out.append(whole - (z2 * ok).sum(1) / ok.sum(1).clamp_min(1))
        return torch.stack(out, dim=1)


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
        prior = PoseModel(source.keypoints, source.valid, source.spec.skeleton)
        return -prior.z2(target.coords)[0].mean(dim=1)
