"""Sweeps: typed run records, their keys, results.jsonl and config.json, executors (in process, joblib, dask),
the memo shared by the runs of one task, and the lock that keeps one sweep per folder.

``run_sweep(func, runs, out_dir, sweep_config, jobs=, backend=, scheduler=)`` is the entry point
(``compare.sweep.runner``); the names below are what users and experiments use.
"""
from compare.sweep.executors import BACKENDS, SchedulerUnreachableError
from compare.sweep.guard import SweepLockedError
from compare.sweep.keys import canonical, fingerprint, run_key, to_jsonable
from compare.sweep.memo import Memo
from compare.sweep.results import (CONFIG, RESULTS, ConfigMismatchError, ResultsFileError, append_row, drop_torn_tail,
                                   prepare, read_config, read_results)
from compare.sweep.run import Run
from compare.sweep.runner import SweepInterrupted, ThreadCountMismatchError, recorded_threads, run_sweep

__all__ = ["BACKENDS", "CONFIG", "RESULTS", "ConfigMismatchError", "Memo", "ResultsFileError", "Run",
           "SchedulerUnreachableError", "SweepInterrupted", "ThreadCountMismatchError", "SweepLockedError", "append_row", "canonical",
           "drop_torn_tail", "fingerprint", "prepare", "read_config", "read_results", "recorded_threads", "run_key", "run_sweep",
           "to_jsonable"]
