"""`regda-dist report`: how well each proxy ranks a search's trials against the oracle.

Per task and proxy, over the trials with an evaluation: Spearman's rank correlation with
oracle/target_pck and the top-1 regret (oracle PCK of the best trial minus that of the trial the
proxy picks). The oracle uses target labels and is here only to judge the proxies. Writes
report/report.md, report/<task>_proxies.png (proxy vs oracle) and report/<group>_importances.png
(a derived view: rewritten on every call).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no backend, no global figure state
from scipy.stats import spearmanr

from regda_dist.config import AdaptConfig
from regda_dist.folders import SearchFolder
from regda_dist.search.candidates import ranked
from regda_dist.search.consensus import add_consensus
from regda_dist.search.export import ranking
from regda_dist.search.folder import ORACLE, Trial, load_trials, read_search
from regda_dist.search.space import default_point, default_points
from regda_dist.search.spec import Search


def proxy_table(trials: list[Trial], task: str) -> dict[str, dict]:
    """{proxy: {spearman, regret, picked, n}} over the completed trials with an oracle value,
    each at the epoch it chose (trials stopped early are left out: their values are of an
    earlier epoch)."""
    rows = [t.metrics(task) for t in trials if t.complete and _finite(t.metrics(task).get(ORACLE))]
    proxies = sorted({k for r in rows for k in r if k.startswith("proxy/")})
    best = max((r[ORACLE] for r in rows), default=math.nan)
    out = {}
    for proxy in proxies:
        pairs = [(r[proxy], r[ORACLE]) for r in rows if _finite(r.get(proxy))]
        if len(pairs) < 2:
            continue
        xs, ys = zip(*pairs, strict=True)
        rho = spearmanr(xs, ys).statistic if len(set(xs)) > 1 else math.nan
        picked = ys[max(range(len(xs)), key=xs.__getitem__)]
        out[proxy] = {
            "spearman": float(rho),
            "regret": best - picked,
            "picked": picked,
            "n": len(pairs),
        }
    return out


MIN_TRIALS = 5  # completed trials below which a rank correlation says little (n=4: p >= 0.08)


def epoch_table(trials: list[Trial], task: str) -> dict | None:
    """Over the completed trials that chose an epoch: mean target PCK at their last epoch, at
    the epoch their selection metric chose, and at the oracle's best epoch (target labels: the
    most epoch selection could reach), and how often the chosen epoch was the oracle's."""
    rows, metrics = [], set()
    for t in trials:
        curve = [r for r in t.curves.get(task, []) if _finite(r.get(ORACLE))]
        if not (t.complete and curve and task in t.selected):
            continue
        best, chosen = max(curve, key=lambda r: r[ORACLE]), t.selected[task]
        metrics.add(chosen["metric"])
        rows.append(
            (
                curve[-1][ORACLE],
                chosen["metrics"][ORACLE],
                best[ORACLE],
                chosen["epoch"] == best["epoch"],
            )
        )
    if not rows:
        return None
    last, chosen, best, hits = (sum(column) / len(rows) for column in zip(*rows, strict=True))
    return {
        "last": last,
        "selected": chosen,
        "oracle_epoch": best,
        "same_epoch": round(hits * len(rows)),
        "n": len(rows),
        "metric": ", ".join(sorted(metrics)),
    }


Importances = Callable[[Path, object, str, Path], bool]  # distributed.study.plot_importances


def findings(search: Search, groups: dict[str, list[Trial]]) -> list[str]:
    """Per task, one line: the candidate the search picked (by its objective, at the epoch it
    chose; source-only or AdaBN where one scored better than every trial) and its target PCK
    beside the reference defaults, AdaBN, source-only and the oracle's pick (target labels:
    evaluation only)."""
    lines = []
    objective = search.settings.objective
    for trials in groups.values():
        scored = ranking(trials, objective)
        for task in sorted({task for t in trials for task in t.runs}):
            if not scored:
                lines.append(f"{task}: no completed trial")
                continue
            best = ranked(trials, scored, objective)[0]
            lines.append(_finding(search, trials, task, best))
    return lines


