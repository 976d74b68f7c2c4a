"""regda-dist command line. Bad input ends with one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regda_dist import __version__


def _train(args) -> int:
    from regda_dist import config as C
    from regda_dist.data.datasets import task_spec
    from regda_dist.engine import experiment
    from regda_dist.engine.trainer import preflight

    overrides = list(args.set)
    if args.workers is not None:
        overrides.append(f"scaling.num_workers={args.workers}")
    cfg = C.load(args.experiment, overrides)
    name = args.name or Path(args.experiment).stem
    run_dir = Path(cfg.train.output_dir) / name
    if args.no_ray and (cfg.scaling.num_workers != 1 or args.address):
        raise C.ConfigError("--no-ray runs one process: drop --workers/--address")
    experiment.check_run_dir(run_dir, cfg, args.resume)
    spec = task_spec(cfg.data, check_roots=not args.address)  # a cluster may hold the data
    preflight(cfg, spec.num_keypoints)  # before any folder, data or Ray
    if args.no_ray:
        result = experiment.run(cfg, run_dir, resume=args.resume)
    else:
        from regda_dist.distributed import cluster, train

        cluster.connect(args.address)
        result = train.fit(cfg, run_dir, resume=args.resume, fixed_size=not args.address)
    print(format_result(result, name))
    print(f"\nrun folder: {run_dir}")
    return 0


def _data_check(args) -> int:
    from regda_dist.data.check import check
    from regda_dist.data.samples import DatasetError

    report = check(args.dataset, args.path, args.keypoints, args.decode)
    print(report.text)
    if report.problems:
        raise DatasetError(f"{args.path}: {len(report.problems)} problem(s), listed above")
    return 0


def format_result(result: dict, name: str) -> str:
    """Target PCK per group of source-only, AdaBN and RegDA (oracle/ = target labels, eval only)."""
    rows = [
        ("source-only", result["source_only"]),
        ("AdaBN", result["adabn"]),
        ("RegDA", result["regda"]),
    ]
    prefix = "oracle/target_pck"
    groups = [k.split("/")[-1] for k in result["regda"] if k.startswith(prefix + "/")] + ["all"]
    head = f"{name}: target PCK@0.05 (test split; labels used for evaluation only)"
    lines = [head, f"{'method':<12}" + "".join(f"{g:>10}" for g in groups) + f"{'source':>10}"]
    for label, m in rows:
        vals = [m[prefix if g == "all" else f"{prefix}/{g}"] for g in groups]
        lines.append(
            f"{label:<12}" + "".join(f"{v:10.1f}" for v in vals) + f"{m['source/pck']:10.1f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regda-dist", description=__doc__)
    parser.add_argument("--version", action="version", version=f"regda-dist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="phase 1 (cached) then RegDA; prints target PCK per group")
    train.add_argument("experiment", help="experiment YAML (overrides of the defaults)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set regda.trade_off=0.5",
    )
    train.add_argument("--name", help="run folder name under train.output_dir (default: YAML stem)")
    train.add_argument("--resume", action="store_true", help="continue an unfinished run")
    train.add_argument("--workers", type=int, help="Ray Train workers (scaling.num_workers)")
    train.add_argument(
        "--address",
        help="existing Ray cluster, HOST:PORT or ray://HOST:PORT "
        "(default: start an embedded local Ray)",
    )
    train.add_argument(
        "--no-ray", action="store_true", help="plain single process, no Ray (debugging)"
    )
    train.set_defaults(func=_train)
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
    check.add_argument("--keypoints", default="", help="hand21 or body16 (needed for coco)")
    check.add_argument(
        "--decode", type=int, default=20, help="images decoded per split (-1: all; default 20)"
    )
    check.set_defaults(func=_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from regda_dist.config import ConfigError
    from regda_dist.data.samples import DatasetError
    from regda_dist.engine.checkpoint import CheckpointError
    from regda_dist.engine.experiment import RunExistsError

    errors = (ConfigError, CheckpointError, RunExistsError, FileNotFoundError, ImportError)
    errors += (DatasetError,)
    try:
        from regda_dist.distributed.cluster import ClusterError
        from regda_dist.distributed.train import TrainingError

        errors += (ClusterError, TrainingError)
    except ImportError:  # ray not installed: --no-ray still works
        pass

    args = build_parser().parse_args(argv)
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
