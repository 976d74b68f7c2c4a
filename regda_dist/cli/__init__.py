"""regda-dist command line. Bad input ends with one line on stderr and a non-zero exit.

Its rooms: the arguments (parser.py), what train and tune will do, checked first (plans.py),
the commands, which call functions that return data (commands.py), and what they print of it
(show.py).
"""

from __future__ import annotations

import sys
import warnings

from regda_dist.cli.parser import build_parser
from regda_dist.cli.show import candidates_line, format_result

__all__ = ["build_parser", "candidates_line", "format_result", "main"]


def _notes(message, category, filename, lineno, file=None, line=None) -> None:
    """A file read in its older layout (fields.OldFormat) is one `note:` line; other warnings
    as Python shows them."""
    from regda_dist.fields import OldFormat

    if issubclass(category, OldFormat):
        print(f"note: {message}", flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    from regda_dist.config import ConfigError
    from regda_dist.data.samples import DatasetError
    from regda_dist.engine.checkpoint import CheckpointError
    from regda_dist.engine.predict import PredictError
    from regda_dist.engine.run import RunExistsError
    from regda_dist.search.folder import SearchFolderError

    errors = (
        ConfigError,
        CheckpointError,
        RunExistsError,
        SearchFolderError,
        DatasetError,
        PredictError,
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
    warnings.showwarning = _notes
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for the --resume hint
    try:
        return args.func(args)
    except errors as err:
        print(f"regda-dist: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regda-dist: interrupted; continue with --resume", file=sys.stderr)
        return 130