def _finding(search: Search, trials: list[Trial], task: str, best) -> str:
    pick = best.trial
    cfg = search.tasks.get(task)
    point = default_point(cfg, search.space) if cfg else None
    defaults = next((t for t in trials if t.complete and t.params == point), None)
    done = [t for t in trials if t.complete]
    oracle = max(done, key=lambda t: t.value(task, ORACLE))
    chosen = pick.selected.get(task, {})
    if best.baseline:
        cells = [f"{task}: {best.name}, which scored better than every trial by "
                 f"{objective_name(search)} ({best.value:.3g})"]  # fmt: skip
    else:
        cells = [f"{task}: trial {pick.trial_id}"]
        if chosen:
            cells.append(f"(epoch {chosen['epoch']}, {chosen['metric']} {chosen['value']:.3g})")
    cells.append(f"reaches {best.metrics(task).get(ORACLE, math.nan):.1f} target PCK")
    against = [
        ("the reference defaults", defaults.value(task, ORACLE) if defaults else None),
        ("AdaBN", pick.adabn.get(task, {}).get(ORACLE)),
        ("source-only", pick.source_only.get(task, {}).get(ORACLE)),
        ("the oracle's pick", oracle.value(task, ORACLE)),
    ]
    cells.append("vs " + ", ".join(f"{v:.1f} {k}" for k, v in against if _finite(v)))
    if defaults is None:
        outside = ": the experiment's own values lie outside search.space"
        cells.append(f"(no reference-defaults trial{outside if point is None else ''})")
    return " ".join(cells)


def method_picks(search: Search, trials: list[Trial], task: str) -> list[str]:
    """A table: per adaptation method of the search's trials, its best completed trial by the
    objective; then source-only and AdaBN by the same value (the candidates export ranks)."""
    objective = search.settings.objective
    own = search.tasks[task].adapt.method if task in search.tasks else AdaptConfig().method
    lines = ["| candidate | trials | pick | selection value | target PCK (eval only) |",
             "|---|---|---|---|---|"]  # fmt: skip
    scored = ranking(trials, objective)
    for method in sorted({t.params.get("adapt.method", own) for t in trials}):
        mine = [t for t in trials if t.params.get("adapt.method", own) == method]
        best = [(v, t) for v, t in scored if t in mine]  # none: every trial failed or stopped
        pick = "- | - | -"
        if best:
            (value, trial), *_ = best
            pick = f"{trial.trial_id} | {value:.4g} | {trial.value(task, ORACLE):.1f}"
        lines.append(f"| {method} | {len(mine)} | {pick} |")
    for c in ranked(trials, scored, objective):
        if c.baseline:
            lines.append(f"| {c.name} | - | - | {c.value:.4g} | "
                         f"{c.metrics(task).get(ORACLE, math.nan):.1f} |")  # fmt: skip
    return lines


def objective_name(search: Search) -> str:
    return search.settings.objective.removeprefix("best/")


@dataclass
class Report:
    """Where report.md is, and its first lines: a line per baseline that is the search's answer,
    then what the search found per task."""

    path: Path
    won: list[str]
    heading: str
    found: list[str]

    @property
    def headline(self) -> list[str]:
        """The report's first lines, as a console shows them after the whole text."""
        return [*self.won, self.heading, *(f"- {line}" for line in self.found)]


