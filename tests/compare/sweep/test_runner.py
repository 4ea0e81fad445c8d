"""Sweeps: one JSON line per finished run, resume after a kill, refusal to mix configurations, joblib and dask."""
import json
import math
import os
import sys

import cloudpickle
import numpy as np
import pytest

from compare import sweep

from compare.sweep import executors

# run functions are pickled to joblib/dask workers; this test module is not importable there, so by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SWEEP = {"experiment": "toy", "preset": "tiny"}


def square(config):
    """A toy run: x² and the id of the process that computed it."""
    return {"value": config["x"] ** 2, "pid": os.getpid()}


def configs(n=5):
    return [{"x": x, "seed": 0} for x in range(n)]


def test_every_run_is_one_json_line_with_metadata(tmp_path):
    rows = sweep.run_sweep(square, configs(), tmp_path, SWEEP, progress=False)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and [json.loads(line) for line in lines] == rows
    assert [r["value"] for r in rows] == [0, 1, 4, 9, 16]
    for row in rows:
        assert row["run_key"] == sweep.run_key({"x": row["x"], "seed": 0})
        assert row["seconds"] >= 0 and row["versions"]["numpy"] == np.__version__
        assert row["device"].startswith("cpu")
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored == {"fingerprint": sweep.fingerprint(SWEEP), "config": SWEEP}


class Counter:
    """A run function that records which configurations it ran (sequential path only)."""

    def __init__(self):
        self.seen = []

    def __call__(self, config):
        self.seen.append(config["x"])
        return square(config)


def test_resume_after_kill_redoes_only_missing_runs(tmp_path):
    """A kill mid-sweep leaves 2 finished rows and a torn 3rd line: the rerun does exactly the other 3."""
    sweep.run_sweep(square, configs(2), tmp_path, SWEEP, progress=False)
    results = tmp_path / "results.jsonl"
    with open(results, "ab") as handle:
        handle.write(b'{"x": 2, "value": 4, "run_k')      # half-written: no closing brace, no newline
    with pytest.warns(RuntimeWarning, match="half-written"):
        assert len(sweep.read_results(results)) == 2     # the torn line is never read as data
    counter = Counter()
    rows = sweep.run_sweep(counter, configs(5), tmp_path, SWEEP, progress=False)
    assert sorted(counter.seen) == [2, 3, 4]
    assert [r["value"] for r in rows] == [0, 1, 4, 9, 16]
    lines = results.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 6               # 5 complete lines, nothing torn left
    assert sorted(json.loads(line)["x"] for line in lines[:-1]) == [0, 1, 2, 3, 4]
    counter.seen.clear()
    sweep.run_sweep(counter, configs(5), tmp_path, SWEEP, progress=False)
    assert counter.seen == []                                 # all finished: nothing reruns


