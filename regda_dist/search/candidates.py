"""What a search can hand back: its completed trials, and source-only and AdaBN. The baselines
depend on phase 1 alone (cached: they cost nothing), every trial's result holds them, and they
are scored by the same metric as the trials (at no epoch: they do not train), so the search's
answer is never a model its own metric says is worse than a baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass

from regda_dist.methods import baseline_names, get_method
from regda_dist.search.folder import Trial

ORDER = {"source_only": 0, "adabn": 1, "": 2}  # a tie goes to the one that adapted more


@dataclass
class Candidate:
    """A trial (baseline "") or one of the baselines its results hold."""

    value: float
    trial: Trial
    baseline: str = ""

    @property
    def name(self) -> str:
        return get_method(self.baseline).label if self.baseline else f"trial {self.trial.trial_id}"

    def metrics(self, task: str) -> dict:
        """The evaluation the candidate is judged and described by."""
        return (
            getattr(self.trial, self.baseline)[task] if self.baseline else self.trial.metrics(task)
        )


def baseline_key(metric: str) -> str | None:
    """The key a baseline's metrics hold for a search metric (best/<m> -> <m>); None where
    baselines have no value (the joint objective)."""
    return None if metric.startswith("joint/") else metric.removeprefix("best/")


def ranked(trials: list[Trial], scored: list[tuple[float, Trial]], metric: str) -> list[Candidate]:
    """The candidates best first: the `scored` trials (value, trial) and, for one-task groups,
    each baseline at its best value over the completed trials (they share phase 1 unless a
    phase-1 field was searched). NaN never ranks; ties go to the trial, then AdaBN."""
    out = [Candidate(value, trial) for value, trial in scored]
    key = baseline_key(metric)
    done = [t for t in trials if t.complete and len(t.runs) == 1]
    for name in baseline_names() if key else ():
        values = [  # runs that name the baseline's weights (folders of before did not)
            (getattr(t, name)[task].get(key, math.nan), t)
            for t in done
            for task in t.runs
            if t.baseline_weights.get(task, {}).get(name)
        ]
        values = [(v, t) for v, t in values if isinstance(v, int | float) and math.isfinite(v)]
        if values:
            value, trial = max(values, key=lambda vt: vt[0])
            out.append(Candidate(float(value), trial, name))
    return sorted(out, key=lambda c: (-c.value, -ORDER[c.baseline]))
