"""Exact NTK regression on all of Fashion-MNIST, end to end: ``python -m compare bench gram``.

``python -m compare bench gram [--n 60000] [--n-test 10000] [--store DIR] [--sklearn-n N] [--repeats 1]``

Ours: the depth-3 ReLU fully connected NTK (``FullyConnected(depth=3)``, NTK parameterization, w_std = √2,
no bias) of the flattened, standardised training images, in float32, computed by ``kernels.gram`` in tiles
into a zarr store under ``--store``; ``kernels.solve.stored.solve_stored`` solves (K + αI)c = Y (one-hot
targets; in-memory float32 Cholesky with float64 refinement when K fits in memory, else streaming CG);
test outputs K(x*, X)·c slab by slab; accuracy = argmax against the labels. Peer: scikit-learn
``KernelRidge(kernel="precomputed")`` on the same kernel in float64 (the Gram matrices computed in memory by
``kernels.FullyConnected``, then ``fit`` and ``predict``) at the largest n it fits here: it holds K, its own
copy of K (``KernelRidge.fit`` copies a precomputed K) and the copy ``scipy.linalg.solve(..., overwrite_a=False)``
factorises, 24·n² bytes, plus K(x*, X), so n = the largest multiple of 1000 with 24·n² + 8·n·n_test ≤ 80% of
the available memory (``--sklearn-n`` overrides; 0 skips the peer). At that n ours runs too, on the same
subset: same accuracy, both times. A measurement whose process dies (killed for memory, or a crash inside
LAPACK) is reported as such, and the peer is then retried at 15% fewer points until it runs.

Each measurement runs in a fresh process (its peak resident memory is that process's own); ``--repeats``
fresh runs give the median time and the largest peak. The store is deleted before each of our runs, so the
Gram matrix is always computed (``--keep-store`` keeps the last one). Disk: the store of n points takes
about ceil(n/tile)·(ceil(n/tile)+1)/2 tiles of 4·tile² bytes (8 GB for n = 60,000, tile 4096).
The table ends with our phases extrapolated to ``--extrapolate`` points (default 60,000) from the measured
times (from --n >= 10000 only): Gram ∝ n², solve ∝ n³ (an upper bound: its n² parts grow slower),
prediction ∝ n·n_test.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import signal
import statistics
import time
from pathlib import Path

import numpy as np

from compare.bench.harness import format_seconds, format_table, machine_info

KERNEL = dict(depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.0)
PREDICT_ROWS = 512           # test rows per K(x*, X) slab
MIN_EXTRAPOLATE = 10000      # below this n the phases' fixed costs swamp their n² and n³ terms


def _parser():
    parser = argparse.ArgumentParser(prog="python -m compare bench gram", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60000, help="training images (default: all 60000)")
    parser.add_argument("--n-test", type=int, default=10000, help="test images (default: all 10000)")
    parser.add_argument("--tile", type=int, default=4096, help="Gram tile size (default 4096)")
    parser.add_argument("--alpha", type=float, default=0.1, help="ridge α of (K + αI)c = Y (default 0.1: at n = 3000 "
                        "the test accuracy is the same for α from 0 to 0.1, and it keeps κ(K + αI) below ~2e6)")
    parser.add_argument("--store", default="gram-bench-store", help="directory for the Gram stores "
                        "(default ./gram-bench-store; needs ~8 GB for n = 60000)")
    parser.add_argument("--sklearn-n", type=int, default=None, help="n for the KernelRidge side by side (default: "
                        "the largest that fits in memory here, at most --n; 0: skip it)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh runs per measurement (default 1: one "
                        "60k run takes tens of minutes)")
    parser.add_argument("--extrapolate", type=int, default=60000, help="extrapolate our phases to this n")
    parser.add_argument("--data-dir", default=None, help="folder holding the Fashion-MNIST files")
    parser.add_argument("--keep-store", action="store_true", help="keep the last store instead of deleting it")
    parser.add_argument("--progress", action="store_true", help="show the Gram progress bar of the main run")
    return parser


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB


def _load(n, n_test, dtype, data_dir):
    from compare import data
    d = data.load("fashion-mnist", n_train=n, n_test=n_test, flatten=True, dtype=dtype, data_dir=data_dir)
    onehot = np.zeros((d.n_train, d.n_classes))
    onehot[np.arange(d.n_train), d.y_train] = 1.0
    return d.X_train, onehot, d.X_test, d.y_test


def run_ours(n, n_test, tile, alpha, store, data_dir, progress=False) -> dict:
    """Gram into a store, stored solve, blocked prediction; phase times, accuracy, peak memory."""
    from kernels import FullyConnected, gram, solve_stored
    start = time.perf_counter()
    X, Y, X_test, y_test = _load(n, n_test, "float32", data_dir)
    kernel = FullyConnected(**KERNEL)
    path = Path(store)
    shutil.rmtree(path, ignore_errors=True)
    loaded = time.perf_counter()
    K = gram(kernel, X, tile=tile, store=path, progress=progress)
    gram_done = time.perf_counter()
    solution = solve_stored(K, Y, alpha)
    solved = time.perf_counter()
    outputs = np.concatenate([kernel.ntk(X_test[i:i + PREDICT_ROWS], X).astype(np.float64) @ solution.coef
                              for i in range(0, len(X_test), PREDICT_ROWS)])
    end = time.perf_counter()
    return {"data": loaded - start, "gram": gram_done - loaded, "solve": solved - gram_done,
            "predict": end - solved, "total": end - start, "accuracy": float(np.mean(outputs.argmax(1) == y_test)),
            "peak": _peak_bytes(), "tiles": K.tiles_total,
            "detail": f"{solution.method}, {solution.n_iter} it., residual {solution.residual:.1e}"}


def run_sklearn(n, n_test, alpha, data_dir) -> dict:
    """KernelRidge(kernel="precomputed") on the float64 NTK Gram matrices computed in memory."""
    from sklearn.kernel_ridge import KernelRidge

    from kernels import FullyConnected
    start = time.perf_counter()
    X, Y, X_test, y_test = _load(n, n_test, "float64", data_dir)
    kernel = FullyConnected(**KERNEL)
    loaded = time.perf_counter()
    K = kernel.ntk(X)
    gram_done = time.perf_counter()
    model = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, Y)
    del K
    solved = time.perf_counter()
    outputs = model.predict(kernel.ntk(X_test, X))
    end = time.perf_counter()
    return {"data": loaded - start, "gram": gram_done - loaded, "solve": solved - gram_done,
            "predict": end - solved, "total": end - start, "accuracy": float(np.mean(outputs.argmax(1) == y_test)),
            "peak": _peak_bytes(), "tiles": None, "detail": "float64, LAPACK via scipy"}


class ProcessDied(RuntimeError):
    """A measurement's process ended without a result; ``how`` says by which signal or exit code."""

    def __init__(self, exitcode):
        self.how = died_how(exitcode)
        super().__init__(self.how)


