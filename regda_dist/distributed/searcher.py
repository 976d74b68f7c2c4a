"""What Optuna sees of a search: the space as Tune domains, the sampler, and the searcher that
tells Optuna each trial's outcome (COMPLETE, PRUNED with its values per epoch, or FAIL).

Extending: a new distribution is one entry of `tune_space`'s table; a new sampler one branch
of `sampler` (and a choice of SearchConfig.sampler); the searcher's outcomes are all decided in
`EarlyStopAwareOptunaSearch.on_trial_complete` and told through `_tell`, which never raises.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from pathlib import Path

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from regda_dist.folders import TrialFolder
from regda_dist.search.settings import SearchConfig
from regda_dist.search.space import METHOD, dimensions

logger = logging.getLogger(__name__)
State = optuna.trial.TrialState


def define_by_run(space: dict):
    """A conditional space (adapt.method a dimension) as an Optuna define-by-run function: the
    method first, then only the dimensions it reads (search/space.py). A module-level function
    with its space bound: the searcher pickles it with its state (--resume)."""
    return functools.partial(_suggest, space)


def _suggest(space: dict, trial) -> None:
    method = trial.suggest_categorical(METHOD, space[METHOD]["choice"])
    for key, spec in dimensions(space, method).items():
        if key == METHOD:
            continue
        ((kind, args),) = spec.items()
        if kind in ("choice", "grid"):
            trial.suggest_categorical(key, args)
        elif kind == "randint":
            trial.suggest_int(key, args[0], args[1] - 1)  # hi exclusive, as Tune's
        else:
            trial.suggest_float(key, args[0], args[1], log=kind == "loguniform")


def tune_space(space: dict) -> dict:
    """The YAML space as Tune domains (OptunaSearch converts them to Optuna distributions)."""
    make = {
        "loguniform": lambda a: tune.loguniform(*a),
        "uniform": lambda a: tune.uniform(*a),
        "randint": lambda a: tune.randint(*a),
        "choice": tune.choice,
        "grid": tune.choice,  # enumerated by Optuna's GridSampler
    }
    return {key: make[kind](args) for key, spec in space.items() for kind, args in spec.items()}


def sampler(settings: SearchConfig, space: dict, startup: int | None = None):
    """GridSampler for a grid; RandomSampler for search.sampler random; else TPE, seeded, model-
    based after `startup` trials (default settings.tpe_startup; space.startup_trials counts
    each method's defaults trial). With concurrent trials, TPE models the
    parameters jointly (multivariate) and treats running trials as bad (constant liar), so
    concurrent suggestions spread out instead of repeating each other."""
    if all("grid" in spec for spec in space.values()):
        grid = {key: spec["grid"] for key, spec in space.items()}
        return optuna.samplers.GridSampler(grid, seed=settings.seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    concurrent = settings.max_concurrent > 1
    conditional = METHOD in space  # group: TPE models each method's dimensions together
    with warnings.catch_warnings():  # these options are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=settings.tpe_startup if startup is None else startup,
            seed=settings.seed,
            multivariate=concurrent or conditional,
            group=conditional,
            constant_liar=concurrent,
        )


class EarlyStopAwareOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, with the outcomes a search of epochs needs:
    - a trial that ASHA stopped before `last_epoch` is PRUNED, its values per epoch the
      intermediate values up to the rung that stopped it (Ray's would tell COMPLETE with an
      early value, mixing epochs in TPE and the parameter importances), and its trial folder
      gets `stopped.json` (folders.TrialFolder.stopped): the workers train on while Tune stops
      them, and may write result.json first; the marker keeps such a trial stopped early in
      the summary, export and report as in Optuna, whatever that race did;
    - a trial without a finite objective (its selection metric NaN at every epoch) is FAIL, said
      in one line (Ray's tells COMPLETE with NaN, which Optuna refuses: it stayed RUNNING);
    - on --resume, a study trial started after Tune's last saved state (no Tune trial will ever
      finish it) is FAIL, so a constant liar does not treat it as running forever.
    Every tell is guarded as Ray's own: GridSampler.after_trial calls study.stop(), which raises
    outside study.optimize."""

    def __init__(self, *args, last_epoch: int, trials_dir: Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_epoch = last_epoch
        self._trials_dir = trials_dir  # <group>/trials: where stopped.json goes

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._completed_trials:
            self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials:
            return
        value = (result or {}).get(self._metric)
        if error:
            self._tell(trial_id, State.FAIL)
        elif not _finite(value):
            print(
                f"trial {trial_id} failed: {self._metric} has no value (NaN at every evaluated "
                "epoch); told to Optuna as FAIL",
                flush=True,
            )
            self._tell(trial_id, State.FAIL)
        elif result.get("epoch", 0) < self._last_epoch:
            # Tune does not pass the result that made the scheduler stop the trial to
            # on_trial_result, only here (as its last result): the rung's value
            self._report(trial_id, result)
            self._mark_stopped(trial_id, int(result.get("epoch", 0)))
            self._tell(trial_id, State.PRUNED)
        else:
            self._tell(trial_id, State.COMPLETE, float(value))

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        known = {trial.number for trial in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(State.RUNNING,)):
            if orphan.number not in known:
                print(
                    f"resume: Optuna trial {orphan.number} started after the search's last "
                    "saved state and no Tune trial continues it; told to Optuna as FAIL",
                    flush=True,
                )
                self._guarded(self._ot_study.tell, orphan.number, state=State.FAIL)

    def _mark_stopped(self, trial_id: str, epoch: int) -> None:
        trials_dir = getattr(self, "_trials_dir", None)  # a searcher pickled before it had one
        if trials_dir is None:
            return
        folder = TrialFolder(Path(trials_dir) / trial_id)
        folder.path.mkdir(parents=True, exist_ok=True)
        marker = {"stopped_by": "scheduler", "epoch": epoch, "last_epoch": self._last_epoch}
        folder.stopped.write_text(json.dumps(marker))

    def _report(self, trial_id: str, result: dict) -> None:
        """The objective as the intermediate value of its epoch (finite values only)."""
        value = result.get(self._metric)
        if _finite(value) and "epoch" in result:
            with warnings.catch_warnings():  # a resumed trial may repeat an epoch it reported
                warnings.simplefilter("ignore")
                self._ot_trials[trial_id].report(float(value), step=int(result["epoch"]))

    def _tell(self, trial_id: str, state: State, value: float | None = None) -> None:
        self._guarded(self._ot_study.tell, self._ot_trials[trial_id], value, state=state)
        self._completed_trials.add(trial_id)

    @staticmethod
    def _guarded(tell, *args, **kwargs) -> None:
        """Optuna stores the state before a sampler's after_trial can raise (study.stop() of a
        finished grid): what raises here is logged, as Ray's OptunaSearch does."""
        try:
            tell(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - a tell must never fail the trial
            logger.warning("Optuna: %s", err)


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
