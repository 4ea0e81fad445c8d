"""Fuzz cases for the Python API of ``compare``: data loading, the teacher–student task and the sweep runner's
files (results.jsonl / config.json in every state a crash, a full disk or a hand edit can leave)."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from hypothesis import strategies as st

from compare import data
from compare import sweep
from tests.fuzz.harness import registry
from tests.fuzz.inputs import INF, NAN

ENTRIES, entry = registry()


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


@entry("sweep.fingerprint")
def fingerprint(case):
    value = case.arg("value", ({"a": 1, "b": [1.0, 2.0]}, {"x": np.float32(0.5), "y": np.arange(3)}, [NAN, INF]),
                     reject=({"f": object()},), aliases=("config",))
    return lambda: sweep.fingerprint(value)


def _results_file(case, folder):
    """results.jsonl in a drawn state: good rows, a torn tail, a garbage line, non-UTF-8, a directory, ..."""
    path = os.path.join(folder, sweep.RESULTS)
    good_rows = b'{"run_key": "a", "x": 1}\n{"run_key": "b", "x": 2}\n'
    state = case.arg("results.jsonl", ("rows", "torn", "absent", "empty"),
                     reject=("garbage", "non_utf8", "directory", "list_row"), aliases=(path, sweep.RESULTS))
    if state == "directory":
        os.mkdir(path)
    elif state != "absent":
        content = {"rows": good_rows, "torn": good_rows + b'{"run_key": "c", "x', "empty": b"",
                   "garbage": good_rows + b"not json\n", "non_utf8": good_rows + b'{"x": "\xff"}\n',
                   "list_row": good_rows + b"[1, 2]\n"}[state]
        with open(path, "wb") as handle:
            handle.write(content)
    return path


@entry("sweep.read_results")
def read_results(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = _results_file(case, folder)
    return lambda: sweep.read_results(path)


@entry("sweep.prepare")
def prepare(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = _results_file(case, folder)
    config_path = os.path.join(folder, sweep.CONFIG)
    settings = {"n": 3}
    stored = case.arg("config.json", ("same", "absent_if_no_results"),
                      reject=("list", "broken", "directory", "other"), aliases=(config_path, sweep.CONFIG))
    if stored == "same":
        with open(config_path, "w") as handle:
            json.dump({"fingerprint": sweep.fingerprint(settings), "config": settings}, handle)
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
        case.must_reject, case.bad = True, (config_path, sweep.CONFIG, sweep.RESULTS, path)
    has_rows = os.path.isfile(path) and os.path.getsize(path) > 0
    if stored in ("list", "broken", "other") and not has_rows and case.bad[0] == "config.json":
        case.must_reject = False   # nothing saved yet: a fresh config.json replaces the stale one
    return lambda: sweep.prepare(folder, settings)


def _nap(config):
    return {"value": config["x"] * 2}


@entry("sweep.run_sweep")
def run_sweep(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    configs = case.arg("configs", ([{"x": 1}, {"x": 2}],), reject=([], [{"x": 1}, {"x": 1}], [{"f": object()}]),
                       aliases=("config", "runs"))
    jobs = case.arg("jobs", (1,), reject=(0, -2, True, 1.5))
    backend = case.arg("backend", ("loky",), reject=("threads", None, "dask"), aliases=("scheduler",))
    out = case.arg("out_dir", (folder, os.path.join(folder, "sub")), reject=(os.path.join(folder, "file"),),
                   aliases=("--out",))
    with open(os.path.join(folder, "file"), "w") as handle:
        handle.write("x")
    return lambda: sweep.run_sweep(_nap, configs, out, {"n": 1}, jobs=jobs, backend=backend, progress=False)


@entry("sweep.append_row")
def append_row(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = case.arg("path", (os.path.join(folder, sweep.RESULTS),), reject=(folder,), aliases=(folder,))
    row = case.arg("row", ({"x": 1, "y": [NAN, 2.0]}, {"z": np.float32(1.5)}), reject=({"f": object()},),
                   aliases=("config",))
    return lambda: sweep.append_row(path, row)


@entry("overrides.parse_override")
def parse_override(case):
    from compare.experiments import equivalence
    from compare.overrides import parse_override
    key = case.draw(st.sampled_from(sorted(equivalence.PRESETS["quick"].settings)))
    text = case.arg(key, ("1", "[1, 2]", "0.5", "float32", "True", "None"),
                    reject=("abc", "nan", "-1", "1e999", "[]", "[True]"), aliases=("--set", "KEY"))
    # a "good" text may still not fit this key (e.g. "[1, 2]" for steps): a clear error naming the key is fine
    return lambda: parse_override(f"{key}={text}", equivalence.PRESETS)


@entry("data.standardize_train_test")
def standardize(case):
    rng = np.random.default_rng(case.draw(st.integers(0, 99)))
    train = case.arg("train", (rng.standard_normal((5, 3)), np.ones((4, 3))), bad=(rng.standard_normal((5, 3)) * 1e300,))
    return lambda: data.standardize_train_test(train, train[:2], (0,))


@entry("data.stratified_indices")
def stratified(case):
    y = np.array([0, 0, 1, 1, 1, 2])
    n = case.arg("n", (1, 3, 6), reject=(0, 7, -1, True))
    return lambda: data.stratified_indices(y, n, np.random.default_rng(0))


@entry("sweep.read_config")
def read_config(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = os.path.join(folder, sweep.CONFIG)
    content = case.arg("config.json", (b'{"fingerprint": "ab", "config": {}}',),
                       reject=(b"[1]", b"{", b"\xff", b'{"fingerprint": 3}'), aliases=(path,))
    with open(path, "wb") as handle:
        handle.write(content)
    return lambda: sweep.read_config(path)


@entry("sweep.drop_torn_tail")
def drop_torn_tail(case):
    folder = tempfile.mkdtemp(prefix="lazykit-fuzz-")
    path = _results_file(case, folder)
    return lambda: (sweep.drop_torn_tail(path), sweep.read_results(path))[1]


@entry("data.first_per_class")
def first_per_class(case):
    y = np.array([0, 1, 0, 1, 2])
    k = case.arg("k", (1, 2), reject=(0, -1, True, 1.5))
    return lambda: data.first_per_class(y, k)


@entry("cli.main")
def cli_main(case):
    """Command lines that must stop before running anything: each bad option gives exit status 2 (or 0 for
    --help) with one error line."""
    from compare import cli
    argv = case.arg("argv", (["--help"], ["bench", "--help"]),
                    reject=(["nosuch"], ["equivalence", "--set", "n_train=abc"], ["equivalence", "--jobs", "0"],
                            ["equivalence", "--set", "steps=-1"], ["bench", "nosuch"], ["equivalence", "--seeds", "0"],
                            ["equivalence", "--dataset", "mnist"], ["equivalence", "--preset", "huge"]),
                    aliases=("--set", "jobs", "--seeds", "dataset", "preset", "benchmark", "experiment"))

    def call():
        import contextlib
        import io
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(list(argv))
            except SystemExit as exc:   # argparse refuses an option: exit status 2, usage on stderr
                code = exc.code
        if code not in (0, None):
            raise ValueError(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {code}")
        return code
    return call
