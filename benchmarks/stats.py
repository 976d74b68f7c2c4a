"""The small statistics of the benchmarks' tables."""

from __future__ import annotations

import math
import statistics


def mean(values) -> float:
    """The mean of the values that are not NaN (NaN where there is none)."""
    values = [v for v in values if v == v]
    return statistics.mean(values) if values else math.nan


def ms(values: list[float], sign: str = "") -> str:
    """'mean ± std' to one decimal ('+' `sign`: the mean signed); one value alone."""
    if len(values) == 1:
        return f"{values[0]:{sign}.1f}"
    return f"{statistics.mean(values):{sign}.1f} ± {statistics.stdev(values):.1f}"


def signed(values: list[float]) -> str:
    """Each value signed to one decimal, comma-separated."""
    return ", ".join(f"{x:+.1f}" for x in values)


def paired(values: dict, reference: dict) -> list[float]:
    """value - reference of each key both have (a seed: the same phase 1), in `values`' order."""
    return [v - reference[k] for k, v in values.items() if k in reference]


def finite(x) -> bool:
    """A number, and finite."""
    return isinstance(x, int | float) and math.isfinite(x)


def rho(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation; NaN under 3 points or where either side is constant."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(spearmanr(xs, ys).statistic)
