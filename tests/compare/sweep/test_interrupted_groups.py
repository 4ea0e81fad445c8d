"""Sweeps whose groups (runs sharing work, e.g. equivalence's seed: Θ₀ and every method) are interrupted, and
rows of different thread counts (issue #24).

A group was one task: a sweep killed more often than a group takes never progressed. Now each finished run of
a loky task is spilled to DIR/partial/ (merged on resume) and the shared value is persisted in DIR/memo/, so a
rerun does only what is missing, computing the shared value once. The sweeps run in subprocesses (a worker or
the sweep itself is killed with os._exit, as a SIGKILL would).
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compare import sweep

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from compare import sweep
    LOG = {log!r}

    def mark(name):
        with open(os.path.join(LOG, name), "a") as handle:
            handle.write("x")

    def shared(memo):
        def compute():
            mark("computed")
            return {{"K": np.arange(6.0).reshape(2, 3), "lr": 0.5, "pair": (np.ones(2), None)}}
        return memo.get({{"reference": 0}}, compute, persist=True)

    def method(run, memo):
        ref = shared(memo)
        mark(f"ran-{{run['x']}}")
        if run["x"] == {kill_at} and not os.path.exists(os.path.join(LOG, "killed")):
            mark("killed")
            os._exit(1)                      # the process dies mid-group, as under SIGKILL
        return {{"value": float(ref["K"].sum()) + run["x"], "lr": ref["lr"]}}

    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runs = [{{"x": i}} for i in range(4)]
    rows = sweep.run_sweep(method, runs, {out!r}, {{"experiment": "toy"}}, jobs={jobs}, progress=False,
                           shared_work=lambda run: {{"seed": 0}})
    print(len(rows))
""")


def _sweep(out, log, jobs, kill_at):
    code = SCRIPT.format(root=str(ROOT), out=str(out), log=str(log), jobs=jobs, kill_at=kill_at)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def _count(log, name):
    path = Path(log) / name
    return len(path.read_text()) if path.exists() else 0


@pytest.mark.parametrize("jobs, kill_at", [(1, 2), (2, 3)])
def test_an_interrupted_group_resumes_its_missing_runs_and_reuses_the_shared_value(tmp_path, jobs, kill_at):
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    first = _sweep(out, log, jobs, kill_at)
    assert first.returncode != 0                     # killed inside the group
    computed = _count(log, "computed")               # 1, or 2 when the group's two loky tasks raced for it
    assert 1 <= computed <= jobs
    second = _sweep(out, log, jobs, kill_at)
    assert second.returncode == 0, second.stderr
    rows = sweep.read_results(out / sweep.RESULTS)
    assert sorted(r["x"] for r in rows) == [0, 1, 2, 3]
    assert {r["value"] for r in rows} == {15.0, 16.0, 17.0, 18.0} and {r["lr"] for r in rows} == {0.5}
    # every run ran once, except the one that was killed (twice); the shared value was computed once and read
    # back from DIR/memo by the resumed group (before: once per attempt)
    assert [_count(log, f"ran-{x}") for x in range(4)] == [2 if x == kill_at else 1 for x in range(4)]
    assert _count(log, "computed") == computed      # the resumed group read it back: not computed again
    # the folders that served the resume are gone once the sweep is complete
    assert not (out / "memo").exists() and not (out / "partial").exists()


def test_a_killed_loky_task_keeps_its_finished_runs(tmp_path):
    # one worker dies at its second run: the first is in DIR/partial/, and the next sweep adds it to the results
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    assert _sweep(out, log, 2, 3).returncode != 0
    spilled = [json.loads(line) for path in (out / "partial").glob("task-*.jsonl")
               for line in path.read_text().splitlines()]
    assert 2 in {row["x"] for row in spilled} and all("run_key" in row and "versions" in row for row in spilled)


def _nap(config):
    return {"value": config["x"]}


def test_rows_of_another_thread_count_are_never_mixed(tmp_path):
    runs = [{"x": 1}, {"x": 2}]
    rows = sweep.run_sweep(_nap, runs[:1], tmp_path, {"experiment": "toy"}, progress=False, threads=1)
    assert rows[0]["threads"] == 1
    with pytest.raises(sweep.ThreadCountMismatchError, match=r"computed with 1 thread\(s\) per run, and this sweep "
                                                             r"would use 2: .*pass --threads 1 to resume"):
        sweep.run_sweep(_nap, runs, tmp_path, {"experiment": "toy"}, progress=False, threads=2)
    assert sweep.recorded_threads(tmp_path) == {1}
    assert len(sweep.run_sweep(_nap, runs, tmp_path, {"experiment": "toy"}, progress=False, threads=1)) == 2


def test_the_cli_resumes_with_the_recorded_thread_count(tmp_path):
    # --jobs 2 on 2 cores means 1 thread per run, --jobs 1 means 2: a resume with the other --jobs keeps the
    # count its rows were computed with (unless --threads says otherwise, which is then refused)
    import argparse
    from compare import cli
    sweep.run_sweep(_nap, [{"x": 1}], tmp_path, {"experiment": "toy"}, progress=False, threads=3)
    assert cli.choose_threads(argparse.Namespace(threads=None, resume=True), tmp_path, 7) == 3
    assert cli.choose_threads(argparse.Namespace(threads=None, resume=False), tmp_path, 7) == 7   # --no-resume
    assert cli.choose_threads(argparse.Namespace(threads=5, resume=True), tmp_path, 7) == 5


def test_memo_persists_arrays_and_numbers_without_pickle(tmp_path):
    import numpy as np
    from compare.sweep.memo import Memo
    value = {"K": np.eye(2), "t": 3.5, "pred": (np.zeros(3), np.ones((1, 2))), "note": "x", "n": None}
    first = Memo(directory=tmp_path)
    assert first.get({"k": 1}, lambda: value, persist=True) is value
    second = Memo(directory=tmp_path)
    back = second.get({"k": 1}, lambda: pytest.fail("recomputed"), persist=True)
    assert second.loaded == 1 and second.computed == 0
    assert back["t"] == 3.5 and back["note"] == "x" and back["n"] is None and isinstance(back["pred"], tuple)
    np.testing.assert_array_equal(back["K"], np.eye(2))
    # a value it cannot hold (an object) is simply not persisted
    Memo(directory=tmp_path / "o").get({"k": 2}, lambda: {"model": object()}, persist=True)
    assert not (tmp_path / "o").exists()
    # a torn file is recomputed, not trusted
    path = next(tmp_path.glob("*.npz"))
    path.write_bytes(path.read_bytes()[:40])
    assert Memo(directory=tmp_path).get({"k": 1}, lambda: "again", persist=True) == "again"