def report(search_dir: Path, importances: Importances | None = None) -> Report:
    """report/report.md (+ plots); `importances` draws a group's parameter importances."""
    search = read_search(search_dir)
    out = SearchFolder(search_dir).report
    out.mkdir(exist_ok=True)
    groups = load_trials(search_dir)
    add_consensus(groups)  # proxy/consensus: a proxy across the trials
    found = findings(search, groups)
    won = [
        f"**A baseline is the search's answer: {line.split(',')[0]}.**"
        for line in found
        if "scored better than every trial" in line
    ]
    heading = (
        f"What the search found (selected by {objective_name(search)}; "
        "target PCK uses target labels, for evaluation only):"
    )
    lines = [
        f"# Proxy report of {search_dir.name}",
        "",
        *(f"{line}\n" for line in won),
        heading,
        "",
        *(f"- {line}" for line in found),
        "",
        "Spearman: rank correlation of the proxy with oracle/target_pck over trials. Regret: "
        "oracle PCK of the best trial minus that of the proxy's pick (0 is perfect). The oracle "
        "uses target labels: it judges the proxies and selects nothing.",
    ]
    for group, trials in sorted(groups.items()):
        for task in sorted({task for t in trials for task in t.runs}):
            table = proxy_table(trials, task)
            done = sum(t.complete for t in trials)
            lines += [
                "",
                f"## {task} ({done} completed of {len(trials)} trials, group {group})",
                "",
                *(method_picks(search, trials, task) if group == task else []),
                "",
            ]
            lines += [
                "| proxy | Spearman | top-1 regret | oracle PCK of pick | trials |",
                "|---|---|---|---|---|",
            ]
            for proxy, r in sorted(table.items(), key=lambda kv: kv[1]["regret"]):
                cells = (
                    proxy,
                    f"{r['spearman']:.2f}",
                    f"{r['regret']:.1f}",
                    f"{r['picked']:.1f}",
                    r["n"],
                )
                lines.append("| " + " | ".join(map(str, cells)) + " |")
            compared = max((r["n"] for r in table.values()), default=0)
            if compared < MIN_TRIALS:
                lines.append(
                    f"\nWARNING: {compared} completed trial(s) compared; below {MIN_TRIALS} a "
                    "rank correlation says little (run more trials, or fewer stopped early)."
                )
            epochs = epoch_table(trials, task)
            if epochs:
                lines.append(
                    f"\nEpoch selection by {epochs['metric']} ({epochs['n']} trials, mean target "
                    f"PCK, eval only): last epoch {epochs['last']:.1f}, selected epoch "
                    f"{epochs['selected']:.1f}, oracle's epoch {epochs['oracle_epoch']:.1f}; "
                    f"the selected epoch was the oracle's in {epochs['same_epoch']} of "
                    f"{epochs['n']}."
                )
            if table:
                own = default_points(search.tasks.get(task, search.cfg), search.space)
                _scatter(trials, task, table, own, out / f"{task}_proxies.png")
                lines.append(f"\n![proxies vs oracle]({task}_proxies.png)")
        if importances and importances(search_dir, search, group, out / f"{group}_importances.png"):
            lines.append(f"\n![parameter importances]({group}_importances.png)")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return Report(path, won, heading, found)


COLUMNS = 3  # panels a row: 3 x 4 in at 100 dpi fits a laptop screen


def _scatter(trials: list[Trial], task: str, table: dict, defaults: list[dict], path: Path):
    """One panel per proxy in a grid (COLUMNS a row): each completed trial's proxy value against
    its target PCK (eval only), the proxy's pick circled, the experiment's own values (the
    defaults' trials) as squares; Spearman and the regret in each title."""
    proxies = sorted(table)
    rows = -(-len(proxies) // COLUMNS)
    cols = min(COLUMNS, len(proxies))
    fig = Figure(figsize=(4.0 * cols, 3.3 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    done = [t for t in trials if t.complete]
    for ax, proxy in zip(axes.flat, proxies, strict=False):
        pts = [(t.metrics(task).get(proxy), t.metrics(task).get(ORACLE), _is_default(t, defaults))
               for t in done]  # fmt: skip
        pts = [(x, y, d) for x, y, d in pts if _finite(x) and _finite(y)]
        ax.scatter([x for x, _, d in pts if not d], [y for _, y, d in pts if not d], s=16,
                   label="searched")  # fmt: skip
        ax.scatter([x for x, _, d in pts if d], [y for _, y, d in pts if d], s=40, marker="s",
                   facecolors="none", edgecolors="tab:green", label="defaults")  # fmt: skip
        if pts:
            x, y, _ = max(pts, key=lambda p: p[0])
            ax.scatter([x], [y], s=140, facecolors="none", edgecolors="tab:red", linewidths=1.5,
                       label="pick")  # fmt: skip
        r = table[proxy]
        ax.set_title(f"{proxy.removeprefix('proxy/')}: rho {r['spearman']:.2f}, "
                     f"regret {r['regret']:.1f}", fontsize=10)  # fmt: skip
        ax.set_xlabel(proxy, fontsize=9)
        ax.set_ylabel("target PCK (eval only)", fontsize=9)
    for ax in list(axes.flat)[len(proxies) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{task}: proxies vs target PCK over {len(done)} completed trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _is_default(trial: Trial, defaults: list[dict]) -> bool:
    """Whether a trial ran at one of the defaults points (the experiment's own values)."""

    def same(a, b) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b)
        return a == b

    return any(
        point.keys() == trial.params.keys() and all(same(point[k], trial.params[k]) for k in point)
        for point in defaults
    )


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
