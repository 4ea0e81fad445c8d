"""compare.bench.gram: the Fashion-MNIST end-to-end benchmark runs at a tiny size on stand-in IDX files."""
import gzip
import os
import signal

import numpy as np
import pytest

pytest.importorskip("zarr")

from compare.bench import gram as bench  # noqa: E402


def _idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return gzip.compress(header + array.tobytes())


def _write_fashion(folder, n_train=60, n_test=30):
    """Images whose class c has a bright 4×4 square at row 2c on a noisy background: easy to classify."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 4, 10:14] = 255
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(images))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(labels))


def test_tiny_run_prints_ours_and_the_peer_at_equal_n(tmp_path, capsys, monkeypatch):
    _write_fashion(tmp_path)
    monkeypatch.setattr(bench, "_fresh_process", lambda function, *args: function(*args))   # keep it fast
    store = tmp_path / "stores"
    assert bench.main(["--n", "40", "--n-test", "20", "--sklearn-n", "30", "--tile", "16", "--alpha", "0.01",
                       "--store", str(store), "--data-dir", str(tmp_path), "--extrapolate", "60000"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "test accuracy" not in line]
    assert len(rows) == 3
    assert "| 40 " in rows[0] and "6 tiles" in rows[0] and "cholesky" in rows[0]      # ceil(40/16) = 3: 6 tiles
    assert "| 30 " in rows[1] and "| 30 " in rows[2] and "KernelRidge" in rows[1]
    # the classes are separable: every run classifies all 20 test images, the peer included
    assert all("100.00%" in row for row in rows[:3])
    assert "No extrapolation to n = 60000: below n = 10000" in out
    assert store.is_dir() and not list(store.iterdir())          # the run's stores removed, the folder kept


def test_largest_sklearn_n_solves_the_memory_budget():
    # 24·n² + 8·n·10⁴ = 0.8·20 GiB = 1.718e10 bytes at n = 25,138 (the positive root), rounded down to 25,000
    assert bench.largest_sklearn_n(10000, 20 * 2 ** 30) == 25000


def test_bad_arguments_are_refused(capsys):
    assert bench.main(["--n", "1"]) == 2
    assert bench.main(["--n", "100", "--sklearn-n", "200"]) == 2
    assert "--sklearn-n must be 0 (skip) or between 2 and --n=100" in capsys.readouterr().out


def test_a_peer_that_dies_is_reported_and_retried_smaller(tmp_path, capsys, monkeypatch):
    # KernelRidge's process dies at the memory-sized n (here min(--n, ...) = 40): the row says so, and the peer
    # runs again at int(0.85·40) = 34 points, where ours runs too
    _write_fashion(tmp_path)

    def fresh(function, *args):
        if function is bench.run_sklearn and args[0] == 40:
            raise bench.ProcessDied(-11)                     # as a segfault inside LAPACK ends it
        return function(*args)
    monkeypatch.setattr(bench, "_fresh_process", fresh)
    assert bench.main(["--n", "40", "--n-test", "20", "--tile", "16", "--alpha", "0.01", "--store",
                       str(tmp_path / "s"), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "test accuracy" not in line]
    assert "| 40 " in rows[1] and "the process crashed (SIGSEGV)" in rows[1] and "KernelRidge" in rows[1]
    assert "| 34 " in rows[2] and "KernelRidge" in rows[2] and "100.00%" in rows[2]
    assert "| 34 " in rows[3] and "lazykit" in rows[3]
    assert "its process died there, so it ran at n = 34" in out


def test_a_process_that_dies_is_reported_by_its_signal():
    # a real child process: SIGKILL (what the kernel's out-of-memory killer sends) comes back as ProcessDied
    with pytest.raises(bench.ProcessDied, match=r"killed \(SIGKILL, e.g. out of memory\)"):
        bench._fresh_process(_kill_self, signal.SIGKILL)
    assert bench._fresh_process(abs, -3) == 3
    assert bench.died_how(-11) == "crashed (SIGSEGV)" and bench.died_how(1) == "exited with code 1"


def _kill_self(sig):
    os.kill(os.getpid(), sig)
