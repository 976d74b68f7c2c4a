"""Epoch selection without target labels: keep the evaluated epoch with the best
train.select_metric (higher is better; NaN never wins), its weights and its target predictions."""

from __future__ import annotations


def best_logs(selected: dict) -> dict:
    """best/<metric> and best/epoch of a selected epoch: what the logs, Tune and Optuna see."""
    return {f"best/{selected['metric']}": selected["value"], "best/epoch": selected["epoch"]}


def offer(state: dict, key: str, epoch: int, evaluated: dict, model, coords) -> dict:
    """Keep this epoch in state["selected"] if `key` is better than the kept one's; returns the
    logs of the epoch kept so far ({} before any, or without a metric). The weights kept are
    `model`'s (the evaluated target model: its BatchNorm statistics as adapt.batchnorm
    evaluates the target); `coords` its target val predictions (a search's consensus)."""
    if not key:
        return {}
    best, value = state.get("selected"), evaluated.get(key, float("nan"))
    if value == value and (best is None or value > best["value"]):
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        best = {
            "epoch": epoch,
            "metric": key,
            "value": value,
            "metrics": evaluated,
            "weights": weights,
            "coords": coords,
        }
        state["selected"] = best
    return best_logs(best) if best is not None else {}
