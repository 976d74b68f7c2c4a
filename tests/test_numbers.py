"""Moving code changes no number: every method's fixed-seed run and a tiny search over every
method give what they gave before the method registry (tests/numbers.py recorded them), bit for
bit on a machine like the one that recorded them (torch build and CPU vector unit), within
float tolerance on another (oneDNN picks other kernels there)."""

from __future__ import annotations

import json
import math

from tests.numbers import GOLDEN, METHODS, machine, record_runs, record_search

GOLDEN_DATA = json.loads(GOLDEN.read_text())
SAME_MACHINE = GOLDEN_DATA["machine"] == machine()


def _renamed(value):
    """A result recorded before the registry, in today's keys ("regda" -> "adapted")."""
    if isinstance(value, dict):
        return {("adapted" if k == "regda" else k): _renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    return value


def _assert_same(got, want, where=""):
    if SAME_MACHINE:
        assert got == want, where
        return
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            _assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-3) or got == want, where
    else:
        assert got == want, where


def _compare(got: dict, want: dict, where: str) -> None:
    _assert_same(got["result"], _renamed(want["result"]), where)
    if SAME_MACHINE:
        assert got["model"] == want["model"], f"{where}: model.pt differs"


def test_every_method_computes_what_it_computed_before(tmp_path):
    runs = record_runs(tmp_path, "adapt")
    assert set(runs) == set(METHODS) == set(GOLDEN_DATA["runs"])
    for method in METHODS:
        _compare(runs[method], GOLDEN_DATA["runs"][method], method)


def test_a_search_over_every_method_finds_what_it_found_before(local_ray, tmp_path):
    trials = record_search(tmp_path, "adapt")
    want = GOLDEN_DATA["search"]
    assert [t["params"] for t in trials] == [t["params"] for t in want]
    for got, old in zip(trials, want, strict=True):
        _compare(got, old, json.dumps(got["params"]))

