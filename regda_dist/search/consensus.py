"""Ensemble consensus, a proxy across the trials of a search: the per-keypoint median of the
target val predictions of every completed trial (at the epoch it chose) and of the source-only
model; a trial scores the percentage of its predictions within the PCK radius of that median.
Trials that agree with what most configurations predict score high; a configuration that
drifted off on its own scores low. Computed at selection time (export, report) from each run's
saved predictions (folders.RunFolder.predictions); no target label is read."""

from __future__ import annotations

import torch

from regda_dist import config as C
from regda_dist.folders import RunFolder
from regda_dist.proxies.base import agreement
from regda_dist.search.folder import Trial

KEY = "proxy/consensus"


def _predictions(trial: Trial, task: str) -> dict | None:
    file = RunFolder(trial.runs[task]).predictions
    if not (trial.complete and file.is_file()):
        return None
    return torch.load(file, map_location="cpu", weights_only=True)


def consensus_scores(trials: list[Trial], task: str) -> dict[str, float]:
    """{trial id: agreement with the consensus} over the completed trials of `task`."""
    saved = {t.trial_id: (t, _predictions(t, task)) for t in trials}
    saved = {k: v for k, v in saved.items() if v[1] is not None}
    if not saved:
        return {}
    coords = {
        k: p["selected" if "selected" in p else "last"].float() for k, (_, p) in saved.items()
    }
    source_only = next(iter(saved.values()))[1]["source_only"].float()  # phase 1 is shared
    median = torch.stack([*coords.values(), source_only]).median(dim=0).values  # (N, K, 2)
    cfg = C.load(RunFolder(next(iter(saved.values()))[0].runs[task]).config)
    radius = cfg.train.pck_threshold * cfg.data.heatmap_size
    return {k: agreement(c, median, radius) for k, c in coords.items()}


def add_consensus(groups: dict[str, list[Trial]]) -> None:
    """Put proxy/consensus into the evaluation each completed trial chose (Trial.metrics)."""
    for trials in groups.values():
        for task in {task for t in trials for task in t.runs}:
            scores = consensus_scores(trials, task)
            for t in trials:
                if t.trial_id in scores:
                    t.metrics(task)[KEY] = scores[t.trial_id]
