"""Numerical edges of the kernels: correlations kept in [−1, 1], PSD at any depth, large and tiny inputs,
half precision, invalid hyperparameters, and the degenerate cases of the LOO errors and NTK drift."""
import math
import warnings

import numpy as np
import pytest
import torch

import kernels
from kernels.solve.ridge import EigenPath, GramWarning
from kernels.validation import KernelOverflowError

EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def _relative_min_eigenvalue(K):
    e = np.linalg.eigvalsh(np.asarray(K, dtype=np.float64))
    return e[0] / e[-1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_duplicate_rows_deep(activation, dtype, rng):
    """Issue 12's case: 20 rows, 10 of them duplicates, depth 100. A duplicate pair's cross term equals the
    diagonal to rounding (the cross term starts from a matrix product, the diagonal from a sum of squares; the
    clamped correlation stops the excess from growing: measured 4e-15 relative in float64), and the Gram
    matrices are PSD to float precision: λ_min ≥ −n·eps·λ_max (was −0.39 for the float32 erf NNGP, and the
    NTK was NaN)."""
    base = rng.standard_normal((10, 8))
    X = np.concatenate([base, base]).astype(dtype)
    K, T = kernels.FullyConnected(depth=100, activation=activation, dtype=dtype).kernels(X)
    for M in (K, T):
        assert np.all(np.isfinite(M))
        np.testing.assert_allclose(M[:10, 10:].diagonal(), M.diagonal()[:10], rtol=max(100 * EPS["float64"],
                                                                                         2 * EPS[dtype]))
        assert _relative_min_eigenvalue(M) >= -20 * EPS[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["erf", "relu", "abs"])
def test_near_duplicates_psd_tolerance(activation, dtype, rng):
    """The promise in docs/analytic.md (Numerics): λ_min ≥ −depth·√eps(float64)·λ_max for near-identical inputs (rows 1e-9 apart,
    where k12 ≈ √(k11·k22) and the angle θ = atan2(√(k11k22 − k12²), k12) carries a √eps rounding error);
    float32 on the CPU is accumulated in float64, so it meets the same bound plus its final rounding n·eps32.
    Measured worst cases at depth 100: −4.7·√eps (ReLU NTK), −0.6·√eps (erf NTK) in float64."""
    base = rng.standard_normal((5, 8))
    X = np.concatenate([base + 1e-9 * rng.standard_normal(base.shape) for _ in range(4)]).astype(dtype)
    depth = 100
    K, T = kernels.FullyConnected(depth=depth, activation=activation, dtype=dtype,
                                  w_std=1.0 if activation == "abs" else 2 ** 0.5).kernels(X)
    bound = depth * math.sqrt(EPS["float64"]) + len(X) * EPS[dtype]
    for M in (K, T):
        assert _relative_min_eigenvalue(M) >= -bound


def test_correlation_clamp_in_duals():
    """A cross term past Cauchy–Schwarz (k12 = 1.0000001 with k11 = k22 = 1) is treated as ρ = 1: the erf
    NNGP then equals its diagonal (2/π)·asin(2/3), not (2/π)·asin(1) = 1 (issue 12: 2.0 vs 0.88 after w² = 2)."""
    from kernels.analytic.duals import get_dual
    d = get_dual("erf")
    one = np.ones(1)
    assert d.nngp(np.array([1.0000001]), one, one)[0] == d.nngp(one, one, one)[0] == pytest.approx(
        2 / math.pi * math.asin(2 / 3), rel=1e-15)
    assert d.ntk(np.array([1.0000001]), one, one)[0] == pytest.approx(4 / math.pi / math.sqrt(5), rel=1e-15)


@pytest.mark.parametrize("dtype, power", [("float64", 500), ("float64", -500), ("float32", 60), ("float32", -60)])
def test_relu_kernels_scale_exactly(dtype, power, rng):
    """ReLU without bias: K(2^p·x, 2^p·x') = 4^p·K(x, x') bit for bit (power-of-two rescaling is exact), where
    the plain recursion overflowed to NaN from |x| ≈ 2e77 (float64) / 2e10 (float32)."""
    X = rng.standard_normal((6, 4)).astype(dtype)
    k = kernels.FullyConnected(depth=3, b_std=None, dtype=dtype)
    big = (X.astype(np.float64) * 2.0 ** power).astype(dtype)
    expected = [(2.0 ** (2 * power) * M.astype(np.float64)).astype(dtype) for M in k.kernels(X)]
    for got, want in zip(k.kernels(big), expected):
        np.testing.assert_array_equal(got, want)


def test_large_inputs_overflow_is_named(rng):
    """Non-homogeneous kernels refuse inputs whose ‖x‖²/d passes √max (1.3e154 in float64) naming x1 and the
    limit; ReLU kernels whose output itself overflows say so too; RBF returns the right limit 0 off-diagonal."""
    X = rng.standard_normal((4, 3))
    with pytest.raises(KernelOverflowError, match=r"x1 is too large .* below 1.3e\+154"):
        kernels.FullyConnected(activation="erf").ntk(X * 1e160)
    with pytest.raises(KernelOverflowError, match="overflowed float64"):
        kernels.FullyConnected().ntk(X * 1e300)        # K ~ 1e600
    with pytest.raises(KernelOverflowError, match="coef0"):
        kernels.Polynomial()(X * 1e200)
    K = kernels.RBF()(X * 1e300)
    np.testing.assert_array_equal(K, np.eye(4))


def test_estimator_on_large_inputs(rng):
    """NTKRegressor: prediction at X·2^990 is 2^990 times the prediction at X (the NTK of ReLU without bias is
    degree-1 homogeneous in each argument, and power-of-two rescaling is exact); at X·1e300 it is finite, no
    longer all NaN. An erf model names X when it overflows."""
    X, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    model = kernels.NTKRegressor(b_std=None).fit(X, y)
    np.testing.assert_allclose(model.predict(X * 2.0 ** 990), 2.0 ** 990 * model.predict(X), rtol=1e-14)
    assert np.all(np.isfinite(model.predict(X * 1e300)))
    with pytest.raises(KernelOverflowError, match="^X is out of range"):
        kernels.NTKRegressor(activation="erf").fit(X * 1e160, y)


def test_half_precision_is_computed_in_float32(rng):
    """float16 (NumPy) and bfloat16 (torch, which DLPack cannot carry) are upcast exactly to float32."""
    X = rng.standard_normal((5, 3))
    k = kernels.FullyConnected(depth=2)
    half, bf16 = X.astype(np.float16), torch.tensor(X).to(torch.bfloat16)
    np.testing.assert_array_equal(k.ntk(half), k.ntk(half.astype(np.float32)))
    out = k.ntk(bf16)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), k.ntk(bf16.float().numpy()))
    assert kernels.RBF()(half).dtype == np.float32


