"""regda-dist command line. Bad input ends with one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regda_dist import __version__


def _train(args) -> int:
    from regda_dist import config as C
    from regda_dist.engine import experiment

    cfg = C.load(args.experiment, args.set)
    name = args.name or Path(args.experiment).stem
    run_dir = Path(cfg.train.output_dir) / name
    result = experiment.run(cfg, run_dir, resume=args.resume)
    print(format_result(result, name))
    print(f"\nrun folder: {run_dir}")
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
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    from regda_dist.config import ConfigError
    from regda_dist.engine.checkpoint import CheckpointError
    from regda_dist.engine.experiment import RunExistsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, RunExistsError, FileNotFoundError, ImportError) as err:
        print(f"regda-dist: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regda-dist: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
