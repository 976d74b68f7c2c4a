"""adapt.method regda+mean_teacher: RegDA's steps with the mean teacher's consistency loss added
to step A; it reads both methods' knobs (regda:, mean_teacher:) and declares none of its own."""

from __future__ import annotations

from regda_dist.methods.base import Domain, Method, no_domain
from regda_dist.methods.mean_teacher import WithTeacher, rampup_epochs, teacher_problems
from regda_dist.methods.regda import RegDAStep, warm_start_epochs


class RegDAMeanTeacherStep(WithTeacher, RegDAStep):
    """RegDA's steps A, B, C with the teacher's consistency loss added to step A (the update of
    every part); the teacher follows the RegDA model."""

    @classmethod
    def from_config(cls, model, cfg, runtime, domain: Domain = no_domain, sync=None):
        step = super().from_config(model, cfg, runtime, domain, sync)
        step._add_teacher(model, cfg, runtime)
        return step

    def __call__(self, x_s, target_s, weight_s, batch_t, extra=None) -> dict:
        x_t, params = batch_t
        logs = super().__call__(
            x_s, target_s, weight_s, x_t, lambda: self.teacher.consistency(x_t, params, self.domain)
        )
        self.teacher.update()
        return logs


METHOD = Method(
    name="regda+mean_teacher",
    label="RegDA+MT",
    step=RegDAMeanTeacherStep,
    sections=("regda", "mean_teacher"),
    teacher=True,
    head_init=lambda cfg: "phase1",  # its teacher starts as the source model
    problems=teacher_problems,
    # judged once both its parts have begun
    judge_from=lambda cfg, share: max(warm_start_epochs(cfg, share), rampup_epochs(cfg, share)),
    waits_for="warm-start lambda and consistency ramp-up",
    rung_fields=("regda.warm_alpha", "regda.warm_max_iters", "mean_teacher.rampup_iters"),
)
