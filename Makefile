# The two commands of the README: `make demo` (main job on the embedded defaults), `make test`.
.PHONY: setup demo test test-all lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/regda-dist train experiments/synth_hand.yaml

test: setup
	.venv/bin/ruff check regda_dist tests benchmarks
	.venv/bin/python -m pytest -m "not slow"

test-all: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python benchmarks/adaptation.py
