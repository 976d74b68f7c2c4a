"""`regda-dist export`: the best configurations of a search, ready to re-run.

best/<task>/config.yaml  the trial's full resolved config (runnable by `regda-dist train`)
best/<task>/model.pt     its adapted weights of the epoch its selection metric chose (weights
                         only; the last epoch's for a trial without epoch selection)
Where source-only or AdaBN scores better than every trial by the same metric (search/
candidates.py), that baseline is what is exported: its config is the trial's with
adapt.method source_only / adabn (no phase 2), its weights the phase-1 cache's.
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

import yaml

from regda_dist.folders import ExportFolder, RunFolder, SearchFolder
from regda_dist.search.candidates import Candidate, ranked
from regda_dist.search.consensus import add_consensus
from regda_dist.search.folder import ORACLE, SearchFolderError, Trial, load_trials, read_search
from regda_dist.search.joint import joint_scores
from regda_dist.search.settings import SearchConfig


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
    out = out or SearchFolder(search_dir).best
    if top_k < 1:
        raise SearchFolderError(f"--top-k must be >= 1, got {top_k}")
    if out.exists():
        raise SearchFolderError(f"{out} exists; nothing overwritten (choose another --out)")
    provenance = _read_json(SearchFolder(search_dir).provenance)
    rows, picked = [], {}
    groups = load_trials(search_dir)
    add_consensus(groups)  # proxy/consensus: a proxy across the trials
    for group, trials in sorted(groups.items()):
        scored = ranking(trials, metric)
        if not scored:
            raise SearchFolderError(f"{search_dir}/{group}: no completed trial with {metric}")
        best = ranked(trials, scored, metric)[:top_k]
        for task in scored[0][1].runs:
            picked[task] = list(enumerate(best, 1))
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for task, entries in picked.items():
        for rank, candidate in entries:
            place = Path(task) if rank == 1 else Path(task) / f"top{rank}"
            _write(staging / place, out / place, (task, rank), candidate, metric, provenance)
            rows.append((task, rank, candidate))
    (staging / ExportFolder.SUMMARY).write_text(_summary(search_dir, metric, rows))
    staging.replace(out)  # all or nothing
    return out


def _write(folder: Path, final_folder: Path, picked: tuple, candidate: Candidate, metric,
           provenance):  # fmt: skip
    """One exported configuration into `folder` (staging), which becomes `final_folder`."""
    (task, rank), trial = picked, candidate.trial
    folder.mkdir(parents=True)
    out, run = ExportFolder(folder), RunFolder(trial.runs[task])
    chosen = None if candidate.baseline else trial.selected.get(task)
    if candidate.baseline:  # the trial's config, without phase 2; the phase-1 cache's weights
        cfg = yaml.safe_load(run.config.read_text())
        cfg.setdefault("adapt", {})["method"] = candidate.baseline
        out.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        shutil.copy2(trial.baseline_weights[task][candidate.baseline], out.model)
    else:
        shutil.copy2(run.config, out.config)
        # model.pt: the weights of the epoch the run reports; selected.pt in folders of
        # searches made before model.pt became that epoch's
        kept = run.selected_before
        shutil.copy2(kept if chosen and kept.is_file() else run.model, out.model)
    metrics = candidate.metrics(task)
    last = trial.curves[task][-1]["epoch"] if trial.curves.get(task) else None
    baseline = candidate.baseline
    meta = {
        "task": task,
        "rank": rank,
        "candidate": candidate.name,  # a trial, or the baseline that scored better than them
        "selected_by": label(metric),
        "selection_value": candidate.value,
        "trial_id": None if baseline else trial.trial_id,
        "group": trial.group,
        "params": {"adapt.method": baseline} if baseline else trial.params,
        "epoch": None if baseline else chosen["epoch"] if chosen else last,  # of the weights
        "epoch_selected_by": (
            "no phase 2" if baseline else label(chosen["metric"]) if chosen else "the last epoch"
        ),
        "last_epoch": None if baseline else last,
        "proxies": {k: v for k, v in metrics.items() if k.startswith("proxy/")},
        "source_pck": metrics.get("source/pck"),
        "oracle_eval_only": {k: v for k, v in metrics.items() if k.startswith(ORACLE)},
        "source_only": trial.source_only.get(task, {}),
        "run_folder": str(run.path),
        "versions": provenance,
        "reproduce": (
            f"regda-dist train {ExportFolder(final_folder).config} --name "
            f"{task}-{baseline or trial.trial_id}"
        ),
    }
    out.meta.write_text(json.dumps(meta, indent=2))


def _summary(search_dir: Path, metric: str, rows) -> str:
    won = [f"{c.name} scored better than every trial on {task}: it is what is exported"
           for task, rank, c in rows if rank == 1 and c.baseline]  # fmt: skip
    lines = [
        f"# Best configurations of {search_dir.name}",
        "",
        *(f"**{line}.**" for line in won),
        *([""] if won else []),
        f"Selected by **{label(metric)}**. `oracle/target_pck` is shown for evaluation only "
        "(target labels; nothing below was selected with it unless the line above says ORACLE).",
        "",
        "| task | rank | candidate | selection value | oracle/target_pck | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for task, rank, candidate in rows:
        params = (
            {"adapt.method": candidate.baseline} if candidate.baseline else candidate.trial.params
        )
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in params.items())  # fmt: skip
        oracle = candidate.metrics(task).get(ORACLE, math.nan)
        lines.append(
            f"| {task} | {rank} | {candidate.name} | {candidate.value:.4g} | {oracle:.1f} | "
            f"{text} |"
        )
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
