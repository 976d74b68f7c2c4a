# The two commands of the README: `make demo` (main job on the embedded defaults), `make test`.
.PHONY: setup demo test test-fast test-all lint bench

setup:
	bash scripts/setup.sh

DEMO := runs/demo-$(shell date +%Y%m%d-%H%M%S)

# A small real search on both synthetic tasks (4 trials each), then its best configurations
# and the proxy report. Each call makes a new folder; phase 1 is cached and shared.
demo: setup
	.venv/bin/regda-dist tune experiments/synth_search.yaml --name $(notdir $(DEMO))
	.venv/bin/regda-dist export $(DEMO)
	.venv/bin/regda-dist report $(DEMO)

test: setup
	.venv/bin/ruff check regda_dist tests benchmarks
	.venv/bin/python -m pytest -m "not slow"

# the edit loop: no Ray, no spawned ranks (their tests are marked by the fixtures they use)
test-fast: setup
	.venv/bin/python -m pytest -m "not ray and not multiprocess and not slow"

test-all: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python -m benchmarks adaptation
	.venv/bin/python -m benchmarks proxy_study
