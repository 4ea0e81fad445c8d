"""Sweeps under concurrency, kills, Ctrl-C, and in folders a crash or a hand edit left in a bad state.

Each bad state must give one ``ResultsFileError`` naming the path, with nothing already saved changed.
The process tests start real sweeps in subprocesses (``python -c``), with runs that sleep, and send signals.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compare import sweep

SWEEP = {"experiment": "toy"}
ROOT = Path(__file__).resolve().parents[3]

# A sweep in a subprocess: N runs of `sleep` seconds each with `jobs` loky workers; prints the rows' count.
SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from compare import sweep

    def nap(config):
        time.sleep(config["sleep"])
        return {{"pid": os.getpid()}}

    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    configs = [{{"x": i, "sleep": {sleep}}} for i in range({n})]
    try:
        rows = sweep.run_sweep(nap, configs, {out!r}, {{"experiment": "toy"}}, jobs={jobs}, progress=False)
        print(len(rows))
    except sweep.SweepLockedError as exc:
        print("locked:", exc)
        sys.exit(3)
    except KeyboardInterrupt as exc:
        print(exc, file=sys.stderr)
        sys.exit(130)
""")


def _start(out, n=6, sleep=0.3, jobs=1):
    code = SCRIPT.format(root=str(ROOT), out=str(out), n=n, sleep=sleep, jobs=jobs)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, start_new_session=True)


def _rows(out):
    return sweep.read_results(Path(out) / sweep.RESULTS)


def test_three_concurrent_sweeps_run_every_run_once(tmp_path):
    """Three processes start the same sweep into one folder: the first holds the lock, the other two are
    refused (exit 3, one line naming the folder); the folder holds exactly 6 rows for 6 keys, not 18."""
    procs = [_start(tmp_path, n=6, sleep=0.2) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3, 3], (codes, outs)
    refused = [o for o, p in zip(outs, procs) if p.returncode == 3]
    assert all(str(tmp_path) in o[0] and "another sweep" in o[0] for o in refused)
    rows = _rows(tmp_path)
    assert len(rows) == 6 and len({r["run_key"] for r in rows}) == 6


def test_lock_is_released_by_sigkill(tmp_path):
    """flock dies with its holder: after SIGKILL of a sweep, the next one resumes without any stale lock."""
    proc = _start(tmp_path, n=4, sleep=0.5)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    rows = sweep.run_sweep(_noop, [{"x": i, "sleep": 0.5} for i in range(4)], tmp_path, SWEEP, progress=False)
    assert len(rows) == 4


def _noop(config):
    return {"pid": os.getpid()}


def _children(pid):
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc to find worker processes")
def test_loky_workers_die_with_their_parent_after_sigkill(tmp_path):
    """SIGKILL of a --jobs 2 sweep (the parent only): its loky workers notice within ~0.5 s (they poll their
    parent id) and exit; we allow 10 s on a loaded machine."""
    proc = _start(tmp_path, n=8, sleep=2.0, jobs=2)
    deadline = time.time() + 60
    workers = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = _children(proc.pid)   # the loky workers (and loky's resource tracker)
    assert workers, "the sweep started no worker process"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(map(_alive, workers)):
        time.sleep(0.2)
    assert not any(map(_alive, workers)), [w for w in workers if _alive(w)]


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    """SIGINT during a --jobs 2 sweep: exit status 130 and a single stderr line saying how many runs were saved
    (as many as results.jsonl holds) and how to resume; no traceback, no leaked-semaphore warning."""
    proc = _start(tmp_path, n=8, sleep=1.0, jobs=2)
    deadline = time.time() + 60
    while time.time() < deadline and len(_rows(tmp_path)) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    saved = len(_rows(tmp_path))
    assert lines == [f"interrupted: {saved} of 8 runs saved in {tmp_path}; run the same command to resume"], err


# ------------------------------------------------------------------------------------------ files
def _saved(tmp_path):
    sweep.run_sweep(_noop, [{"x": 1, "sleep": 0}], tmp_path, SWEEP, progress=False)
    return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}


def _one_line_naming(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message, message


def test_out_that_is_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(sweep.ResultsFileError) as info:
        sweep.run_sweep(_noop, [{"x": 1}], target, SWEEP, progress=False)
    _one_line_naming(info, target)
    assert target.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_out(tmp_path):
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(sweep.ResultsFileError) as info:
            sweep.run_sweep(_noop, [{"x": 1}], tmp_path, SWEEP, progress=False)
        _one_line_naming(info, tmp_path)
    finally:
        os.chmod(tmp_path, 0o700)


@pytest.mark.parametrize("content", [b"[1, 2]\n", b"{broken", b"\xff\xfe"])
def test_bad_config_json(tmp_path, content):
    before = _saved(tmp_path)
    (tmp_path / sweep.CONFIG).write_bytes(content)
    with pytest.raises(sweep.ResultsFileError) as info:
        sweep.run_sweep(_noop, [{"x": 1, "sleep": 0}], tmp_path, SWEEP, progress=False)
    _one_line_naming(info, tmp_path / sweep.CONFIG)
    assert (tmp_path / sweep.RESULTS).read_bytes() == before[sweep.RESULTS]


def test_non_utf8_byte_names_file_and_line(tmp_path):
    before = _saved(tmp_path)
    with open(tmp_path / sweep.RESULTS, "ab") as handle:
        handle.write(b'{"x": "\xff"}\n')
    with pytest.raises(sweep.ResultsFileError) as info:
        sweep.run_sweep(_noop, [{"x": 1, "sleep": 0}], tmp_path, SWEEP, progress=False)
    _one_line_naming(info, tmp_path / sweep.RESULTS)
    assert "line 2" in str(info.value)
    assert (tmp_path / sweep.RESULTS).read_bytes() == before[sweep.RESULTS] + b'{"x": "\xff"}\n'


def test_results_jsonl_that_is_a_directory(tmp_path):
    (tmp_path / sweep.RESULTS).mkdir()
    with pytest.raises(sweep.ResultsFileError) as info:
        sweep.run_sweep(_noop, [{"x": 1}], tmp_path, SWEEP, progress=False)
    _one_line_naming(info, tmp_path / sweep.RESULTS)
    assert "different configuration" not in str(info.value)


def test_full_disk_leaves_no_torn_row(tmp_path, monkeypatch):
    """A write that fails half-way (ENOSPC after 10 bytes) is cut back: the file keeps exactly its old rows."""
    before = _saved(tmp_path)
    real_open = open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:10])
            self.handle.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("builtins.open", lambda path, mode="r", *a, **k: Full(real_open(path, mode, *a, **k))
                        if str(path).endswith(sweep.RESULTS) and "a" in mode else real_open(path, mode, *a, **k))
    with pytest.raises(sweep.ResultsFileError) as info:
        sweep.append_row(tmp_path / sweep.RESULTS, {"x": 2})
    monkeypatch.undo()
    _one_line_naming(info, tmp_path / sweep.RESULTS)
    assert (tmp_path / sweep.RESULTS).read_bytes() == before[sweep.RESULTS]


def test_empty_sweep_is_refused(tmp_path):
    with pytest.raises(ValueError, match="runs is empty"):
        sweep.run_sweep(_noop, [], tmp_path, SWEEP, progress=False)
    assert not (tmp_path / sweep.CONFIG).exists()
