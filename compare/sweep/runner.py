"""``run_sweep``: a sweep of independent runs, resumable, with its results kept in DIR/results.jsonl.

A sweep is a list of runs — :class:`compare.sweep.run.Run` records, or plain JSON-able dicts — and a top-level
function ``func(run) -> dict``. Each finished run becomes one row of ``DIR/results.jsonl``
(``compare.sweep.results``): the run's flat configuration, its own fields, a ``run_key`` that identifies it
(``compare.sweep.keys``), the wall time, library versions and device. Running the same sweep again resumes: rows
already in the file are kept and their runs skipped. The runs execute in this process, on loky workers or on a
dask cluster (``compare.sweep.executors``); one sweep at a time holds the folder (``compare.sweep.guard``).
"""
from __future__ import annotations

from compare.sweep.executors import BACKENDS, as_config, execute
from compare.sweep.guard import FolderLock
from compare.sweep.keys import run_key, to_jsonable
from compare.sweep.results import RESULTS, append_row, describe_device, library_versions, out_folder, prepare


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``str()`` is the one line to print (how many runs were saved, how to resume)."""


def run_sweep(func, runs, out_dir, sweep_config: dict, *, jobs: int = 1, backend: str = "loky",
              scheduler: str | None = None, resume: bool = True, device: str = "cpu",
              progress: bool = True, desc: str = "runs", shared_work=None, resolved: dict | None = None) -> list[dict]:
    """Run ``func`` on every run not yet finished in ``out_dir``; return all rows of the sweep, in order.

    ``runs``: :class:`compare.sweep.run.Run` records or JSON-able dicts. ``func(run) -> dict`` (``func(run, memo)``
    with ``shared_work``) must be importable at top level (it is pickled to joblib/dask workers). Each row gets
    ``run_key``, the run's flat configuration, ``seconds``, ``versions`` and ``device``, and is appended to
    DIR/results.jsonl as soon as its task finishes (in the calling process only, so there is a single writer).
    ``jobs`` workers run through joblib's ``loky`` backend; ``backend="dask"`` sends the tasks to the
    dask.distributed scheduler at ``scheduler``. ``resolved`` (how the sweep executes: devices, jobs, threads) is
    written to DIR/config.json beside the fingerprinted settings, not into the fingerprint.
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
        todo = [run for run, k in zip(runs, keys) if k not in done]
        results = out / RESULTS
        meta = {"versions": library_versions(), "device": describe_device(device)}

        from tqdm.auto import tqdm
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=desc, unit="run",
                   disable=not progress or not todo, dynamic_ncols=True)
        try:
            for config, row in execute(func, todo, jobs, backend, scheduler, shared_work):
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
