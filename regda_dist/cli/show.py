"""What the commands print of the data they get back: a run's result, a search's summary."""

from __future__ import annotations

from regda_dist.config.migrate import adapted
from regda_dist.methods import get_method

ORACLE_MARK = " (ORACLE: target labels)"


def format_result(result: dict, name: str) -> str:
    """Target PCK per group of source-only, AdaBN and the adapted model (oracle/ = target
    labels, eval only), and the candidates line. The adapted model is the epoch the run
    selected where it selects one (train.select_metric: the numbers and weights `export` gives
    that configuration), with its last epoch beside it."""
    chosen, method, last = result.get("selected"), _method(result), adapted(result)
    rows = [
        ("source-only", result["source_only"]),
        ("AdaBN", result["adabn"]),
        (method, chosen["metrics"] if chosen else last),
    ]
    if chosen:
        rows.append(("  last epoch", last))
    prefix = "oracle/target_pck"
    groups = [k.split("/")[-1] for k in last if k.startswith(prefix + "/")] + ["all"]
    head = f"{name}: target PCK@0.05 (test split; labels used for evaluation only)"
    width = max(14, *(len(label) + 1 for label, _ in rows))
    lines = [head, f"{'method':<{width}}" + "".join(f"{g:>10}" for g in groups) + f"{'source':>10}"]
    for label, m in rows:
        vals = [m[prefix if g == "all" else f"{prefix}/{g}"] for g in groups]
        lines.append(
            f"{label:<{width}}" + "".join(f"{v:10.1f}" for v in vals) + f"{m['source/pck']:10.1f}"
        )
    if chosen:
        oracle = ORACLE_MARK if chosen["metric"].startswith("oracle/") else ""
        lines.append(
            f"{method}: epoch {chosen['epoch']}, selected by {chosen['metric']}{oracle} (weights: "
            "model.pt; the last epoch's: last.pt)"
        )
    if "candidates" in result:
        lines.append(candidates_line(result))
    return "\n".join(lines)


def _method(result: dict) -> str:
    """The adapted model as the result names it (results of before the label: RegDA)."""
    return result.get("method", get_method("regda").shown_as)


def candidates_line(result: dict) -> str:
    """The run's candidates side by side by its selection metric, and the one it would export."""
    c = result["candidates"]
    method = _method(result)
    names = {"source_only": "source-only", "adabn": "AdaBN", "adapted": method}
    if "selected" in result:
        names["adapted"] = f"{method}, epoch {result['selected']['epoch']}"
    oracle = ORACLE_MARK if c["metric"].startswith("oracle/") else ""
    values = ", ".join(f"{names[k]} {v:.4g}" for k, v in c["values"].items())
    return f"{c['metric']}{oracle}: {values} -> would export {names[c['best']]}"


def search_summary(summary: dict, objective: str, oracle: bool) -> list[str]:
    """Per group: trials completed, stopped, failed, the best trial, and a baseline that is the
    search's answer."""
    label = ORACLE_MARK if oracle else ""
    lines = []
    for group, g in summary.items():
        lines.append(
            f"{group}: {g['completed']}/{g['trials']} trials completed, {g['stopped_early']} "
            f"stopped early, {g['errored']} failed; best {objective}{label} = "
            f"{g['best_value']} (trial {g['best_trial']})"
        )
        if g.get("answer") and not g["answer"].startswith("trial "):
            lines.append(
                f"{group}: {g['answer']} scored {g['answer_value']:.4g}, better than every "
                f"trial: it is the search's answer (what export writes)"
            )
    return lines
