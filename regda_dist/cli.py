"""regda-dist command line. Bad input ends with one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from regda_dist import __version__


def _train(args) -> int:
    from regda_dist import config as C
    from regda_dist.data.datasets import keypoint_notes, task_spec
    from regda_dist.data.loader import batch_notes, loader_notes
    from regda_dist.engine import run
    from regda_dist.engine.trainer import preflight

    overrides = list(args.set)
    if args.workers is not None:
        overrides.append(f"scaling.num_workers={args.workers}")
    cfg = C.load(args.experiment, overrides)
    name = args.name or Path(args.experiment).stem
    run_dir = Path(cfg.train.output_dir) / name
    if args.no_ray and (cfg.scaling.num_workers != 1 or args.address):
        raise C.ConfigError("--no-ray runs one process: drop --workers/--address")
    run.check_run_dir(run_dir, cfg, args.resume)
    run.check_checkpoints(cfg, run_dir if args.resume else None)
    spec = task_spec(cfg.data, check_roots=not args.address)  # a cluster may hold the data
    preflight(cfg, spec.num_keypoints)  # before any folder, data or Ray
    for note in [*keypoint_notes(cfg.data, spec), *batch_notes(cfg), *loader_notes(cfg)]:
        print(f"note: {note}", flush=True)
    if args.no_ray:
        result = run.run_here(cfg, run_dir, resume=args.resume)
    else:
        from regda_dist.distributed import cluster, train

        cluster.connect(args.address)
        result = train.fit(cfg, run_dir, resume=args.resume, fixed_size=not args.address)
    print(format_result(result, name))
    print(f"\nrun folder: {run_dir}")
    return 0


def _tune(args) -> int:
    from regda_dist.data.datasets import keypoint_notes, task_spec
    from regda_dist.data.loader import batch_notes, loader_notes
    from regda_dist.engine.run import check_checkpoints
    from regda_dist.engine.trainer import preflight
    from regda_dist.search.folder import provenance
    from regda_dist.search.spec import (
        check_metric,
        check_search_dir,
        load_search,
        prepare_search_dir,
    )

    search = load_search(args.experiment, list(args.set))
    s = search.settings
    specs = {t: task_spec(c.data, check_roots=not args.address) for t, c in search.tasks.items()}
    check_metric(search, specs)
    oracle = " (ORACLE: target labels)" if s.selection == "oracle" else ""
    notes = [f"trials and epochs are selected by {s.select_metric}{oracle}", *search.notes]
    for task, cfg in search.tasks.items():
        preflight(cfg, specs[task].num_keypoints)
        check_checkpoints(cfg)  # the shared phase-1 cache every trial reads
        task_notes = [*keypoint_notes(cfg.data, specs[task]), *batch_notes(cfg), *loader_notes(cfg)]
        notes += [f"{task}: {note}" for note in task_notes]
    for note in notes:
        print(f"note: {note}", flush=True)
    search_dir = Path(search.cfg.train.output_dir) / (args.name or Path(args.experiment).stem)
    check_search_dir(search_dir, search, args.resume)
    from regda_dist.distributed import cluster
    from regda_dist.distributed import search as tuning

    if not args.resume:
        tuning.check_new_study(search, search_dir)
    cluster.connect(args.address)
    if not args.address:
        tuning.check_capacity(search)  # a fixed-size cluster: what it cannot place would hang
    prepare_search_dir(search_dir, search, args.resume)  # only now: nothing written before
    if not (search_dir / "provenance.json").exists():
        (search_dir / "provenance.json").write_text(json.dumps(provenance(sys.argv), indent=2))
    try:
        summary = tuning.run_search(search, search_dir, fixed_size=not args.address)
    except (tuning.SearchInterrupted, KeyboardInterrupt) as stop:
        again = " ".join(["regda-dist", *args.argv, *([] if args.resume else ["--resume"])])
        print(
            f"regda-dist: {stop or 'search interrupted'}; continue with: {again}", file=sys.stderr
        )
        return 130
    (search_dir / "search.json").write_text(json.dumps(summary, indent=2))
    label = " (ORACLE: target labels)" if s.selection == "oracle" else ""
    for group, g in summary.items():
        print(
            f"{group}: {g['completed']}/{g['trials']} trials completed, {g['stopped_early']} "
            f"stopped early, {g['errored']} failed; best {s.objective}{label} = "
            f"{g['best_value']} (trial {g['best_trial']})"
        )
        if g.get("answer") and not g["answer"].startswith("trial "):
            print(
                f"{group}: {g['answer']} scored {g['answer_value']:.4g}, better than every "
                f"trial: it is the search's answer (what export writes)"
            )
    print(f"\nsearch folder: {search_dir}\nnext: regda-dist export {search_dir}")
    return 0


def _export(args) -> int:
    from regda_dist.search.export import export

    out = export(Path(args.run_dir), args.metric, args.top_k, Path(args.out) if args.out else None)
    print((out / "summary.md").read_text())
    print(f"exported to {out}")
    return 0


def _report(args) -> int:
    from regda_dist.distributed.study import plot_importances
    from regda_dist.search.report import report

    search_dir = Path(args.run_dir)
    path = report(search_dir, plot_importances)
    text = path.read_text()
    print(text)
    parts = text.split("\n\n")
    at = next(i for i, part in enumerate(parts) if part.startswith("What the search found"))
    found = parts[1 : at + 2]  # a baseline's line if one won, "What the search found", its lines
    print("\n".join(["-" * 78, *found]))
    if (search_dir / "best").is_dir():
        print(
            f"best configurations: {search_dir / 'best'} (config.yaml, model.pt, meta.json per "
            f"task; `regda-dist train {search_dir / 'best'}/<task>/config.yaml` re-runs one)"
        )
    print(f"report: {path}\nTensorBoard: tensorboard --logdir {search_dir}")
    return 0


def _categories_arg(text: str) -> list:
    """--categories: one category or a YAML list of them, by name or id."""
    import yaml

    from regda_dist import config as C

    try:
        categories = yaml.safe_load(text) if text else []
    except yaml.YAMLError:
        raise C.ConfigError(f"--categories {text!r} is not valid YAML") from None
    categories = categories if isinstance(categories, list) else [categories]
    problem = C.categories_problem(categories)
    if problem:
        raise C.ConfigError(f"--categories {problem}")
    return categories


def _data_check(args) -> int:
    from regda_dist import config as C
    from regda_dist.data.check import check
    from regda_dist.data.datasets import chosen_keypoints
    from regda_dist.data.samples import DatasetError

    keypoints, min_match = args.keypoints, args.min_keypoint_match
    if keypoints.endswith((".yaml", ".yml")):  # an experiment: its data.keypoints (custom too)
        data = C.load(keypoints).data
        keypoints = chosen_keypoints(data)
        min_match = data.min_keypoint_match if min_match is None else min_match
    min_match = C.DataConfig().min_keypoint_match if min_match is None else min_match
    if not 0 <= min_match <= 1:
        raise C.ConfigError(f"--min-keypoint-match must be in [0, 1], got {min_match}")
    categories = _categories_arg(args.categories)
    report = check(args.dataset, args.path, keypoints, args.decode, categories, min_match)
    print(report.text)
    if report.problems:
        raise DatasetError(f"{args.path}: {len(report.problems)} problem(s), listed above")
    return 0


def format_result(result: dict, name: str) -> str:
    """Target PCK per group of source-only, AdaBN and the adapted model (oracle/ = target
    labels, eval only), and the candidates line. The adapted model is the epoch the run
    selected where it selects one (train.select_metric: the numbers and weights `export` gives
    that configuration), with its last epoch beside it."""
    chosen, method = result.get("selected"), result.get("method", "RegDA")
    rows = [
        ("source-only", result["source_only"]),
        ("AdaBN", result["adabn"]),
        (method, chosen["metrics"] if chosen else result["regda"]),
    ]
    if chosen:
        rows.append(("  last epoch", result["regda"]))
    prefix = "oracle/target_pck"
    groups = [k.split("/")[-1] for k in result["regda"] if k.startswith(prefix + "/")] + ["all"]
    head = f"{name}: target PCK@0.05 (test split; labels used for evaluation only)"
    width = max(14, *(len(label) + 1 for label, _ in rows))
    lines = [head, f"{'method':<{width}}" + "".join(f"{g:>10}" for g in groups) + f"{'source':>10}"]
    for label, m in rows:
        vals = [m[prefix if g == "all" else f"{prefix}/{g}"] for g in groups]
        lines.append(
            f"{label:<{width}}" + "".join(f"{v:10.1f}" for v in vals) + f"{m['source/pck']:10.1f}"
        )
    if chosen:
        oracle = " (ORACLE: target labels)" if chosen["metric"].startswith("oracle/") else ""
        lines.append(
            f"{method}: epoch {chosen['epoch']}, selected by {chosen['metric']}{oracle} (weights: "
            "model.pt; the last epoch's: last.pt)"
        )
    if "candidates" in result:
        lines.append(candidates_line(result))
    return "\n".join(lines)


def candidates_line(result: dict) -> str:
    """The run's candidates side by side by its selection metric, and the one it would export."""
    c = result["candidates"]
    method = result.get("method", "RegDA")
    names = {"source_only": "source-only", "adabn": "AdaBN", "adapted": method}
    if "selected" in result:
        names["adapted"] = f"{method}, epoch {result['selected']['epoch']}"
    oracle = " (ORACLE: target labels)" if c["metric"].startswith("oracle/") else ""
    values = ", ".join(f"{names[k]} {v:.4g}" for k, v in c["values"].items())
    return f"{c['metric']}{oracle}: {values} -> would export {names[c['best']]}"


