"""Which trials Tune stops early: ASHA on the epoch (its rungs after the warm-up, rebuilt on
--resume), or FIFO."""

from __future__ import annotations

import math
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from regda_dist import config as C
from regda_dist.folders import TrialFolder
from regda_dist.search.folder import evaluated_epochs
from regda_dist.search.rungs import asha_rungs, stops_nothing
from regda_dist.search.settings import SearchConfig


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive --resume. Tuner.restore brings the scheduler back from the
    pickle made when the Tuner was built, so every rung would be empty and trials that should
    stop would run on. Tune adds every restored trial again (on_trial_add); each one's values at
    the rungs it reached are put back from its run folder's metrics.jsonl (rank 0 writes a line
    per evaluated epoch, with the best-so-far objective ASHA compared), as ASHA recorded them:
    at the first evaluated epoch >= each rung. A decision ASHA had not yet taken when the search
    was killed is not replayed: that trial runs on (compute, not a wrong pick)."""

    def __init__(self, *, trials_dir: Path, task: str, **kwargs):
        super().__init__(**kwargs)
        self._trials_dir, self._task = Path(trials_dir), task
        self._rebuilt: dict[int, int] = {}  # rung -> trials put back, until said

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        run = TrialFolder(self._trials_dir / trial.trial_id).run(self._task)
        saved = evaluated_epochs(run.metrics)
        if not saved:
            return  # a new trial
        for milestone, recorded in self._trial_info[trial.trial_id]._rungs:
            reached = [row for row in saved if row["epoch"] >= milestone]
            if reached and trial.trial_id not in recorded:
                value = reached[0].get(self._metric, math.nan)
                recorded[trial.trial_id] = self._metric_op * value
                self._rebuilt[milestone] = self._rebuilt.get(milestone, 0) + 1

    def choose_trial_to_run(self, tune_controller):
        if self._rebuilt:  # every restored trial has been added: say what came back, once
            counts = ", ".join(f"epoch {m}: {n}" for m, n in sorted(self._rebuilt.items()))
            print(f"resume: ASHA's rungs rebuilt from the trials' saved results ({counts})")
            self._rebuilt = {}
        return super().choose_trial_to_run(tune_controller)


def make_scheduler(
    settings: SearchConfig, tasks: dict[str, C.Config], space: dict, trials_dir: Path
):
    """ASHA on the epoch, its first rung once every method of the search has begun to adapt
    (search/rungs.py), or FIFO. ASHA runs per_task, one task a group; a task whose rungs would
    all fall on or after its last epoch runs FIFO, as said at load (rungs.scheduler_notes)."""
    if settings.scheduler_name != "asha":
        return FIFOScheduler()
    ((task, cfg),) = tasks.items()
    if stops_nothing(settings, cfg, space):
        return FIFOScheduler()
    grace, max_t, rungs = asha_rungs(settings, tasks, space)
    print(
        f"ASHA judges trials at epochs {rungs} (first rung: once each method of the search "
        f"has begun, its warm-up at {settings.warmup_share:.0%} of its rise; or "
        "search.grace_period)",
        flush=True,
    )
    return ResumableASHA(
        trials_dir=trials_dir,
        task=task,
        time_attr="epoch",
        max_t=max_t,
        grace_period=grace,
        reduction_factor=settings.reduction_factor,
    )
