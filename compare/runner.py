"""Sweeps of independent runs: joblib locally, dask.distributed on a cluster, results kept in DIR/results.jsonl.

A sweep is a list of runs — :class:`compare.run.Run` records, or plain JSON-able dicts — and a top-level
function ``func(run) -> dict``. Each finished run becomes one JSON line of ``DIR/results.jsonl`` (the run's flat
configuration, its own fields, a ``run_key`` that identifies it, the wall time, library versions and device),
written with a single ``write`` followed by ``flush`` and ``fsync``, so a killed sweep leaves at most one
half-written last line. Running the same sweep again resumes: rows already in the file are kept and their runs
skipped; the torn last line, if any, is dropped. ``DIR/config.json`` holds the sweep's configuration and its
fingerprint; a results file written under a different configuration is refused rather than mixed with new rows.

Runs that share work (``shared_work(run) -> key``, e.g. all methods of one seed) run together in one task,
``func(run, memo)`` with one :class:`compare.memo.Memo` per task; a group is split into as many tasks as it
takes to keep every worker busy.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import json
import math
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from compare.memo import Memo
from compare.sweep_guard import FolderLock, SweepLockedError, quiet_shutdown, watch_parent  # noqa: F401 (re-exported)

BACKENDS = ("loky", "dask")
RESULTS = "results.jsonl"
CONFIG = "config.json"
SCHEDULER_TIMEOUT = 10.0  # seconds to wait for a dask scheduler to answer


class ConfigMismatchError(ValueError):
    """DIR/results.jsonl was written by a sweep with a different configuration."""


class ResultsFileError(ValueError):
    """A file or folder of the sweep (results.jsonl, config.json, --out) cannot be read or written as it is;
    the message names the path and what to do. Nothing already saved is changed."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``str()`` is the one line to print (how many runs were saved, how to resume)."""


class SchedulerUnreachableError(ConnectionError):
    """The dask scheduler given with --scheduler did not answer."""


# ---------------------------------------------------------------------------------------- JSON helpers
def to_jsonable(value):
    """Plain-JSON form of a value: NumPy scalars/arrays to Python, NaN/inf to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def canonical(value) -> str:
    """Canonical JSON text (sorted keys, no spaces): equal configurations give equal strings."""
    try:
        return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"a run config must hold only numbers, strings, lists and dicts (JSON): {exc}") from None


def fingerprint(value) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:16]


# Settings that say where inputs were found, not what they are: the same data reached through another folder is
# the same run. They stay in the rows and in config.json, but run keys and sweep fingerprints see them as None
# (what a sweep without them stored, so older results folders still resume); the experiments put the data's
# content checksum (``data_sha256``, compare.data.content_sha256) in the configuration instead.
LOCATION_KEYS = ("data_dir",)


def identity(config: dict) -> dict:
    """``config`` with its :data:`LOCATION_KEYS` set to None: what run keys and sweep fingerprints are made of."""
    return {k: None if k in LOCATION_KEYS else v for k, v in config.items()}


def run_key(config: dict) -> str:
    """The identity of one run: the fingerprint of its configuration, where its data was found left out."""
    return fingerprint(identity(config))


# ------------------------------------------------------------------------------------------ results file
def read_results(path) -> list[dict]:
    """Rows of a results.jsonl file, ignoring a trailing half-written line (one without its newline).

    A complete line that is not a JSON object means the file was edited or corrupted: ValueError naming
    the line, rather than silently dropping data.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file (a directory?); move it away, or pass another --out")
    data = _read_bytes(path)
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        warnings.warn(f"{path}: ignoring a half-written last line ({len(data) - len(complete)} bytes); "
                      "its run will be redone", RuntimeWarning, stacklevel=2)
    rows = []
    for number, raw in enumerate(complete.split(b"\n")[:-1], start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsFileError(f"{path}, line {number}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                                   f"{exc.start + 1}); fix or remove that line, or pass --no-resume to start "
                                   "afresh") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsFileError(f"{path}, line {number}: not a JSON object ({exc.msg}); "
                             "fix or remove that line, or pass --no-resume to start afresh") from None
        if not isinstance(row, dict):
            raise ResultsFileError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}; "
                                   "fix or remove that line, or pass --no-resume to start afresh")
        rows.append(row)
    return rows


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ResultsFileError(f"cannot read {path} ({exc.strerror}); check its permissions, or pass another "
                               "--out") from None