def _submit(args) -> int:
    from regda_dist.distributed import jobs

    overrides = list(args.set)
    if args.storage:
        overrides.append(f"train.output_dir={args.storage}")
    jobs.check(Path(args.experiment), overrides)  # bad input fails before connecting
    head = jobs.client(args.address)
    job_id = jobs.submit(head, Path(args.experiment), overrides, args.name)
    follow = f"regda-dist jobs logs {job_id} --address {head.url}"
    print(f"submitted job {job_id} to {head.url}", flush=True)
    if args.no_wait:
        print(f"follow it with: {follow}")
        return 0
    try:
        jobs.follow(head, job_id)
    except KeyboardInterrupt:
        print(f"regda-dist: job {job_id} keeps running; {follow}", file=sys.stderr)
        return 130
    print(f"job {job_id} SUCCEEDED")
    return 0


def _jobs(args) -> int:
    from regda_dist.distributed import jobs

    head = jobs.client(args.address)
    if args.action == "list":
        print(jobs.listing(head))
        return 0
    print(
        {"status": jobs.status, "logs": jobs.logs, "stop": jobs.stop}[args.action](
            head, args.job_id
        )
    )
    return 0


def _add_cluster_commands(sub) -> None:
    """`submit` and `jobs`: the Ray Jobs API of a cluster's head (http://HEAD:8265)."""
    address = argparse.ArgumentParser(add_help=False)
    address.add_argument(
        "--address",
        help="the head's Jobs API, http://HOST:8265 (default: $RAY_API_SERVER_ADDRESS, "
        "then $RAY_ADDRESS); the token is read from $RAY_AUTH_TOKEN",
    )
    submit = sub.add_parser(
        "submit", parents=[address], help="run an experiment as a Ray job on a cluster"
    )
    submit.add_argument("experiment", help="experiment YAML (`tune` if it has a search: block)")
    submit.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    submit.add_argument("--name", help="run folder name (default: YAML stem)")
    submit.add_argument(
        "--storage",
        metavar="PATH",
        help="results folder on storage every node sees (train.output_dir)",
    )
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    submit.set_defaults(func=_submit)
    jobs = sub.add_parser("jobs", help="list, inspect, follow or stop Ray jobs on a cluster")
    actions = jobs.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[address], help="submitted jobs and their status")
    for action, text in (
        ("status", "status of a job"),
        ("logs", "a job's output so far"),
        ("stop", "stop a running job"),
    ):
        actions.add_parser(action, parents=[address], help=text).add_argument("job_id")
    jobs.set_defaults(func=_jobs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regda-dist", description=__doc__)
    parser.add_argument("--version", action="version", version=f"regda-dist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = argparse.ArgumentParser(add_help=False)  # what train and tune share
    run.add_argument("experiment", help="experiment YAML (overrides of the defaults)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value, e.g. --set regda.trade_off=0.5 (tune: also search.num_samples=4)",
    )
    run.add_argument("--name", help="folder under train.output_dir (default: the YAML's stem)")
    run.add_argument("--resume", action="store_true", help="continue an unfinished run/search")
    run.add_argument(
        "--address",
        help="existing Ray cluster, HOST:PORT or ray://HOST:PORT "
        "(default: start an embedded local Ray)",
    )
    train = sub.add_parser(
        "train", parents=[run], help="phase 1 (cached) then adaptation; prints target PCK per group"
    )
    train.add_argument("--workers", type=int, help="Ray Train workers (scaling.num_workers)")
    train.add_argument(
        "--no-ray", action="store_true", help="plain single process, no Ray (debugging)"
    )
    train.set_defaults(func=_train)

    tune = sub.add_parser(
        "tune", parents=[run], help="Ray Tune + Optuna search of an experiment's search: block"
    )
    tune.set_defaults(func=_tune)

    export = sub.add_parser("export", help="best configs of a search: config, weights, meta")
    export.add_argument("run_dir", help="search folder (train.output_dir/<name>)")
    export.add_argument("--metric", help="proxy name or metric key (default: the search's)")
    export.add_argument("--top-k", type=int, default=1, help="also export ranks 2..k")
    export.add_argument("--out", help="output folder (default: RUN_DIR/best; never overwritten)")
    export.set_defaults(func=_export)

    report = sub.add_parser("report", help="each proxy vs the oracle over a search's trials")
    report.add_argument("run_dir", help="search folder (train.output_dir/<name>)")
    report.set_defaults(func=_report)

    data = sub.add_parser("data", help="real datasets on disk")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser(
        "check", help="validate a dataset folder: samples per split, visibility, what is missing"
    )
    check.add_argument("path", help="the dataset's folder")
    check.add_argument(
        "--dataset",
        required=True,
        help="reader: rhd, h3d, freihand, surreal, surreal_faithful, lsp, human36m, coco",
    )
    check.add_argument(
        "--keypoints",
        default="",
        help="the keypoint set to read it in (needed for coco): a registered set (hand21, "
        "body16), from_data (the COCO categories of PATH/train.json), or an experiment YAML "
        "whose data.keypoints to use (custom: its data.keypoint_set)",
    )
    check.add_argument(
        "--categories",
        default="",
        help="coco: the categories to read, by name or id, as YAML: 'dog' or '[dog, 3]' "
        "(default: all with keypoints; they must share one keypoint set)",
    )
    check.add_argument(
        "--min-keypoint-match",
        type=float,
        help="with a registered set: the share of its keypoints the files' names must label "
        "(default: the experiment's data.min_keypoint_match, else 0.5; 0: any)",
    )
    check.add_argument(
        "--decode", type=int, default=20, help="images decoded per split (-1: all; default 20)"
    )
    check.set_defaults(func=_data_check)
    _add_cluster_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from regda_dist.config import ConfigError
    from regda_dist.data.samples import DatasetError
    from regda_dist.engine.checkpoint import CheckpointError
    from regda_dist.engine.run import RunExistsError
    from regda_dist.search.folder import SearchFolderError

    errors = (
        ConfigError,
        CheckpointError,
        RunExistsError,
        SearchFolderError,
        DatasetError,
        FileNotFoundError,
        ImportError,
    )
    try:
        from regda_dist.distributed.cluster import ClusterError
        from regda_dist.distributed.search import SearchError
        from regda_dist.distributed.train import TrainingError

        errors += (ClusterError, TrainingError, SearchError)
    except ImportError:  # ray not installed: --no-ray still works
        pass

    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for the --resume hint
    try:
        return args.func(args)
    except errors as err:
        print(f"regda-dist: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regda-dist: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
