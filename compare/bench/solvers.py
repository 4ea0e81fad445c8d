"""Solver benchmark: ``python -m compare bench solvers [--sizes 2000 5000 10000] [--repeats 5]``.

Three tables, each measured against scikit-learn in the same run (median of ``--repeats`` after one warm-up):

1. exact KRR: ``kernels.solve.ridge.krr_solve`` vs ``KernelRidge(kernel="precomputed").fit`` on the same RBF Gram
   matrix (float64, 10 targets), run in turn within each repeat (fair under drifting load), with the largest
   relative difference of the dual coefficients;
2. ridge path: one ``EigenPath`` serving 20 ridges vs one Cholesky solve (ours) and vs 20 KernelRidge fits;
3. random Fourier features: ``RandomFeaturesRegressor`` vs ``RBFSampler`` + ``Ridge`` at several feature
   counts, test error and fit+predict time, so equal-error points can be read off.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from compare.bench.harness import Timing, format_seconds, format_table, machine_info, measure, ratio


# gpu-check runs: KRR on the GPU next to the CPU peer, ridge path on the GPU, a short random-features table


def _parser():
    parser = argparse.ArgumentParser(prog="python -m compare bench solvers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000],
                        help="training-set sizes n for the KRR and ridge-path tables (default: 2000 5000 10000)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the GPU column and the ridge path run: cuda adds CuPy timings and runs the "
                             "path on the GPU (default auto: the GPU when CuPy sees one)")
    parser.add_argument("--targets", type=int, default=10, help="number of regression targets (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    parser.add_argument("--alpha", type=float, default=1e-3, help="ridge for the KRR table (default 1e-3)")
    parser.add_argument("--features", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000],
                        help="feature counts for the random-features table")
    parser.add_argument("--rff-samples", type=int, default=8000, help="training samples, random features table")
    return parser


def _interleaved(functions, repeats):
    """Median time of each function, the functions run in turn within every repeat (one warm-up round).

    Interleaving keeps the comparison fair on a machine whose load drifts: each repeat sees the same load.
    A function returning a callable is a setup step; only the returned callable is timed.
    """
    times = [[] for _ in functions]
    for round_ in range(repeats + 1):
        for i, fn in enumerate(functions):
            start = time.perf_counter()
            timed = fn()
            if callable(timed):  # setup done untimed, now time the real work
                start = time.perf_counter()
                timed()
            if round_:
                times[i].append(time.perf_counter() - start)
    return [Timing(statistics.median(t), t) for t in times]


def _gpu_timing(K, Y, alpha, repeats, device):
    """krr_solve on CuPy arrays (float64, cuSOLVER), or NaN ("-" in the table) on the CPU."""
    from kernels import krr_solve
    if device != "cuda":
        return float("nan")
    import cupy
    K_gpu, Y_gpu = cupy.asarray(K), cupy.asarray(Y)
    return measure(lambda: krr_solve(K_gpu, Y_gpu, alpha), repeats, sync=cupy.cuda.Device().synchronize).median


def _relative_difference(a, reference) -> float:
    """max|a − reference| / max|reference|."""
    return float(np.abs(a - reference).max() / np.abs(reference).max())


def krr_table(sizes, n_targets, alpha, repeats, device):
    from sklearn.kernel_ridge import KernelRidge

    from kernels import RBF, EigenPath, krr_solve, to_numpy
    rng = np.random.default_rng(0)
    krr_rows, path_rows = [], []
    alphas = np.logspace(-4, 1, 20)
    for n in sizes:
        X = rng.standard_normal((n, 20))
        K, Y = RBF()(X), rng.standard_normal((n, n_targets))
        work = np.empty_like(K)

        def in_place_setup():
            np.copyto(work, K)  # untimed: the estimators factorise a Gram matrix they computed themselves
            return lambda: krr_solve(work, Y, alpha, overwrite_K=True)
        K_path, Y_path, sync = K, Y, None
        if device == "cuda":
            import cupy
            K_path, Y_path, sync = cupy.asarray(K), cupy.asarray(Y), cupy.cuda.Device().synchronize

        def path():
            return EigenPath(K_path).dual_coefs(Y_path, alphas)
        functions = [lambda: KernelRidge(alpha=alpha, kernel="precomputed").fit(K, Y), lambda: krr_solve(K, Y, alpha),
                     in_place_setup]
        peer, ours, in_place, *cpu_path = _interleaved(functions + ([path] if device == "cpu" else []), repeats)
        path_time = cpu_path[0] if cpu_path else measure(path, repeats, sync=sync)
        gpu = _gpu_timing(K, Y, alpha, repeats, device)
        reference = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, Y).dual_coef_
        coef = krr_solve(K, Y, alpha)
        difference = _relative_difference(coef, reference)
        krr_rows.append([n, n_targets, f"{alpha:g}", str(peer), str(ours), str(in_place),
                         ratio(peer.median, ours.median), ratio(peer.median, in_place.median), format_seconds(gpu),
                         ratio(peer.median, gpu), f"{difference:.1e}"])
        coefs = to_numpy(path())
        path_error = max(_relative_difference(c, krr_solve(K, Y, a)) for a, c in zip(alphas[::6], coefs[::6]))
        path_rows.append([n, len(alphas), str(path_time), str(ours), f"{path_time.median / ours.median:.1f}×",
                          f"{path_time.median / peer.median:.1f}×", format_seconds(20 * peer.median),
                          ratio(20 * peer.median, path_time.median), f"{path_error:.1e}"])
    return krr_rows, path_rows


def features_table(feature_counts, n_train, repeats):
    from sklearn.kernel_approximation import RBFSampler
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from kernels import RandomFeaturesRegressor
    rng = np.random.default_rng(1)
    d, gamma, alpha = 8, 0.1, 1e-2
    X = rng.standard_normal((n_train + 2000, d))
    y = np.sin(X @ rng.standard_normal(d) / np.sqrt(d)) + 0.5 * np.cos(X[:, 0] * X[:, 1]) \
        + 0.05 * rng.standard_normal(len(X))
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    rows = []
    for D in feature_counts:
        ours = RandomFeaturesRegressor(n_features=D, gamma=gamma, alpha=alpha, random_state=0, device="cpu")
        peer = make_pipeline(RBFSampler(gamma=gamma, n_components=D, random_state=0),
                             Ridge(alpha=alpha, fit_intercept=False))
        ours_time, peer_time = _interleaved([lambda: ours.fit(Xtr, ytr).predict(Xte),
                                             lambda: peer.fit(Xtr, ytr).predict(Xte)], repeats)
        ours_error = np.mean((ours.fit(Xtr, ytr).predict(Xte) - yte) ** 2)
        peer_error = np.mean((peer.fit(Xtr, ytr).predict(Xte) - yte) ** 2)
        rows.append([D, f"{ours_error:.4f}", f"{peer_error:.4f}", str(ours_time), str(peer_time),
                     ratio(peer_time.median, ours_time.median)])
    return rows


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if any(n < 2 for n in args.sizes) or args.repeats < 1 or args.targets < 1:
        print("error: --sizes must be >= 2, --repeats and --targets >= 1")
        return 2
    from kernels import resolve_device
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(f"machine: {machine_info()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; float64, RBF Gram of Gaussian inputs "
          f"(d = 20); median of {args.repeats} after 1 warm-up\n")
    krr_rows, path_rows = krr_table(args.sizes, args.targets, args.alpha, args.repeats, device)
    print("Exact KRR, same Gram matrix: scikit-learn KernelRidge(kernel='precomputed').fit vs "
          "kernels.solve.ridge.krr_solve (copies K) and krr_solve(overwrite_K=True) (in place, as the estimators do)")
    print(format_table(["n", "targets", "alpha", "sklearn", "ours", "ours in place", "speed-up",
                        "speed-up in place", "ours GPU f64", "speed-up GPU", "max rel. coef diff"], krr_rows))
    print(f"\nRidge path on {device}: EigenPath(K).dual_coefs(Y, 20 ridges 1e-4..10) vs one CPU solve (ours) and "
          "vs 20 KernelRidge fits")
    print(format_table(["n", "ridges", "path", "one solve (ours)", "path / one solve (ours)",
                        "path / one sklearn fit", "20 sklearn fits", "speed-up vs 20 fits",
                        "max rel. diff vs Cholesky"], path_rows))
    rows = features_table(args.features, args.rff_samples, args.repeats)
    print(f"\nRandom Fourier features, RBF γ = 0.1, ridge 1e-2, n_train = {args.rff_samples}, 2000 test points, "
          "d = 8: RandomFeaturesRegressor (sin/cos pairs) vs RBFSampler + Ridge(fit_intercept=False), fit+predict")
    print(format_table(["n_features", "test MSE ours", "test MSE sklearn", "ours", "sklearn", "speed-up"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
