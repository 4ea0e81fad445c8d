"""Fuzz cases for the Python API of ``compare``: data loading, the teacher–student task and the sweep runner's
files (results.jsonl / config.json in every state a crash, a full disk or a hand edit can leave)."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from hypothesis import strategies as st

from compare import data, runner
from tests.fuzz.inputs import INF, NAN

ENTRIES = {}


def entry(name):
    def register(builder):
        ENTRIES[name] = builder
        return builder
    return register


@entry("data.load")
def load(case):
    name = case.arg("name", ("digits", "breast_cancer", "diabetes"), reject=("mnist", None, 3),
                    aliases=("dataset name",))
    n_train = case.arg("n_train", (None, 20, 50), bad=(10 ** 6,), reject=(0, -1, True, "abc", 2.5, NAN))
    n_test = case.arg("n_test", (None, 10), reject=(0, True, "x"))
    seed = case.arg("seed", (0, 3), reject=(-1, True, "0", 1.5))
    dtype = case.arg("dtype", (None, "float32", "float64"), reject=("float16", 3))
    return lambda: vars(data.load(name, n_train=n_train, n_test=n_test, seed=seed, dtype=dtype))


@entry("data.teacher_student")
def teacher_student(case):
    kwargs = dict(n_train=case.arg("n_train", (5, 20), reject=(0, True, "5", 2.5)),
                  n_test=case.arg("n_test", (3,), reject=(0, True)),
                  d=case.arg("d", (2, 5), reject=(1, 0, True)),
                  seed=case.arg("seed", (0, 1), reject=(-1, True)),
                  dtype=case.arg("dtype", ("float64", "float32"), reject=("float16", None)))
    return lambda: vars(data.teacher_student(**kwargs))


@entry("runner.fingerprint")
def fingerprint(case):
    value = case.arg("value", ({"a": 1, "b": [1.0, 2.0]}, {"x": np.float32(0.5), "y": np.arange(3)}, [NAN, INF]),
                     reject=({"f": object()},), aliases=("config",))
    return lambda: runner.fingerprint(value)


def _results_file(case, folder):
    """results.jsonl in a drawn state: good rows, a torn tail, a garbage line, non-UTF-8, a directory, ..."""
    path = os.path.join(folder, runner.RESULTS)
    good_rows = b'{"run_key": "a", "x": 1}\n{"run_key": "b", "x": 2}\n'
    state = case.arg("results.jsonl", ("rows", "torn", "absent", "empty"),
                     reject=("garbage", "non_utf8", "directory", "list_row"), aliases=(path, runner.RESULTS))
    if state == "directory":
        os.mkdir(path)
    elif state != "absent":
        content = {"rows": good_rows, "torn": good_rows + b'{"run_key": "c", "x', "empty": b"",
                   "garbage": good_rows + b"not json\n", "non_utf8": good_rows + b'{"x": "\xff"}\n',
                   "list_row": good_rows + b"[1, 2]\n"}[state]
        with open(path, "wb") as handle:
            handle.write(content)
    return path


@entry("runner.read_results")
def read_results(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = _results_file(case, folder)
    return lambda: runner.read_results(path)


@entry("runner.prepare")
def prepare(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = _results_file(case, folder)
    config_path = os.path.join(folder, runner.CONFIG)
    sweep = {"n": 3}
    stored = case.arg("config.json", ("same", "absent_if_no_results"),
                      reject=("list", "broken", "directory", "other"), aliases=(config_path, runner.CONFIG))
    if stored == "same":
        with open(config_path, "w") as handle:
            json.dump({"fingerprint": runner.fingerprint(sweep), "config": sweep}, handle)
    elif stored == "list":
        with open(config_path, "w") as handle:
            json.dump([1, 2], handle)
    elif stored == "broken":
        with open(config_path, "w") as handle:
            handle.write("{broken")
    elif stored == "directory":
        os.mkdir(config_path)
    elif stored == "other":
        with open(config_path, "w") as handle:
            json.dump({"fingerprint": "0" * 16, "config": {"n": 4}}, handle)
    elif os.path.isfile(path) and os.path.getsize(path) > 0:
        case.must_reject, case.bad = True, (config_path, runner.CONFIG, runner.RESULTS, path)
    return lambda: runner.prepare(folder, sweep)
