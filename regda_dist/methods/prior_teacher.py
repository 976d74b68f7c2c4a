"""adapt.method prior_teacher: the mean teacher (methods/mean_teacher.py) whose pseudo labels are
chosen by confidence times how plausible the teacher's pose makes each keypoint under the
labelled source's pose prior.

A teacher can be confident and wrong: a fingertip on the neighbouring finger, a knee on the
other leg. Its confidence cannot see that; the skeleton can. The prior is the one the
`pose_prior` proxy fits (proxies/pose_prior.py: a Gaussian per bone's log-length relative to
the pose's mean bone and per angle between two bones meeting at a keypoint), fitted here on the
labelled source val split (never a target label). Each feature of a teacher's pseudo-pose gets
its squared z-score (capped at 9, 3 sigma). A keypoint's blame is how much of the pose's mean
squared z-score goes away when it is left out (PoseModel.blame: one keypoint off its place
makes every relative bone length look wrong; leaving it out shows which one it is); its
plausibility is exp(-strength * max(0, blame)): 1 for the keypoints of a plausible pose, 0.14
for a keypoint that explains 4 (squared z-score units) with strength 0.5. The mean teacher
keeps the top `keep` of the global batch by confidence; this keeps the top `keep` by
confidence x plausibility: as many pseudo labels as the mean teacher, with the confident but
implausible ones replaced by plausible ones (a ranking, and blame is relative to the pose
itself: a prior that fits the target poorly everywhere blames no keypoint in particular). With
`mirrored` (default) a pose is judged as it is or as its mirror image, whichever fits the prior
better: a left hand is no less plausible than a right one.

The idea is POST's (Prior-guided Source-free Domain Adaptation for Human Pose Estimation,
ICCV 2023), and SHIFT's (2025) after it: a pose prior filters the teacher's pseudo labels.
Their priors are learned networks; this one is the closed-form prior the platform already
fits, so it needs no extra training and works on any keypoint set with bones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch.utils.data import DataLoader, Dataset

from regda_dist.fields import ConfigError, bounded
from regda_dist.methods import mean_teacher
from regda_dist.methods.mean_teacher import MeanTeacher, MeanTeacherStep
from regda_dist.proxies.pose_prior import PoseModel


@dataclass
class PriorTeacherConfig:
    """How much the source pose prior weighs in choosing the mean teacher's pseudo labels
    (adapt.method prior_teacher; the teacher itself is mean_teacher:'s)."""

    # a keypoint's plausibility: exp(-strength * max(0, blame)), blame the share of its pose's
    # mean squared z-score it explains (PoseModel.blame); pseudo labels are the top keep by
    # confidence x plausibility (0: the mean teacher's, by confidence alone)
    strength: float = field(default=0.5, metadata=bounded(0.0))
    mirrored: bool = True  # judge a pose as it is or mirrored, whichever is more plausible


class PriorTeacher(MeanTeacher):
    """A mean teacher whose pseudo labels are ranked by confidence x pose plausibility."""

    def __init__(self, student, cfg, prior_cfg, sigma: float, image_size: int, runtime):
        super().__init__(student, cfg, sigma, image_size, runtime)
        self.prior_cfg, self.prior = prior_cfg, None

    def fit(self, keypoints: torch.Tensor, valid: torch.Tensor, skeleton) -> None:
        """Fit the prior on labelled source poses (N, K, 2) and their validity (N, K)."""
        self.prior = PoseModel(keypoints, valid, skeleton).to(self.runtime.device)

    def plausibility(self, coords: torch.Tensor) -> torch.Tensor:
        """(B, K) exp(-strength * max(0, blame)) of each keypoint of the poses at coords."""
        if self.prior is None:
            raise RuntimeError("the prior teacher's pose prior was never fitted (fit_source)")
        blame = self.prior.blame(coords.float(), mirrored=self.prior_cfg.mirrored)
        return torch.exp(-self.prior_cfg.strength * blame.clamp_min(0))

    def ranking(self, coords: torch.Tensor, peaks: torch.Tensor) -> tuple[torch.Tensor, dict]:
        plausible = self.plausibility(coords)
        return peaks * plausible.to(peaks.dtype), {"train/plausibility": plausible.mean()}


class PriorTeacherStep(MeanTeacherStep):
    """The mean teacher's step (its student, optimiser and EMA) with PriorTeacher's ranking."""

    def _add_teacher(self, model, cfg, runtime) -> None:
        mt = cfg.mean_teacher
        self.teacher = PriorTeacher(
            model, mt, cfg.prior_teacher, cfg.adapt_sigma, cfg.data.image_size, runtime
        )

    def fit_source(self, labelled: Dataset, spec) -> None:
        """Fit the prior on a labelled source split (the trainer passes source val)."""
        from regda_dist.methods import bones_problem  # the registry imports this module

        if problem := bones_problem(METHOD.name, spec):
            raise ConfigError(problem)
        keypoints, valid = [], []
        for _, kp, vis in DataLoader(labelled, batch_size=256):
            keypoints.append(kp.float())
            valid.append(vis.bool())
        self.teacher.fit(torch.cat(keypoints), torch.cat(valid), spec.skeleton)


# the mean teacher's declaration (a teacher: its head_init, constraints, rungs), with its own
METHOD = replace(
    mean_teacher.METHOD,
    name="prior_teacher",
    label="prior-guided teacher",
    step=PriorTeacherStep,
    sections=("mean_teacher", "prior_teacher"),
    declares={"prior_teacher": PriorTeacherConfig},
    space={"prior_teacher.strength": {"loguniform": [0.1, 3.0]}},
    blind_proxies={
        **mean_teacher.METHOD.blind_proxies,
        "pose_prior": "it trains towards the same source pose prior, so it would favour it",
    },
    needs_bones=True,
    searched_by_default=False,  # joins the default search once measured to help (docs/methods.md)
)