def died_how(exitcode) -> str:
    """'crashed (SIGSEGV)', 'killed (SIGKILL, e.g. out of memory)' or 'exited with code N'."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"killed ({name}, e.g. out of memory)" if name == "SIGKILL" else f"crashed ({name})"
    return f"exited with code {exitcode}"


def _child(connection, function, args):
    try:
        connection.send(("ok", function(*args)))
    except BaseException as error:   # noqa: BLE001  handed back to the parent, which re-raises it
        connection.send(("error", error))


def _fresh_process(function, *args) -> dict:
    """``function(*args)`` in a new (spawned) process; ``ProcessDied`` when it ends without a result."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        kind, value = receiver.recv()
    except EOFError:
        process.join()
        raise ProcessDied(process.exitcode) from None
    process.join()
    if kind == "error":
        raise value
    return value


def _measure(function, args, repeats) -> dict:
    """Median phases of ``repeats`` fresh runs (printed at once), or {"died": how} when a run's process died."""
    try:
        runs = [_fresh_process(function, *args) for _ in range(repeats)]
    except ProcessDied as died:
        print(f"{function.__name__} at n = {args[0]}: the process {died.how}", flush=True)
        return {"died": died.how}
    summary = {key: statistics.median(r[key] for r in runs) for key in ("data", "gram", "solve", "predict", "total")}
    summary.update(accuracy=runs[-1]["accuracy"], peak=max(r["peak"] for r in runs), detail=runs[-1]["detail"],
                   tiles=runs[-1]["tiles"])
    print(f"{function.__name__} at n = {args[0]}: " + ", ".join(f"{k} {format_seconds(summary[k])}" for k in
          ("data", "gram", "solve", "predict", "total")) + f"; peak {_gib(summary['peak'])}, accuracy "
          f"{100 * summary['accuracy']:.2f}% ({summary['detail']})", flush=True)
    return summary


