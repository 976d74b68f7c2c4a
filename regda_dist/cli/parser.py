"""The command line's arguments: one subcommand per command (cli/commands.py)."""

from __future__ import annotations

import argparse

from regda_dist import __version__
from regda_dist.cli import commands

DESCRIPTION = "regda-dist command line. Bad input ends with one line on stderr and a non-zero exit."


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
    submit.set_defaults(func=commands.submit)
    jobs = sub.add_parser("jobs", help="list, inspect, follow or stop Ray jobs on a cluster")
    actions = jobs.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[address], help="submitted jobs and their status")
    for action, text in (
        ("status", "status of a job"),
        ("logs", "a job's output so far"),
        ("stop", "stop a running job"),
    ):
        actions.add_parser(action, parents=[address], help=text).add_argument("job_id")
    jobs.set_defaults(func=commands.jobs_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regda-dist", description=DESCRIPTION)
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
    train.set_defaults(func=commands.train)

    tune = sub.add_parser(
        "tune", parents=[run], help="Ray Tune + Optuna search of an experiment's search: block"
    )
    tune.set_defaults(func=commands.tune)

    export = sub.add_parser("export", help="best configs of a search: config, weights, meta")
    export.add_argument("run_dir", help="search folder (train.output_dir/<name>)")
    export.add_argument("--metric", help="proxy name or metric key (default: the search's)")
    export.add_argument("--top-k", type=int, default=1, help="also export ranks 2..k")
    export.add_argument("--out", help="output folder (default: RUN_DIR/best; never overwritten)")
    export.add_argument(
        "--onnx", action="store_true", help="also model.onnx beside each model.pt (checked)"
    )
    export.set_defaults(func=commands.export)

    report = sub.add_parser("report", help="each proxy vs the oracle over a search's trials")
    report.add_argument("run_dir", help="search folder (train.output_dir/<name>)")
    report.set_defaults(func=commands.report)

    predict = sub.add_parser(
        "predict", help="keypoints of an exported or trained model on images (COCO results)"
    )
    predict.add_argument("model", help="export folder (best/<task>), run folder or search folder")
    predict.add_argument(
        "images", nargs="+", help="image files, folders of images, or COCO JSON files (boxes)"
    )
    predict.add_argument("--out", required=True, help="output folder (never overwritten)")
    predict.add_argument("--draw", action="store_true", help="also each image, keypoints drawn")
    predict.add_argument(
        "--no-names", action="store_true", help="--draw without the keypoints' names"
    )
    predict.add_argument("--device", default="auto", help="auto (CUDA if any) | cpu | cuda:N")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--workers", type=int, default=0, help="DataLoader processes")
    predict.set_defaults(func=commands.predict)

    evaluate = sub.add_parser(
        "evaluate", help="PCK of an exported or trained model on a labelled COCO file"
    )
    evaluate.add_argument("model", help="export folder (best/<task>), run folder or search folder")
    evaluate.add_argument("coco", help="a COCO keypoint JSON, or a COCO folder (its test.json)")
    evaluate.add_argument("--out", help="also write the metrics to this JSON file")
    evaluate.add_argument("--device", default="auto", help="auto (CUDA if any) | cpu | cuda:N")
    evaluate.set_defaults(func=commands.evaluate)

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
    check.set_defaults(func=commands.data_check)
    _add_cluster_commands(sub)
    return parser
