"""adapt.method regda+mean_teacher: RegDA's steps with the mean teacher's consistency loss added
to step A; it reads both methods' knobs (regda:, mean_teacher:) and its own (regda_mt:)."""

from __future__ import annotations

from dataclasses import dataclass, field

from regda_dist.fields import bounded
from regda_dist.methods.base import Domain, Method, no_domain
from regda_dist.methods.mean_teacher import WithTeacher, rampup_epochs, teacher_problems
from regda_dist.methods.regda import RegDAStep, warm_start_epochs


@dataclass
class RegDAMTConfig:
    """Which target keypoints RegDA's steps B and C learn from in regda+mean_teacher: "all"
    (RegDA's own: the student's argmax on every keypoint), or "teacher" (only those the teacher
    keeps as its pseudo labels, its confidence mask: RegDA then cannot reinforce the errors the
    mask removes). The disparity losses average over every keypoint, kept or not, so "teacher"
    also scales steps B and C by about mean_teacher.keep, as a lower regda.trade_off there
    would."""

    pseudo_labels: str = field(default="all", metadata=bounded(choices=("all", "teacher")))


class RegDAMeanTeacherStep(WithTeacher, RegDAStep):
    """RegDA's steps A, B, C with the teacher's consistency loss added to step A (the update of
    every part); the teacher follows the RegDA model."""

    masked = False  # regda_mt.pseudo_labels teacher (from_config)

    @classmethod
    def from_config(cls, model, cfg, runtime, domain: Domain = no_domain, sync=None):
        step = super().from_config(model, cfg, runtime, domain, sync)
        step._add_teacher(model, cfg, runtime)
        step.masked = cfg.regda_mt.pseudo_labels == "teacher"
        return step

    def __call__(self, x_s, target_s, weight_s, batch_t, extra=None) -> dict:
        x_t, params = batch_t
        mask = (lambda: self.teacher.last_mask) if self.masked else None
        logs = super().__call__(
            x_s, target_s, weight_s, x_t,
            lambda: self.teacher.consistency(x_t, params, self.domain), mask,
        )  # fmt: skip
        self.teacher.update()
        return logs


def optimizer_problems(cfg) -> list[str]:
    """Its student is RegDA's model, trained by RegDA's optimisers (optim:)."""
    if cfg.mean_teacher.optimizer != "sgd":
        return [
            f"mean_teacher.optimizer {cfg.mean_teacher.optimizer!r}: regda+mean_teacher trains "
            "with RegDA's optimisers (optim:); use sgd"
        ]
    return []


METHOD = Method(
    name="regda+mean_teacher",
    label="RegDA+MT",
    step=RegDAMeanTeacherStep,
    sections=("regda", "mean_teacher", "regda_mt"),
    declares={"regda_mt": RegDAMTConfig},
    teacher=True,
    head_init=lambda cfg: "phase1",  # its teacher starts as the source model
    problems=lambda cfg: teacher_problems(cfg) + optimizer_problems(cfg),
    # judged once both its parts have begun
    judge_from=lambda cfg, share: max(warm_start_epochs(cfg, share), rampup_epochs(cfg, share)),
    waits_for="warm-start lambda and consistency ramp-up",
    rung_fields=("regda.warm_alpha", "regda.warm_max_iters", "mean_teacher.rampup_iters"),
)
