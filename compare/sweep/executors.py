"""Where the runs of a sweep execute: in this process, on loky worker processes (joblib) or on a dask.distributed
cluster. Runs that share work (``shared_work(run) -> key``) run together in one task with one
:class:`compare.sweep.memo.Memo`; a group is split into as many tasks as it takes to keep every worker busy.
Results come back to the calling process (a single writer of results.jsonl).
"""
from __future__ import annotations

import functools
import os
import time
import uuid
from pathlib import Path

from compare.sweep.guard import quiet_shutdown, watch_parent
from compare.sweep.keys import canonical, run_key, to_jsonable
from compare.sweep.memo import MEMO_FOLDER, Memo
from compare.sweep.results import append_row

PARTIAL_FOLDER = "partial"   # DIR/partial/task-*.jsonl: rows of loky tasks still running (or killed)

BACKENDS = ("loky", "dask")
SCHEDULER_TIMEOUT = 10.0  # seconds to wait for a dask scheduler to answer


class SchedulerUnreachableError(ConnectionError):
    """The dask scheduler given with --scheduler did not answer."""


def as_config(run):
    """The flat, JSON-able configuration of a run (a Run record's ``config()``, or the dict itself)."""
    return to_jsonable(run.config() if hasattr(run, "config") else run)


def _timed(func, run):
    """Worker-side wrapper: run one run and add its wall time; returns (flat config, row)."""
    start = time.perf_counter()
    row = dict(func(run))
    row.setdefault("seconds", time.perf_counter() - start)
    return as_config(run), row


def complete_row(config: dict, row: dict, meta: dict) -> dict:
    """The results.jsonl row of a finished run: its flat config, its fields, its ``run_key`` and the sweep's meta."""
    return to_jsonable({**config, **row, "run_key": run_key(config), **meta})


def _timed_task(func, task, shared: bool, memo_dir=None, spill=None, meta=None):
    """Run the runs of one task in order (with one Memo among them when they share work, its persisted values
    under ``memo_dir``). With ``spill`` (a file of this task alone) each finished run's complete row is appended
    there at once, so a task killed after some of its runs keeps them: the next sweep adds them to results.jsonl."""
    call = functools.partial(func, memo=Memo(directory=memo_dir)) if shared else func
    out = []
    for run in task:
        config, row = _timed(call, run)
        if spill is not None:
            append_row(spill, complete_row(config, row, meta or {}))
        out.append((config, row))
    return out


def tasks(todo, shared_work, workers: int) -> list:
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


def execute(func, todo, jobs, backend, scheduler, shared_work=None, folder=None, meta=None):
    """Yield (config, row) pairs as runs finish: run by run in this process, task by task elsewhere.

    ``folder`` (the sweep's --out): where shared values persist (``MEMO_FOLDER``) and where loky tasks spill
    their finished rows (``PARTIAL_FOLDER``, one file per task, removed once the rows are in results.jsonl).
    Dask workers may not see it, so dask tasks use neither."""
    if not todo:
        return
    shared = shared_work is not None
    memo_dir = None if folder is None else Path(folder) / MEMO_FOLDER
    if backend == "dask":
        yield from _execute_dask(func, todo, scheduler, shared_work)
    elif jobs == 1 or len(todo) == 1:
        for task in tasks(todo, shared_work, 1):
            call = functools.partial(func, memo=Memo(directory=memo_dir)) if shared else func
            for run in task:
                yield _timed(call, run)
    else:
        workers = worker_count(jobs)
        spill_dir = None if folder is None else Path(folder) / PARTIAL_FOLDER
        yield from _execute_loky(func, list(tasks(todo, shared_work, workers)), workers, shared, memo_dir, spill_dir,
                                 meta)


def _execute_loky(func, tasks, workers, shared, memo_dir=None, spill_dir=None, meta=None):
    """Run the tasks on a pool of loky worker processes, yielding (config, row) pairs as tasks finish.

    Workers watch their parent (``sweep_guard.watch_parent``) and exit when it dies; on Ctrl-C (or any error) the pool is
    shut down and its workers killed, so no process outlives the sweep."""
    import concurrent.futures

    from joblib.externals.loky import get_reusable_executor
    executor = get_reusable_executor(max_workers=max(1, min(workers, len(tasks))), initializer=watch_parent,
                                     initargs=(os.getpid(),), reuse=False)
    queued, running, spills = list(tasks), set(), {}
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
    try:
        while queued or running:   # at most one task per worker in flight: nothing queued to cancel on Ctrl-C
            while queued and len(running) < max(1, workers):
                spill = None if spill_dir is None else spill_dir / f"task-{uuid.uuid4().hex}.jsonl"
                future = executor.submit(_timed_task, func, queued.pop(0), shared, memo_dir, spill, meta)
                running.add(future)
                spills[future] = spill
            finished, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                yield from future.result()
                if spills.get(future) is not None:   # its rows are in results.jsonl now
                    spills.pop(future).unlink(missing_ok=True)
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
                       for task in tasks(todo, shared_work, workers)]
            for future in as_completed(futures):
                yield from future.result()
    finally:
        client.close()


def worker_count(jobs: int) -> int:
    """The local worker processes ``jobs`` asks for: -1 is one per core."""
    return (os.cpu_count() or 1) if jobs == -1 else jobs
