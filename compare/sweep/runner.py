"""``run_sweep``: a sweep of independent runs, resumable, with its results kept in DIR/results.jsonl.

A sweep is a list of runs — :class:`compare.sweep.run.Run` records, or plain JSON-able dicts — and a top-level
function ``func(run) -> dict``. Each finished run becomes one row of ``DIR/results.jsonl``
(``compare.sweep.results``): the run's flat configuration, its own fields, a ``run_key`` that identifies it
(``compare.sweep.keys``), the wall time, library versions and device. Running the same sweep again resumes: rows
already in the file are kept and their runs skipped. The runs execute in this process, on loky workers or on a
dask cluster (``compare.sweep.executors``); one sweep at a time holds the folder (``compare.sweep.guard``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from compare.sweep.executors import BACKENDS, PARTIAL_FOLDER, as_config, complete_row, execute
from compare.sweep.guard import FolderLock
from compare.sweep.keys import run_key, to_jsonable
from compare.sweep.memo import MEMO_FOLDER
from compare.sweep.results import (RESULTS, append_row, describe_device, library_versions, out_folder, prepare,
                                   read_results)


class ThreadCountMismatchError(ValueError):
    """The rows already saved were computed with another number of threads per run (results then differ in
    their last digits: reductions are summed in another order); refused rather than mixed."""


def recorded_threads(out_dir) -> set:
    """The thread counts per run recorded in DIR/results.jsonl's rows (empty when none is recorded)."""
    import warnings
    path = Path(out_dir) / RESULTS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # a torn last line is reported by the sweep itself
            rows = read_results(path) if path.is_file() else []
    except ValueError:
        return set()
    return {row["threads"] for row in rows if isinstance(row.get("threads"), int)}


def _merge_partial(out, done):
    """Rows that loky tasks wrote to DIR/partial/ before the sweep was killed: appended to results.jsonl (those
    not there yet), then the spill files removed."""
    folder = out / PARTIAL_FOLDER
    if not folder.is_dir():
        return
    for spill in sorted(folder.glob("task-*.jsonl")):
        for row in read_results(spill):
            if isinstance(row.get("run_key"), str) and row["run_key"] not in done:
                append_row(out / RESULTS, row)
                done[row["run_key"]] = row
        spill.unlink()


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``str()`` is the one line to print (how many runs were saved, how to resume)."""


def run_sweep(func, runs, out_dir, sweep_config: dict, *, jobs: int = 1, backend: str = "loky",
              scheduler: str | None = None, resume: bool = True, device: str = "cpu",
              progress: bool = True, desc: str = "runs", shared_work=None, resolved: dict | None = None,
              threads: int | None = None) -> list[dict]:
    """Run ``func`` on every run not yet finished in ``out_dir``; return all rows of the sweep, in order.

    ``runs``: :class:`compare.sweep.run.Run` records or JSON-able dicts. ``func(run) -> dict`` (``func(run, memo)``
    with ``shared_work``) must be importable at top level (it is pickled to joblib/dask workers). Each row gets
    ``run_key``, the run's flat configuration, ``seconds``, ``versions`` and ``device``, and is appended to
    DIR/results.jsonl as soon as its task finishes (in the calling process only, so there is a single writer).
    ``jobs`` workers run through joblib's ``loky`` backend; ``backend="dask"`` sends the tasks to the
    dask.distributed scheduler at ``scheduler``. ``resolved`` (how the sweep executes: devices, jobs, threads) is
    written to DIR/config.json beside the fingerprinted settings, not into the fingerprint.

    Interruptions lose at most the runs in progress: a loky task also writes each finished run's row to its own
    file in DIR/partial/ (merged on resume), and values the runs of a group share persist in DIR/memo/
    (``Memo.get(persist=True)``, e.g. equivalence's Θ₀), both removed once the sweep is complete. ``threads``
    (the threads per run, when the caller fixes them) is recorded in every row; rows saved with another count
    are refused (``ThreadCountMismatchError``) instead of mixed.
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
    keys = [run_key(as_config(run)) for run in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("the sweep contains duplicate run configurations")
    if not runs:
        raise ValueError("runs is empty: the sweep has no run to do (check the preset's axes, e.g. seeds)")
    out = out_folder(out_dir)
    with FolderLock(out):
        done = {row.get("run_key"): row for row in prepare(out, sweep_config, resume, resolved)}
        if resume:
            _merge_partial(out, done)
        else:
            shutil.rmtree(out / PARTIAL_FOLDER, ignore_errors=True)
            shutil.rmtree(out / MEMO_FOLDER, ignore_errors=True)
        if threads is not None:
            other = sorted({row["threads"] for row in done.values() if isinstance(row.get("threads"), int)}
                           - {threads})
            if other:
                raise ThreadCountMismatchError(
                    f"{out / RESULTS} holds rows computed with {', '.join(map(str, other))} thread(s) per run, and "
                    f"this sweep would use {threads}: the results differ in their last digits with the thread "
                    f"count, so they are not mixed; pass --threads {other[0]} to resume, or --no-resume")
        todo = [run for run, k in zip(runs, keys) if k not in done]
        results = out / RESULTS
        meta = {"versions": library_versions(), "device": describe_device(device)}
        if threads is not None:
            meta["threads"] = threads

        from tqdm.auto import tqdm
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=desc, unit="run",
                   disable=not progress or not todo, dynamic_ncols=True)
        try:
            for config, row in execute(func, todo, jobs, backend, scheduler, shared_work,
                                       folder=None if backend == "dask" else out, meta=meta):
                row = complete_row(config, row, meta)
                append_row(results, row)
                done[row["run_key"]] = row
                bar.update(1)
        except KeyboardInterrupt:
            saved = sum(k in done for k in keys)
            raise SweepInterrupted(f"interrupted: {saved} of {len(keys)} runs saved in {out}; run the same "
                                   "command to resume") from None
        finally:
            bar.close()
        if all(k in done for k in keys):      # complete: what served resumes is no longer needed
            shutil.rmtree(out / MEMO_FOLDER, ignore_errors=True)
            shutil.rmtree(out / PARTIAL_FOLDER, ignore_errors=True)
    return [done[k] for k in keys if k in done]
