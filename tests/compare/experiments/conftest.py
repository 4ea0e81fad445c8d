"""Helpers shared by the experiment tests."""
import pytest

from compare import sweep


@pytest.fixture
def rows_of():
    """A function of a results folder: ({(method, scale): row}, rows) of its results.jsonl."""
    def rows_of(out):
        rows = sweep.read_results(out / "results.jsonl")
        return {(r["method"], r["scale"]): r for r in rows}, rows
    return rows_of
