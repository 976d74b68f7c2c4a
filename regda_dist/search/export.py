"""`regda-dist export`: the best configurations of a search, ready to re-run.

best/<task>/config.yaml  the trial's full resolved config (runnable by `regda-dist train`)
best/<task>/model.pt     its adapted weights of the epoch its selection metric chose (weights
                         only; the last epoch's for a trial without epoch selection)
best/<task>/meta.json    trial, parameters, the chosen epoch, every proxy, oracle values
                         (labelled), versions, git revision, the command that reproduces it
best/<task>/top<N>/      the same for ranks 2..k (--top-k)
best/summary.md          a table over tasks
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from regda_dist.search.consensus import add_consensus
from regda_dist.search.folder import ORACLE, SearchFolderError, Trial, load_trials, read_search
from regda_dist.search.joint import joint_scores
from regda_dist.search.spec import SearchConfig


def resolve_metric(metric: str | None, search: SearchConfig) -> str:
    """A full metric key: the search's objective (the selection metric at the epoch it chose)
    by default; a bare proxy name -> proxy/<name> (read at the chosen epoch)."""
    if metric is None:
        return search.objective
    if "/" in metric:
        return metric
    return f"proxy/{metric}"


def label(metric: str) -> str:
    """A metric as shown to users: best/<m> (the value at the chosen epoch) as <m>, and any
    oracle selection marked as such."""
    metric = metric.removeprefix("best/")
    oracle = metric.startswith("oracle/")
    return f"{metric} (ORACLE: selected with target labels)" if oracle else metric


def ranking(trials: list[Trial], metric: str) -> list[tuple[float, Trial]]:
    """Completed trials, best first. Joint trials: the joint objective, or the mean over tasks."""
    scored = []
    rescored = joint_scores(trials) if metric == "joint/objective" else {}
    for t in trials:
        if not t.complete:
            continue
        if metric == "joint/objective":  # against every completed trial (search/joint.py)
            value = rescored.get(t.trial_id, math.nan)
        else:
            value = sum(t.value(task, metric) for task in t.runs) / len(t.runs)
        if not math.isnan(value):
            scored.append((value, t))
    return sorted(scored, key=lambda vt: -vt[0])


def export(
    search_dir: Path, metric: str | None = None, top_k: int = 1, out: Path | None = None
) -> Path:
    search = read_search(search_dir)
    metric = resolve_metric(metric, search.settings)
    out = out or search_dir / "best"
    if top_k < 1:
        raise SearchFolderError(f"--top-k must be >= 1, got {top_k}")
    if out.exists():
        raise SearchFolderError(f"{out} exists; nothing overwritten (choose another --out)")
    provenance = _read_json(search_dir / "provenance.json")
    rows, picked = [], {}
    groups = load_trials(search_dir)
    add_consensus(groups)  # proxy/consensus: a proxy across the trials
    for group, trials in sorted(groups.items()):
        ranked = ranking(trials, metric)
        if not ranked:
            raise SearchFolderError(f"{search_dir}/{group}: no completed trial with {metric}")
        for task in ranked[0][1].runs:
            picked[task] = [(rank, value, t) for rank, (value, t) in enumerate(ranked[:top_k], 1)]
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for task, entries in picked.items():
        for rank, value, trial in entries:
            place = Path(task) if rank == 1 else Path(task) / f"top{rank}"
            _write(staging / place, out / place, (task, rank, value), trial, metric, provenance)
            rows.append((task, rank, value, trial))
    (staging / "summary.md").write_text(_summary(search_dir, metric, rows))
    staging.replace(out)  # all or nothing
    return out


def _write(folder: Path, final_folder: Path, picked: tuple, trial: Trial, metric, provenance):
    """One exported configuration into `folder` (staging), which becomes `final_folder`."""
    task, rank, value = picked
    folder.mkdir(parents=True)
    run = trial.runs[task]
    chosen = trial.selected.get(task)
    shutil.copy2(run / "config.yaml", folder / "config.yaml")
    # model.pt: the weights of the epoch the run reports; selected.pt in folders of searches
    # made before model.pt became that epoch's
    kept = run / "selected.pt"
    shutil.copy2(kept if chosen and kept.is_file() else run / "model.pt", folder / "model.pt")
    metrics = trial.metrics(task)
    last = trial.curves[task][-1]["epoch"] if trial.curves.get(task) else None
    meta = {
        "task": task,
        "rank": rank,
        "selected_by": label(metric),
        "selection_value": value,
        "trial_id": trial.trial_id,
        "group": trial.group,
        "params": trial.params,
        "epoch": chosen["epoch"] if chosen else last,  # of the exported weights
        "epoch_selected_by": label(chosen["metric"]) if chosen else "the last epoch",
        "last_epoch": last,
        "proxies": {k: v for k, v in metrics.items() if k.startswith("proxy/")},
        "source_pck": metrics.get("source/pck"),
        "oracle_eval_only": {k: v for k, v in metrics.items() if k.startswith(ORACLE)},
        "source_only": trial.source_only.get(task, {}),
        "run_folder": str(run),
        "versions": provenance,
        "reproduce": (
            f"regda-dist train {final_folder / 'config.yaml'} --name {task}-{trial.trial_id}"
        ),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


def _summary(search_dir: Path, metric: str, rows) -> str:
    lines = [
        f"# Best configurations of {search_dir.name}",
        "",
        f"Selected by **{label(metric)}**. `oracle/target_pck` is shown for evaluation only "
        "(target labels; nothing below was selected with it unless the line above says ORACLE).",
        "",
        "| task | rank | trial | selection value | oracle/target_pck | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for task, rank, value, trial in rows:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in trial.params.items())  # fmt: skip
        oracle = trial.value(task, ORACLE)
        lines.append(
            f"| {task} | {rank} | {trial.trial_id} | {value:.4g} | {oracle:.1f} | {params} |"
        )
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
