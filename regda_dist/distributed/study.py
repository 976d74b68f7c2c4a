"""The Optuna study of a search read back: parameter importances for the report (optuna is
imported here, in the distributed layer, not by the search package)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna

from regda_dist.search.setup import storage_url, study_name
from regda_dist.search.spec import Search


def plot_importances(search_dir: Path, search: Search, group: str, path: Path) -> bool:
    """Optuna's parameter importances of the group's study (needs a few completed trials)."""
    url = storage_url(search.settings, search_dir)
    plt.switch_backend("Agg")  # files only, whatever display the machine has
    try:
        study = optuna.load_study(study_name=study_name(search_dir, group), storage=url)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < 2 or len(study.best_trial.params) < 1:
            return False
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
        ax.figure.set_size_inches(6, 3)
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=100)
        plt.close(ax.figure)
        return True
    except (KeyError, ValueError, RuntimeError):  # no study, or too little variation
        return False