def read_config(path) -> dict | None:
    """The stored DIR/config.json ({"fingerprint", "config"}), None when absent; ResultsFileError naming the
    file when it is not such a JSON object."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file (a directory?); move it away, or pass another --out")
    try:
        stored = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{path} is not valid JSON ({exc}); restore it, delete it together with "
                               f"{RESULTS}, or pass --no-resume to set both aside") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("fingerprint"), str):
        raise ResultsFileError(f"{path} must hold a JSON object with a \"fingerprint\" string (written by "
                               f"lazykit), got {type(stored).__name__}; restore it, or pass --no-resume to set "
                               "the old results aside")
    return stored


def drop_torn_tail(path) -> None:
    """Truncate ``path`` after its last newline, so the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file (a directory?); move it away, or pass another --out")
    data = _read_bytes(path)
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())


def append_row(path, row: dict) -> None:
    """Append one row as one JSON line: a single write, then flush and fsync.

    If the write fails (a full disk, a quota), the file is cut back to its previous length, so no torn row
    is left behind, and ``ResultsFileError`` says so.
    """
    line = (canonical(row) + "\n").encode()
    try:
        handle = open(path, "ab")
    except OSError as exc:
        raise ResultsFileError(f"cannot open {path} for writing ({exc.strerror}); check the permissions of "
                               "that folder or pass another --out") from None
    with handle:
        size = handle.tell()
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            try:
                handle.truncate(size)
            except OSError:
                pass
            raise ResultsFileError(f"could not write a row to {path} ({exc.strerror}); the rows saved before are "
                                   "intact. Free some space (or fix the folder) and run the same command to "
                                   "resume") from None


