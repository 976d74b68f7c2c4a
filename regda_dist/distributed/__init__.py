"""The only package that imports ray (and, later, optuna): Ray Train, Tune, cluster submission."""

import os

# Ray folds lines from different workers that differ only in their numbers into one "[repeated
# Nx across cluster]": the epoch lines of two concurrent trials ("[trial a1] adapt 2/3 ...")
# would show as one. Every line of engine/console.py carries a counter ("2/3", "40/200
# iterations"), which exempts it; Ray reads this when it is imported, so it is set first.
os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", r"\d+/\d+")
