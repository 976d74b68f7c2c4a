"""The only package that imports ray (and, later, optuna): Ray Train, Tune, cluster submission."""
