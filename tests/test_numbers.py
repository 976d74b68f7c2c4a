"""Moving code changes no number: every method's fixed-seed run gives what it gave before the
method registry (tests/numbers.py recorded it; tests/test_search.py checks a search over
methods the same way), bit for bit on a machine like the one that recorded them (torch build
and CPU vector unit), within float tolerance on another (oneDNN picks other kernels there)."""

from __future__ import annotations

from tests.numbers import METHODS, assert_as_before, golden, record_runs


def test_every_method_computes_what_it_computed_before(tmp_path):
    runs, want = record_runs(tmp_path, "adapt"), golden()["runs"]
    assert set(runs) == set(METHODS) == set(want)
    for method in METHODS:
        assert_as_before(runs[method], want[method], method)