# --------------------------------------------------------------------------------------------- metadata
def library_versions() -> dict:
    """Versions of Python and the libraries a result depends on."""
    import importlib.metadata as metadata
    versions = {"python": platform.python_version()}
    for dist in ("lazykit", "numpy", "scipy", "scikit-learn", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def describe_device(device: str) -> str:
    """Human-readable device: the GPU name for "cuda", the CPU and core count otherwise."""
    if device == "cuda":
        import torch
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _as_config(run):
    """The flat, JSON-able configuration of a run (a Run record's ``config()``, or the dict itself)."""
    return to_jsonable(run.config() if hasattr(run, "config") else run)


def _timed(func, run):
    """Worker-side wrapper: run one run and add its wall time; returns (flat config, row)."""
    start = time.perf_counter()
    row = dict(func(run))
    row.setdefault("seconds", time.perf_counter() - start)
    return _as_config(run), row


def _timed_task(func, task, shared: bool):
    """Run the runs of one task in order (with one Memo among them when they share work)."""
    if not shared:
        return [_timed(func, run) for run in task]
    call = functools.partial(func, memo=Memo())
    return [_timed(call, run) for run in task]


def _tasks(todo, shared_work, workers: int) -> list:
    """Group the runs into tasks: one run each, or (with ``shared_work``) the runs of one key, each group cut
    into ceil(workers / groups) nearly equal tasks so that a sweep of one group still uses every worker."""
    if shared_work is None:
        return [[run] for run in todo]
    groups = {}
    for run in todo:
        groups.setdefault(canonical(shared_work(run)), []).append(run)
    pieces = max(1, -(-max(1, workers) // len(groups))) if groups else 1
    tasks = []
    for members in groups.values():
        size = -(-len(members) // min(pieces, len(members)))
        tasks += [members[i:i + size] for i in range(0, len(members), size)]
    return tasks


# ------------------------------------------------------------------------------------------------ sweep
def prepare(out_dir, sweep_config: dict, resume: bool = True) -> list[dict]:
    """Make ``out_dir`` ready for a sweep and return the rows already finished there.

    - No results yet: write DIR/config.json.
    - Results from the same configuration (same fingerprint): keep them (resume) and drop a torn last line.
    - Results from a different configuration: ConfigMismatchError, nothing touched.
    - ``resume=False``: the old results.jsonl and config.json are renamed with a timestamp (never deleted).
    """
    out = _out_folder(out_dir)
    results, config_path = out / RESULTS, out / CONFIG
    wanted = {"fingerprint": fingerprint(identity(sweep_config)), "config": to_jsonable(sweep_config)}
    if results.exists() and not results.is_file():
        raise ResultsFileError(f"{results} is not a file (a directory?); move it away, or pass another --out")
    if results.exists() and results.stat().st_size > 0:
        stored = read_config(config_path) if resume else None
        if not resume:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            results.rename(out / f"results-{stamp}.jsonl")
            if config_path.exists():
                config_path.rename(out / f"config-{stamp}.json")
            print(f"--no-resume: previous results kept as {out / f'results-{stamp}.jsonl'}")
        elif stored is None or stored.get("fingerprint") != wanted["fingerprint"]:
            raise ConfigMismatchError(_mismatch_message(results, stored, wanted))
        else:
            rows = read_results(results)
            drop_torn_tail(results)
            return rows
    elif config_path.exists() and not config_path.is_file():
        raise ResultsFileError(f"{config_path} is not a file (a directory?); move it away, or pass another --out")
    try:
        tmp = config_path.with_name(CONFIG + ".tmp")
        tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, config_path)
    except OSError as exc:
        raise ResultsFileError(f"cannot write {config_path} ({exc.strerror}); check the permissions and free "
                               "space of that folder, or pass another --out") from None
    return []


def _out_folder(out_dir) -> Path:
    """``out_dir`` as a writable folder (created if needed); ResultsFileError naming it otherwise."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsFileError(f"--out {out} is a file, not a folder; pass a folder path (it is created if needed)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsFileError(f"cannot create the --out folder {out} ({exc.strerror}); pass another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ResultsFileError(f"the --out folder {out} is not writable; fix its permissions or pass another --out")
    return out


def _mismatch_message(results, stored, wanted) -> str:
    if stored is None:
        why = f"there is no {CONFIG} beside it, so its configuration is unknown"
    else:
        old, new = stored.get("config", {}), wanted["config"]
        old = old if isinstance(old, dict) else {}
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in LOCATION_KEYS)
        why = ("these settings differ: " + "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys)
               if keys else "the settings agree, but its fingerprint was computed by an older lazykit")
    return (f"{results} holds results of a different configuration ({why}). Refusing to mix them; "
            f"nothing was changed. Use another --out directory, or --no-resume to set the old results aside.")


def run_sweep(func, runs, out_dir, sweep_config: dict, *, jobs: int = 1, backend: str = "loky",
              scheduler: str | None = None, resume: bool = True, device: str = "cpu",
              progress: bool = True, desc: str = "runs", shared_work=None) -> list[dict]:
    """Run ``func`` on every run not yet finished in ``out_dir``; return all rows of the sweep, in order.

    ``runs``: :class:`compare.run.Run` records or JSON-able dicts. ``func(run) -> dict`` (``func(run, memo)``
    with ``shared_work``) must be importable at top level (it is pickled to joblib/dask workers). Each row gets
    ``run_key``, the run's flat configuration, ``seconds``, ``versions`` and ``device``, and is appended to
    DIR/results.jsonl as soon as its task finishes (in the calling process only, so there is a single writer).
    ``jobs`` workers run through joblib's ``loky`` backend; ``backend="dask"`` sends the tasks to the
    dask.distributed scheduler at ``scheduler``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "dask" and not scheduler:
        raise ValueError("backend 'dask' needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786, as printed by "
                         "`dask scheduler`)")
    if backend != "dask" and scheduler:
        raise ValueError("--scheduler is only used with --backend dask")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0 or jobs < -1:
        raise ValueError(f"jobs must be a positive integer or -1 (all cores), got {jobs!r}")
    runs = [run if hasattr(run, "config") else to_jsonable(run) for run in runs]
    keys = [run_key(_as_config(run)) for run in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("the sweep contains duplicate run configurations")
    if not runs:
        raise ValueError("runs is empty: the sweep has no run to do (check the preset's axes, e.g. seeds)")
    out = _out_folder(out_dir)
    with FolderLock(out):
        done = {row.get("run_key"): row for row in prepare(out, sweep_config, resume)}
        todo = [run for run, k in zip(runs, keys) if k not in done]
        results = out / RESULTS
        meta = {"versions": library_versions(), "device": describe_device(device)}

        from tqdm.auto import tqdm
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=desc, unit="run",
                   disable=not progress or not todo, dynamic_ncols=True)
        try:
            for config, row in _execute(func, todo, jobs, backend, scheduler, shared_work):
                row = {**config, **row, "run_key": run_key(config), **meta}
                row = to_jsonable(row)
                append_row(results, row)
                done[row["run_key"]] = row
                bar.update(1)
        except KeyboardInterrupt:
            saved = sum(k in done for k in keys)
            raise SweepInterrupted(f"interrupted: {saved} of {len(keys)} runs saved in {out}; run the same "
                                   "command to resume") from None
        finally:
            bar.close()
    return [done[k] for k in keys if k in done]


def _execute(func, todo, jobs, backend, scheduler, shared_work=None):
    """Yield (config, row) pairs as runs finish: run by run in this process, task by task elsewhere."""
    if not todo:
        return
    shared = shared_work is not None
    if backend == "dask":
        yield from _execute_dask(func, todo, scheduler, shared_work)
    elif jobs == 1 or len(todo) == 1:
        for task in _tasks(todo, shared_work, 1):
            call = functools.partial(func, memo=Memo()) if shared else func
            for run in task:
                yield _timed(call, run)
    else:
        workers = (os.cpu_count() or 1) if jobs == -1 else jobs
        yield from _execute_loky(func, list(_tasks(todo, shared_work, workers)), workers, shared)


def _execute_loky(func, tasks, workers, shared):
    """Run the tasks on a pool of loky worker processes, yielding (config, row) pairs as tasks finish.

    Workers watch their parent (``sweep_guard.watch_parent``) and exit when it dies; on Ctrl-C (or any error) the pool is
    shut down and its workers killed, so no process outlives the sweep."""
    import concurrent.futures

    from joblib.externals.loky import get_reusable_executor
    executor = get_reusable_executor(max_workers=max(1, min(workers, len(tasks))), initializer=watch_parent,
                                     initargs=(os.getpid(),), reuse=False)
    queued, running = list(tasks), set()
    try:
        while queued or running:   # at most one task per worker in flight: nothing queued to cancel on Ctrl-C
            while queued and len(running) < max(1, workers):
                running.add(executor.submit(_timed_task, func, queued.pop(0), shared))
            finished, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                yield from future.result()
    except BaseException:
        quiet_shutdown(executor)
        raise


def _execute_dask(func, todo, scheduler, shared_work=None):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ImportError("--backend dask needs dask.distributed: pip install 'lazykit[dask]'") from None
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"could not reach the dask scheduler at {scheduler!r} within {SCHEDULER_TIMEOUT:g} s ({exc}). "
            "Start one with "
            "`dask scheduler` (and workers with `dask worker ADDRESS`), check the address, or drop "
            "--backend dask to run locally.") from None
    try:
        with client.as_current():
            workers = sum(client.nthreads().values()) or 1
            futures = [client.submit(_timed_task, func, task, shared_work is not None, pure=False)
                       for task in _tasks(todo, shared_work, workers)]
            for future in as_completed(futures):
                yield from future.result()
    finally:
        client.close()