@pytest.mark.parametrize("make, name", [
    (lambda: kernels.RBF(gamma=math.inf), "gamma"), (lambda: kernels.Laplace(gamma=math.inf), "gamma"),
    (lambda: kernels.Polynomial(coef0=math.nan), "coef0"), (lambda: kernels.FullyConnected(w_std=1e200), "w_std"),
    (lambda: kernels.FullyConnected(activation="leaky_relu", negative_slope=1e308), "negative_slope"),
    (lambda: kernels.FullyConnected(negative_slope=math.nan), "negative_slope"),
    (lambda: kernels.FullyConnected(w_std=True), "w_std"), (lambda: kernels.FullyConnected(n_jobs=True), "n_jobs"),
    (lambda: kernels.Convolutional(memory_budget=True), "memory_budget"),
    (lambda: kernels.NTKFeatures(w_std=1e200).fit(np.ones((2, 2))), "w_std"),
])
def test_invalid_hyperparameters_are_named(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_loo_errors_degenerate_grams():
    """LOO errors stay finite with a GramWarning. K = I except K_00 = 0, y = (0, 1, 2, 3), α = 0: sample 0 has
    G_00 = 0, so its residual is y_0 − f(x_0) = 0; the others leave out a sample the identity kernel cannot
    predict (residual y_i): mean(0, 1, 4, 9) = 3.5. K = 0 and K = −I predict 0 everywhere: mean(y²) = 3.5."""
    y = np.arange(4.0)
    K = np.eye(4)
    K[0, 0] = 0.0
    for gram in (K, np.zeros((4, 4)), -np.eye(4)):
        with pytest.warns(GramWarning):
            errors = EigenPath(gram).loo_errors(y, [0.0])
        np.testing.assert_allclose(errors, [3.5], rtol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # a healthy K warns about nothing
        EigenPath(np.eye(4) * 2).loo_errors(y, [0.0, 1.0])


def test_solver_arguments_are_named():
    path = EigenPath(np.eye(3))
    with pytest.raises(ValueError, match="alphas is empty"):
        path.dual_coefs(np.ones(3), [])
    with pytest.raises(TypeError, match="alphas must be a non-empty sequence"):
        path.dual_coefs(np.ones(3), 0.1)
    with pytest.raises(ValueError, match="K must be symmetric"):
        kernels.solve.ridge.krr_solve(np.triu(np.ones((3, 3))), np.ones(3))
    with pytest.raises(ValueError, match="K must be symmetric"):
        EigenPath(np.triu(np.ones((3, 3))))
    X, y = np.random.default_rng(0).standard_normal((5, 2)), np.ones(5)
    for kwargs, name in ((dict(block_size=0), "block_size"), (dict(tol=-1.0), "tol"), (dict(tol=math.nan), "tol"),
                         (dict(max_iter=0), "max_iter")):
        with pytest.raises(ValueError, match=name):
            kernels.solve.ridge.nystrom_krr("rbf", X, y, 0.1, 3, **kwargs)
    model = kernels.solve.ridge.nystrom_krr("rbf", X, y, 0.1, 5)      # a kernel name works like kernels.RBF()
    np.testing.assert_allclose(model.predict(X), kernels.solve.ridge.nystrom_krr(kernels.RBF(), X, y, 0.1, 5).predict(X))


def test_estimator_targets_are_named():
    X = np.random.default_rng(0).standard_normal((6, 2))
    with pytest.raises(ValueError, match="y must hold real numbers"):
        kernels.NTKRegressor().fit(X, np.array(["a"] * 6))
    with pytest.raises(ValueError, match="single class"):
        kernels.NTKClassifier().fit(X, np.zeros(6))
    with pytest.raises(ValueError, match="X and y must have the same number of samples, got 6 and 5"):
        kernels.KernelRegressor().fit(X, np.zeros(5))
    with pytest.raises(TypeError, match="x1 must be a numeric array"):
        kernels.empirical_ntk(torch.nn.Linear(2, 1), np.array([[1, "a"]], dtype=object))