def test_different_configuration_is_refused_and_nothing_changes(tmp_path):
    sweep.run_sweep(square, configs(2), tmp_path, SWEEP, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(sweep.ConfigMismatchError, match=r"preset: 'tiny' there, 'big' now.*nothing was changed"):
        sweep.run_sweep(square, configs(2), tmp_path, {**SWEEP, "preset": "big"}, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_no_resume_sets_old_results_aside(tmp_path):
    sweep.run_sweep(square, configs(2), tmp_path, SWEEP, progress=False)
    counter = Counter()
    sweep.run_sweep(counter, configs(2), tmp_path, {**SWEEP, "preset": "big"}, resume=False, progress=False)
    assert counter.seen == [0, 1]
    kept = sorted(p.name for p in tmp_path.glob("results-*.jsonl"))
    assert len(kept) == 1 and len((tmp_path / kept[0]).read_text().splitlines()) == 2


def test_corrupt_complete_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"x": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        sweep.read_results(path)


def test_json_rows_are_strict():
    row = sweep.to_jsonable({"a": np.float32(1.5), "b": float("nan"), "c": np.arange(2), "d": math.inf})
    assert row == {"a": 1.5, "b": None, "c": [0, 1], "d": None}
    json.loads(sweep.canonical(row))


def test_joblib_two_jobs(tmp_path):
    rows = sweep.run_sweep(square, configs(6), tmp_path, SWEEP, jobs=2, progress=False)
    assert [r["value"] for r in rows] == [0, 1, 4, 9, 16, 25]
    assert all(r["pid"] != os.getpid() for r in rows)         # computed in loky worker processes
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        rows = sweep.run_sweep(square, configs(4), tmp_path, SWEEP, backend="dask",
                                scheduler=cluster.scheduler_address, progress=False)
    assert [r["value"] for r in rows] == [0, 1, 4, 9]
    assert len(sweep.read_results(tmp_path / "results.jsonl")) == 4


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(executors, "SCHEDULER_TIMEOUT", 1.0)
    message = "could not reach the dask scheduler at 'tcp://127.0.0.1:9'"
    with pytest.raises(sweep.SchedulerUnreachableError, match=message):
        sweep.run_sweep(square, configs(1), tmp_path, SWEEP, backend="dask", scheduler="tcp://127.0.0.1:9",
                         progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "spark"}, "backend must be one of loky, dask"),
    ({"backend": "dask"}, "needs --scheduler"),
    ({"scheduler": "tcp://x:1"}, "only used with --backend dask"),
    ({"jobs": 0}, "jobs must be a positive integer"),
])
def test_bad_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep.run_sweep(square, configs(1), tmp_path, SWEEP, progress=False, **kwargs)


# ------------------------------------------------------------------------------- runs that share work
def shared_square(config, memo):
    """x² plus a per-group offset computed once per task (through the task's Memo): counts the computations."""
    offset = memo.get({"group": config["group"]}, lambda: 100 * config["group"])
    return {"value": config["x"] ** 2 + offset, "computed": memo.computed, "pid": os.getpid()}


def grouped(n=6, groups=2):
    return [{"x": x, "group": x % groups, "seed": 0} for x in range(n)]


def by_group(config):
    return {"group": config["group"]}


def test_runs_sharing_work_compute_it_once_per_task(tmp_path):
    rows = sweep.run_sweep(shared_square, grouped(), tmp_path, SWEEP, progress=False, shared_work=by_group)
    assert [r["value"] for r in rows] == [0, 101, 4, 109, 16, 125]
    # one process, one task per group: the offset is computed by the group's first run and found by the others
    assert sorted(r["computed"] for r in rows) == [1, 1, 1, 1, 1, 1]


def test_a_single_group_is_split_to_keep_every_worker_busy():
    runs = grouped(n=5, groups=1)
    assert executors.tasks(runs, by_group, workers=2) == [runs[:3], runs[3:]]
    assert executors.tasks(runs, by_group, workers=1) == [runs]
    assert executors.tasks(runs, None, workers=2) == [[run] for run in runs]
    two = grouped(n=6, groups=2)                                   # as many groups as workers: one task each
    assert [len(t) for t in executors.tasks(two, by_group, workers=2)] == [3, 3]


def test_shared_work_with_two_jobs_gives_the_same_rows(tmp_path):
    rows = sweep.run_sweep(shared_square, grouped(), tmp_path, SWEEP, jobs=2, progress=False,
                            shared_work=by_group)
    assert [r["value"] for r in rows] == [0, 101, 4, 109, 16, 125]
    assert all(r["pid"] != os.getpid() for r in rows)


def test_memo_keeps_at_most_maxsize_values():
    from compare.sweep.memo import Memo
    memo = Memo(maxsize=2)
    for key in ("a", "b", "a", "c", "b"):
        memo.get({"k": key}, lambda: key.upper())
    # a, b computed; a found; c computed (drops b, the least recently used); b computed again
    assert memo.computed == 4 and len(memo) == 2
    with pytest.raises(ValueError, match="maxsize must be an integer >= 1, got 0"):
        Memo(0)
