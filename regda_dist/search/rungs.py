"""When a scheduler may judge a trial: ASHA's rungs in epochs, from the first epoch by whose end
every method the search runs has begun to adapt (each method says when: Method.judge_from), or
search.grace_period; a task of a search whose rungs would all fall on or after its last epoch
runs FIFO (each task has its own ASHA), said at load."""

from __future__ import annotations

from regda_dist import config as C
from regda_dist.methods import get_method
from regda_dist.search.settings import SearchConfig
from regda_dist.search.space import methods


def searched_methods(space: dict, cfg: C.Config) -> list[str]:
    """The methods a search's trials run: its method dimension, else the experiment's own."""
    return methods(space) or [cfg.adapt.method]


def grace_epochs(cfg: C.Config, space: dict, share: float) -> tuple[int, str]:
    """The first epoch a scheduler may judge any trial of the search by: the latest of its
    methods' (a baseline has no phase 2 to wait for), and what that method waits on."""
    found = [(1, "")]
    for name in searched_methods(space, cfg):
        method = get_method(name)
        found.append((method.judge_from(cfg, share), f"{method.label}'s {method.waits_for}"))
    return max(found, key=lambda epoch_why: epoch_why[0])


def asha_rungs(
    settings: SearchConfig, tasks: dict[str, C.Config], space: dict
) -> tuple[int, int, list[int]]:
    """(grace period, max_t, rungs) of ASHA in epochs. max_t is one past the last epoch, where
    ASHA would stop every trial."""
    share = settings.warmup_share
    grace = settings.grace_period or max(grace_epochs(c, space, share)[0] for c in tasks.values())
    max_t = max(c.adapt.epochs for c in tasks.values()) + 1
    rungs, rung = [], grace
    while rung < max_t:
        rungs.append(rung)
        rung *= settings.reduction_factor
    return grace, max_t, rungs


def rung_fields(space: dict, cfg: C.Config) -> tuple[str, ...]:
    """The fields ASHA's rungs are computed from: phase 2's epoch length and what each method
    of the search waits on (a search cannot vary them under ASHA)."""
    own = [f for name in searched_methods(space, cfg) for f in get_method(name).rung_fields]
    return ("adapt.iters_per_epoch", *dict.fromkeys(own))


def stops_nothing(settings: SearchConfig, cfg: C.Config, space: dict) -> str | None:
    """Why ASHA could stop none of a task's trials (every rung on or after its last epoch: a
    warm-up or grace_period as long as its run), in a clause; None if it can."""
    grace, max_t, rungs = asha_rungs(settings, {"task": cfg}, space)
    last = max_t - 1
    if any(rung < last for rung in rungs):
        return None
    waits = grace_epochs(cfg, space, settings.warmup_share)[1]
    why = f"{waits} at {settings.warmup_share:.0%} of its rise"
    why = "search.grace_period" if settings.grace_period else why
    return f"its first rung, epoch {grace} ({why}), is not before the last epoch ({last})"


def scheduler_notes(settings: SearchConfig, tasks: dict[str, C.Config], space: dict) -> list[str]:
    """ASHA with no rung before the last epoch could stop nothing, and Ray refuses a grace
    period beyond max_t (an AssertionError after phase 1 ran). Each task's group has its own
    ASHA, so each task is judged alone: a task that could stop nothing runs FIFO, said here
    (make_scheduler builds the same per task); when every task does, the search runs FIFO."""
    if settings.scheduler_name != "asha":
        return []
    fifo = {n: why for n, c in tasks.items() if (why := stops_nothing(settings, c, space))}
    if len(fifo) == len(tasks):
        settings.scheduler = "fifo"
        if len(tasks) == 1:
            return [f"search.scheduler asha: {next(iter(fifo.values()))}, so no trial could "
                    "be stopped early; running FIFO"]  # fmt: skip
    return [
        f"search.scheduler asha: task {name}: {why}, so none of its trials could be stopped "
        f"early; {name} runs FIFO"
        for name, why in fifo.items()
    ]