def largest_sklearn_n(n_test: int, available: int) -> int:
    """Largest multiple of 1000 with 24·n² + 8·n·n_test ≤ 0.8·available (K, KernelRidge's copy, the copy that
    scipy's solve factorises, K(x*, X))."""
    budget = 0.8 * available
    n = int((-8 * n_test + (64 * n_test ** 2 + 96 * budget) ** 0.5) / 48)
    return max(1000, n // 1000 * 1000)


def extrapolate(row: dict, n: int, n_test: int, to_n: int, to_test: int) -> dict:
    """Our phases scaled to (to_n, to_test): Gram ∝ n², solve ∝ n³ (factorisation dominates), predict ∝ n·n_test."""
    d, g, s, p = (row["data"], row["gram"] * (to_n / n) ** 2, row["solve"] * (to_n / n) ** 3,
                  row["predict"] * (to_n * to_test) / (n * n_test))
    return {"data": d, "gram": g, "solve": s, "predict": p, "total": d + g + s + p}


def _gib(b) -> str:
    return f"{b / 2 ** 30:.2f} GiB"


def _row(name, n, r):
    if "died" in r:
        return [name, n] + ["-"] * 7 + [f"the process {r['died']}"]
    return [name, n, format_seconds(r["data"]), format_seconds(r["gram"]), format_seconds(r["solve"]),
            format_seconds(r["predict"]),
            format_seconds(r["total"]), _gib(r["peak"]) if "peak" in r else "-",
            f"{100 * r['accuracy']:.2f}%" if "accuracy" in r else "-", r.get("detail", "extrapolated")]


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.n < 2 or args.n_test < 1 or args.tile < 1 or args.repeats < 1 or args.alpha < 0:
        print("error: --n must be >= 2, --n-test, --tile and --repeats >= 1, --alpha >= 0")
        return 2
    if args.sklearn_n is not None and args.sklearn_n != 0 and not 2 <= args.sklearn_n <= args.n:
        print(f"error: --sklearn-n must be 0 (skip) or between 2 and --n={args.n}")
        return 2
    from kernels import available_memory
    available = available_memory()
    sklearn_n = args.sklearn_n if args.sklearn_n is not None else min(args.n, largest_sklearn_n(args.n_test,
                                                                                                 available))
    print(f"machine: {machine_info()}; {_gib(available)} memory available")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Fashion-MNIST, depth-3 ReLU FC NTK, "
          f"alpha = {args.alpha:g}, {args.n_test} test images, tile {args.tile}; median of {args.repeats} fresh "
          "process(es); peak = the process's maximum resident memory")
    store = Path(args.store)
    rows = []
    ours = _measure(run_ours, (args.n, args.n_test, args.tile, args.alpha, store / f"n{args.n}", args.data_dir,
                               args.progress), args.repeats)
    rows.append(_row(f"lazykit (store, {ours.get('tiles', '?')} tiles, float32)", args.n, ours))
    fitted_n = sklearn_n                          # where the peer ran: smaller when its process died
    if sklearn_n:
        peer = _measure(run_sklearn, (fitted_n, args.n_test, args.alpha, args.data_dir), args.repeats)
        while "died" in peer and args.sklearn_n is None and fitted_n > 2:   # died: retry 15% smaller
            rows.append(_row("sklearn KernelRidge(kernel='precomputed')", fitted_n, peer))
            fitted_n = int(0.85 * fitted_n)
            fitted_n = fitted_n // 1000 * 1000 if fitted_n >= 1000 else max(2, fitted_n)
            peer = _measure(run_sklearn, (fitted_n, args.n_test, args.alpha, args.data_dir), args.repeats)
        rows.append(_row("sklearn KernelRidge(kernel='precomputed')", fitted_n, peer))
        if fitted_n == args.n:
            ours_small = ours
        else:
            ours_small = _measure(run_ours, (fitted_n, args.n_test, args.tile, args.alpha,
                                             store / f"n{fitted_n}", args.data_dir), args.repeats)
            rows.append(_row(f"lazykit (store, {ours_small.get('tiles', '?')} tiles, float32)",
                             fitted_n, ours_small))
    note = ""
    if args.extrapolate and args.extrapolate != args.n:
        if args.n >= MIN_EXTRAPOLATE and "died" not in ours:
            rows.append(_row("lazykit, extrapolated", args.extrapolate,
                             extrapolate(ours, args.n, args.n_test, args.extrapolate, 10000)))
        else:
            note = (f"\nNo extrapolation to n = {args.extrapolate}: below n = {MIN_EXTRAPOLATE} fixed costs, not the "
                    "n² and n³ terms, dominate the phases.")
    if not args.keep_store:                       # only the stores this run made; --store itself stays
        for n in {args.n, fitted_n}:
            shutil.rmtree(store / f"n{n}", ignore_errors=True)
    print(format_table(["", "n", "data", "Gram", "solve", "predict", "total", "peak memory", "test accuracy",
                        "solver"],
                       rows))
    print(note)
    if sklearn_n:
        print(f"KernelRidge tried at n = {sklearn_n}: " + ("the largest multiple of 1000 with 24·n² + 8·n·n_test "
              f"bytes within 80% of the {_gib(available)} available" if args.sklearn_n is None else "as given")
              + ("" if fitted_n == sklearn_n else f"; its process died there, so it ran at n = {fitted_n} "
                 "(15% smaller each time)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
