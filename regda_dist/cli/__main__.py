"""`python -m regda_dist.cli`: what a Ray job runs (distributed/jobs.py)."""

import sys

from regda_dist.cli import main

sys.exit(main())
