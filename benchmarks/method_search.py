"""A search over every adaptation method, per task and seed: what the label-free search hands
back beside source-only, AdaBN and the oracle's pick; writes
benchmarks/results/method_search.{md,json}.

    python -m benchmarks method_search [--experiment experiments/synth_search_methods.yaml]
        [--tasks synth_body quadruped ...]
        [--seeds 0 1 2] [--work runs/benchmark-method-search] [--set KEY=VALUE ...]

Each seed is one real `regda-dist tune` (embedded Ray, Optuna, the experiment's own proxy) with
train.seed and search.seed set to it, then `regda-dist report` on its folder. A finished
seed's folder (its search.json written) is read again, not re-run; an unfinished one is
continued with --resume. With --no-run, a search whose folder is not on this machine (another
machine's, or one since removed) is carried from the earlier record at --out (its .json),
matched by folder name (experiment, task, seed; not --set), marked as carried in the table.
The .md's hand-written "## Notes" section is kept either way (benchmarks/record.py).
Per task: the search's answer (the best candidate by the search's objective: a trial at the
epoch it selected, or source-only / AdaBN where one scored better), its target PCK, the best
trial of each method by the same objective, and the oracle's pick (the candidate with the best
target PCK, baselines included: target labels, for judging only).
Target labels are read only to evaluate.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

import torch

from benchmarks import RESULTS, domains, record, searches
from benchmarks.stats import ms
from regda_dist import config as C
from regda_dist.data import heatmap
from regda_dist.data.datasets import build_task
from regda_dist.folders import RunFolder, SearchFolder
from regda_dist.proxies.base import SplitOutputs
from regda_dist.proxies.pose_prior import PosePrior
from regda_dist.search.candidates import ranked
from regda_dist.search.export import ranking
from regda_dist.search.folder import ORACLE
from regda_dist.search.report import proxy_table
from regda_dist.search.space import METHOD


def task_entry(task: str, work: Path) -> str:
    """`search.tasks=[...]` for one task: a synthetic task by name, a held-out pair
    (benchmarks/domains.py) as {name, set: its COCO folders' data fields}."""
    if task not in domains.HELDOUT:
        return f"search.tasks={json.dumps([task])}"
    sets = dict(domains.data_fields(task, work))
    return f"search.tasks={json.dumps([{'name': task, 'set': sets}])}"


def _folder(experiment: str, seed: int, work: Path, task: str | None) -> Path:
    return work / f"{Path(experiment).stem}-{task + '-' if task else ''}seed{seed}"


def search_minutes(folder: Path) -> float | None:
    """The search's wall time, from its provenance (written first) to its search.json (written
    last); a resumed search counts its pause too. None without its provenance."""
    files = [SearchFolder(folder).provenance, SearchFolder(folder).summary]
    if not all(f.is_file() for f in files):
        return None
    return (files[1].stat().st_mtime - files[0].stat().st_mtime) / 60


def _search(experiment: str, seed: int, work: Path, extra: list[str], task: str | None = None,
            report: bool = True) -> tuple[Path, float]:  # fmt: skip
    """Run (or continue) the seed's search (on `task` in place of the experiment's
    search.tasks) and write its report (unless not `report`); its folder and the seconds this
    call took."""
    folder, start = _folder(experiment, seed, work, task), time.time()
    sets = [f"train.seed={seed}", f"search.seed={seed}", *extra]
    searches.tune(experiment, folder, [*sets, *([task_entry(task, work)] if task else [])])
    if report:
        searches.cli("report", str(folder), quiet=True)
    return folder, time.time() - start


def _source_labels(cfg):
    """The source val split as the pose prior reads it (engine/collect.py): keypoints in
    heatmap px, valid where visible and inside the map, and the keypoint set."""
    task = build_task(cfg.data)
    items = [task.source_val[i] for i in range(len(task.source_val))]
    kp = torch.stack([torch.as_tensor(it[1]) for it in items]).float()
    vis = torch.stack([torch.as_tensor(it[2]) for it in items])
    size, image = cfg.data.heatmap_size, cfg.data.image_size
    _, valid = heatmap.targets(kp, vis, image, size)
    none = torch.zeros(0)
    return SplitOutputs(coords=none, scores=none, coords_adv=none, features=none,
                        keypoints=kp * size / image, valid=valid, spec=task.spec)  # fmt: skip


def _coords(candidate, task: str):
    """A candidate's target val predictions at the epoch it is handed back at (its run folder's
    predictions); None for AdaBN (not saved)."""
    file = RunFolder(candidate.trial.runs[task]).predictions
    if candidate.baseline == "adabn" or not file.is_file():
        return None
    saved = torch.load(file, map_location="cpu", weights_only=True)
    if candidate.baseline:
        return saved.get("source_only")
    return saved.get("selected", saved.get("last"))  # a baseline run's trial saves neither


def proxy_gap(answer, pick, task: str, objective: str) -> dict | None:
    """Was the proxy's miss noise? The pose prior of the answer minus that of the oracle's pick
    on the same target val images, with the standard error of that paired difference (per-image
    scores); None where the objective is another proxy or a candidate's predictions are not
    saved. A difference of many standard errors points at the proxy's bias rather than its
    noise (more images would not have fixed the pick); the answer being the best of several
    candidates by this score on these images inflates it (the winner's curse)."""
    if objective.removeprefix("best/") != "proxy/pose_prior" or pick in (None, answer):
        return None
    coords = [_coords(c, task) for c in (answer, pick)]
    if any(c is None for c in coords):
        return None
    source = _source_labels(C.load(RunFolder(answer.trial.runs[task]).config))
    prior = PosePrior()

    def scores(c):
        none = torch.zeros(0)
        return prior.per_image(source, SplitOutputs(c, none, none, none))

    a, b = (scores(c) for c in coords)
    diff = a - b
    return {
        "answer": float(a.mean()),
        "pick": float(b.mean()),
        "diff": float(diff.mean()),
        "se": float(diff.std() / math.sqrt(len(diff))),
        "images": len(diff),
    }


def summarise(folder: Path) -> dict:
    """task -> the search's answer, the baselines, each method's pick and the oracle's pick."""
    search, groups = searches.read(folder)
    objective, out = search.settings.objective, {}
    for trials in groups.values():
        scored = ranking(trials, objective)
        for task in sorted({task for t in trials for task in t.runs}):
            done = [t for t in trials if t.complete]
            own = search.tasks[task].adapt.method
            candidates = ranked(trials, scored, objective)
            answer = candidates[0]
            methods = {}
            for value, trial in scored:  # best first
                method = trial.params.get(METHOD, own)
                methods.setdefault(method, {"trial": trial.trial_id, "value": value,
                                            "target_pck": trial.value(task, ORACLE)})  # fmt: skip
            for method in {t.params.get(METHOD, own) for t in trials}:
                methods.setdefault(method, None)  # no completed trial
            oracle = max(done, key=lambda t: t.value(task, ORACLE))
            best = next((c for c in candidates if c.trial is oracle and not c.baseline), None)
            base = next(c for c in candidates if not c.baseline).trial
            pick = {  # the most selection could reach, baselines included
                "trial": oracle.trial_id,
                "method": oracle.params.get(METHOD, own),
                "target_pck": oracle.value(task, ORACLE),
            }
            for name in ("adabn", "source_only"):
                value = getattr(base, name)[task][ORACLE]
                if value > pick["target_pck"]:
                    pick = {"trial": None, "method": name, "target_pck": value}
                    best = next((c for c in candidates if c.baseline == name), None)
            out[task] = {
                "objective": objective,
                "trials": len(trials),
                "completed": len(done),
                "answer": {
                    "candidate": answer.name,
                    "method": answer.baseline or answer.trial.params.get(METHOD, own),
                    "value": answer.value,
                    "target_pck": answer.metrics(task).get(ORACLE, math.nan),
                },
                "source_only": base.source_only[task][ORACLE],
                "adabn": base.adabn[task][ORACLE],
                "methods": methods,
                "oracle_pick": pick,
                "proxies": proxy_table(trials, task),  # every method's trials mixed
                "proxy_gap": proxy_gap(answer, best, task, objective),
            }
    return out


def _ratio(gap: dict) -> str:
    return f"{gap['diff'] / gap['se']:.1f}" if gap["se"] > 0 else "-"


def _minutes(task: dict) -> str:
    minutes = task.get("search_minutes")
    return f"{minutes:.0f} min" if minutes is not None else "-"


def overall(results: list[dict]) -> list[str]:
    """Every (task, seed) search at once: how many meet the issue's two goals (the answer >=
    max(source-only, AdaBN) + 5, the oracle's pick <= 1 above it)."""
    cases = [
        (task, r["seed"], t["answer"]["target_pck"] - max(t["source_only"], t["adabn"]),
         t["oracle_pick"]["target_pck"] - t["answer"]["target_pck"])
        for r in results for task, t in r["tasks"].items()
    ]  # fmt: skip
    if len(cases) < 2:
        return []
    both = [c for c in cases if c[2] >= 5 and c[3] <= 1]
    worst_gain, worst_regret = min(cases, key=lambda c: c[2]), max(cases, key=lambda c: c[3])
    return [
        "## Every task and seed",
        "",
        f"- {len(cases)} searches; {len(both)} meet both goals (answer >= max(baselines) + 5, "
        "the oracle's pick <= 1 above it)",
        f"- the answer over max(source-only, AdaBN): {ms([c[2] for c in cases], '+')} PCK, "
        f"worst {worst_gain[2]:+.1f} ({worst_gain[0]} seed {worst_gain[1]})",
        f"- the oracle's pick above the answer: {ms([c[3] for c in cases], '+')} PCK, worst "
        f"{worst_regret[3]:+.1f} ({worst_regret[0]} seed {worst_regret[1]})",
        "",
    ]


def earlier_record(out: Path) -> dict[str, dict]:
    """The earlier record's results at `out` (.json), by search folder name ({} without one),
    each with the date it was recorded."""
    path = out.with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        date = record["meta"]["date"]
        return {Path(r["folder"]).name: {**r, "recorded": r.get("recorded", date)}
                for r in record["results"]}  # fmt: skip
    except (ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"{path}: not a record of this script ({err!r})") from None


def render_markdown(results: list[dict], meta: dict) -> str:
    carried: dict[str, list[str]] = {}  # the date recorded -> its searches
    for r in sorted(results, key=lambda r: (sorted(r["tasks"]), r["seed"])):
        if r.get("carried"):
            carried.setdefault(r["recorded"], []).extend(
                f"{t} seed {r['seed']}" for t in r["tasks"]
            )
    lines = [
        "# A search over every adaptation method, selected without target labels",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}; seeds: {meta['seeds']}; wall time {meta['wall_s']:.0f} s",
        f"- experiment: `{meta['experiment']}`"
        + (f" on each of {', '.join(meta['tasks'])}" if meta.get("tasks") else "")
        + f"; selected by: {meta['objective']}",
        *(
            [f"- not run (no finished search): {', '.join(meta['not_run'])}"]
            if meta.get("not_run")
            else []
        ),
        *(
            [
                "- carried from the earlier record at this path (their search folders are not "
                "on the machine that rendered this; seed marked *): "
                + "; ".join(
                    f"recorded {date}: {', '.join(names)}" for date, names in carried.items()
                )
            ]
            if carried
            else []
        ),
        "- PCK@0.05 on the TARGET test split (target labels for evaluation only). 'answer': what "
        "the search hands back (`regda-dist export`): the best candidate by the search's own "
        "label-free objective, a trial at its selected epoch or source-only / AdaBN where one "
        "scored better. 'oracle's pick': the candidate (trial or baseline) with the best "
        "target PCK (target labels: the most selection could reach, for judging only). 'best "
        "<method> by the proxy': that method's best completed trial by the same objective ('-': "
        "no trial of it completed, e.g. the scheduler stopped each early). Gains are per seed "
        "(the same phase 1), then mean ± std.",
        "",
    ]
    tasks = sorted({task for r in results for task in r["tasks"]})
    for task in tasks:
        rows = [(r["seed"], r["tasks"][task]) for r in results if task in r["tasks"]]
        mark = {r["seed"]: "*" if r.get("carried") else "" for r in results if task in r["tasks"]}
        methods = sorted({m for _, t in rows for m in t["methods"]})
        lines += [
            f"## {task}",
            "",
            "| seed | source-only | AdaBN | "
            + " | ".join(f"best {m} by the proxy" for m in methods)
            + " | the answer | oracle's pick | answer − max(baselines) | oracle's pick − answer "
            "| search wall time |",
            "|---" * (len(methods) + 8) + "|",
        ]
        gain, regret = [], []
        for seed, t in rows:
            base = max(t["source_only"], t["adabn"])
            a, o = t["answer"], t["oracle_pick"]
            gain.append(a["target_pck"] - base)
            regret.append(o["target_pck"] - a["target_pck"])
            cells = [
                f"{t['methods'][m]['target_pck']:.1f}" if t["methods"].get(m) else "-"
                for m in methods
            ]
            lines.append(
                f"| {seed}{mark[seed]} | {t['source_only']:.1f} | {t['adabn']:.1f} | "
                + " | ".join(cells)
                + f" | {a['target_pck']:.1f} ({a['candidate']}, {a['method']}) "
                f"| {o['target_pck']:.1f} ({o['method']}) | {gain[-1]:+.1f} | {regret[-1]:+.1f} "
                f"| {_minutes(t)} |"
            )  # fmt: skip
        lines += [
            "",
            f"- the answer over max(source-only, AdaBN): {ms(gain, '+')} PCK (goal >= +5; "
            f"worst seed {min(gain):+.1f}); the oracle's pick above the answer: "
            f"{ms(regret, '+')} PCK (goal <= 1; worst seed {max(regret):+.1f})",
            f"- the answer's method per seed: {', '.join(t['answer']['method'] for _, t in rows)}"
            f"; the oracle's pick's: {', '.join(t['oracle_pick']['method'] for _, t in rows)}",
        ]
        gaps = [(seed, t["proxy_gap"]) for seed, t in rows if t.get("proxy_gap")]
        if gaps:
            lines.append(
                "- where the answer is not the oracle's pick, the pose prior of the answer minus "
                "the oracle pick's, on the same target val images (± the standard error of the "
                "paired difference; many: the proxy's bias rather than its noise, though the "
                "answer, the best of several by this score, has its margin inflated): "
                + "; ".join(
                    f"seed {seed}: {g['diff']:+.3f} ± {g['se']:.3f} ({_ratio(g)} SE, "
                    f"{g['images']} images)"
                    for seed, g in gaps
                )
            )
        lines += [
            "",
            "Each proxy's rank correlation with the target PCK over the search's trials, every "
            "method's mixed (Spearman), and its top-1 regret (the best trial's target PCK minus "
            "that of the proxy's pick), mean ± std over seeds:",
            "",
            "| proxy | Spearman | top-1 regret | trials |",
            "|---|---|---|---|",
        ]
        proxies = sorted({p for _, t in rows for p in t["proxies"]})
        for proxy in proxies:
            got = [t["proxies"][proxy] for _, t in rows if proxy in t["proxies"]]
            rho = [g["spearman"] for g in got if math.isfinite(g["spearman"])]
            lines.append(
                f"| {proxy.removeprefix('proxy/')} | {ms(rho, '+') if rho else '-'} | "
                f"{ms([g['regret'] for g in got])} | {sum(g['n'] for g in got)} |"
            )
        lines.append("")
    lines += overall(results)
    lines.append(
        "Each seed's search folder holds its `report/report.md` (the per-method picks table, "
        "the proxies' rank correlation with the oracle)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--experiment", default="experiments/synth_search_methods.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", default="runs/benchmark-method-search")
    parser.add_argument("--out", default=str(RESULTS / "method_search"))
    parser.add_argument("--set", action="append", default=[], help="override for every search")
    parser.add_argument(
        "--tasks",
        nargs="+",
        help="one search per task and seed in place of the experiment's search.tasks: a "
        "synthetic task or a held-out pair of benchmarks/domains.py (quadruped, lizard)",
    )
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="run nothing: the tables of the finished searches, and of those the earlier record at "
        "--out holds whose folders are not here (the others are listed)",
    )
    args = parser.parse_args(argv)
    start = time.time()
    work = Path(args.work).resolve()
    out = Path(args.out)
    earlier = earlier_record(out) if args.no_run else {}
    results, not_run = [], []
    for task in args.tasks or [None]:
        for seed in args.seeds:
            folder = _folder(args.experiment, seed, work, task)
            if args.no_run and not SearchFolder(folder).summary.is_file():
                if folder.name in earlier:
                    results.append({**earlier[folder.name], "carried": True})
                    continue
                not_run.append(f"{task or 'the experiment'} seed {seed}")
                continue
            folder, seconds = _search(
                args.experiment, seed, work, args.set, task, report=not args.no_run
            )
            tasks = summarise(folder)
            for summary in tasks.values():
                summary["search_minutes"] = search_minutes(folder)
            results.append({"seed": seed, "folder": str(folder), "seconds": seconds,
                            "recorded": datetime.date.today().isoformat(),
                            "tasks": tasks})  # fmt: skip
            print(f"seed {seed}: {seconds:.0f} s, {folder}", flush=True)
    if not results:
        raise SystemExit(f"no finished search under {work}: {', '.join(not_run)}")
    meta = {
        **record.provenance(__name__, argv, start),
        "experiment": args.experiment,
        "tasks": args.tasks,
        "not_run": not_run,
        "objective": next(iter(results[0]["tasks"].values()))["objective"],
        "seeds": args.seeds,
    }
    record.write(out, {"meta": meta, "results": results}, render_markdown(results, meta))
    return 0
