"""The project's benchmarks: each a module here with `main(argv)`, run from the repository root

    python -m benchmarks                      # every benchmark, with what it measures
    python -m benchmarks NAME [ARGS ...]      # e.g. python -m benchmarks adaptation --seeds 0
    python -m benchmarks NAME --help
    PYTHONPATH=. python -m benchmarks gpu_check   # where this package is not installed

Each writes benchmarks/results/NAME.{md,json} (--out where it has one). The harness beside them:
record.py (what every result records of its run; the .md writer that keeps hand-written notes),
grid.py (independent runs in a spawn pool, reusing earlier results, writing as they finish),
searches.py (real `regda-dist tune` searches and their folders), stats.py; domains.py,
heldout_domain.py, texture_domain.py and coco_folders.py write the data some benchmarks run on.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
