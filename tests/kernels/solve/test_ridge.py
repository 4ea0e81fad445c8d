"""kernels.solve.ridge: Cholesky KRR, the eigen path (ridges, gradient-flow times, LOO), Nyström + PCG, fallbacks."""
import warnings

import numpy as np
import pytest
import scipy.linalg
from sklearn.kernel_ridge import KernelRidge

from kernels import RBF, Laplace
from kernels.solve.ridge import EigenPath, GramWarning, conjugate_gradient, krr_solve, nystrom_krr


@pytest.fixture
def problem(rng):
    """An RBF Gram matrix of 120 points in 5-D and 3 targets; smallest eigenvalue ~1e-3 (well posed)."""
    X = rng.standard_normal((120, 5))
    return X, RBF()(X), rng.standard_normal((120, 3))


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("alpha", [1e-3, 0.1, 10.0])
def test_krr_equals_kernel_ridge_precomputed(problem, alpha):
    # Same linear system (K + αI)c = y as KernelRidge(kernel="precomputed"); with cond(K + αI) ≤ ~1e5 the two
    # Cholesky solves agree to cond·eps ≈ 1e-11 relative: 1e-10 is the bound.
    X, K, Y = problem
    reference = KernelRidge(alpha=alpha, kernel="precomputed").fit(K, Y)
    coef = krr_solve(K, Y, alpha)
    assert _rel(coef, reference.dual_coef_) < 1e-10
    assert _rel(coef[:, 0], KernelRidge(alpha=alpha, kernel="precomputed").fit(K, Y[:, 0]).dual_coef_) < 1e-10
    K_test = RBF()(X[:7] + 0.1, X)
    assert _rel(K_test @ coef, reference.predict(K_test)) < 1e-10


def test_overwrite_reuses_memory_and_gives_the_same_answer(problem):
    _, K, Y = problem
    expected = krr_solve(K, Y, 0.1)
    K_copy = K.copy()
    np.testing.assert_array_equal(krr_solve(K_copy, Y, 0.1, overwrite_K=True), expected)
    assert not np.array_equal(K_copy, K)  # the factor was written into K's memory: no n×n copy was made
    np.testing.assert_array_equal(krr_solve(K, Y, 0.1), expected)  # default leaves K alone


def test_eigen_path_equals_separate_solves(problem):
    # One eigendecomposition for 6 ridges vs 6 Cholesky solves: both backward stable, cond ≤ ~1e5 → 1e-9.
    _, K, Y = problem
    alphas = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    path = EigenPath(K)
    coefs = path.dual_coefs(Y, alphas)
    assert coefs.shape == (6, 120, 3)
    for alpha, coef in zip(alphas, coefs):
        assert _rel(coef, krr_solve(K, Y, alpha)) < 1e-9
        assert _rel(path.dual_coef(Y, alpha), coef) < 1e-12
    assert path.dual_coefs(Y[:, 0], alphas).shape == (6, 120)


@pytest.mark.parametrize("t", [0.5, 20.0, 1000.0])
def test_gradient_flow_equals_matrix_exponential(problem, t):
    # f_t(X*) = K(X*, X) K⁻¹ (I − expm(−tK/n)) y, computed directly with scipy.linalg.expm
    # (docs/conventions.md, *Gradient flow and ridge*).
    X, K, Y = problem
    n = len(K)
    direct = np.linalg.solve(K, (np.eye(n) - scipy.linalg.expm(-t * K / n)) @ Y)
    K_test = RBF()(X[:9] * 0.9, X)
    ours = K_test @ EigenPath(K).dual_coef(Y, t=t)
    # predictions agree to the accuracy of K⁻¹ applied to a smooth vector (~cond·eps ≈ 1e-11 relative)
    assert _rel(ours, K_test @ direct) < 1e-8


def test_gradient_flow_with_ridge_matches_direct_and_starts_at_zero(problem):
    # With ridge α the flow is c(t) = (K+αI)⁻¹(I − expm(−t(K+αI)/n)) y; at t = 0 nothing has moved.
    _, K, Y = problem
    n, alpha, t = len(K), 0.3, 50.0
    A = K + alpha * np.eye(n)
    direct = np.linalg.solve(A, (np.eye(n) - scipy.linalg.expm(-t * A / n)) @ Y)
    path = EigenPath(K)
    assert _rel(path.dual_coef(Y, alpha=alpha, t=t), direct) < 1e-10
    np.testing.assert_array_equal(path.dual_coef(Y, t=0.0), 0.0)


def test_gradient_flow_tends_to_krr(problem):
    X, K, Y = problem
    path = EigenPath(K)
    krr = krr_solve(K, Y, 0.0)
    # the gap decays like exp(−t·λ_min/n): monotone in t, and at t = 1e3·n/λ_min it is below float rounding
    gaps = [_rel(path.dual_coef(Y, t=t), krr) for t in (1e2, 1e4, 1e6)]
    assert gaps[0] > gaps[1] > gaps[2]
    t_converged = 1e3 * len(K) / path.eigenvalues.min()
    assert _rel(path.dual_coef(Y, t=t_converged), krr) < 1e-9
    assert _rel(path.dual_coef(Y, t=np.inf), krr) < 1e-9
    assert _rel(path.dual_coef(Y, alpha=0.1, t=np.inf), krr_solve(K, Y, 0.1)) < 1e-9


def test_leave_one_out_matches_refitting(problem):
    # The closed form c_i / G_ii against n explicit refits without sample i (exact identity: 1e-9 relative).
    _, K, Y = problem
    K, Y = K[:60, :60], Y[:60]
    alphas = [1e-2, 0.1, 1.0]
    closed = EigenPath(K).loo_errors(Y, alphas)
    for alpha, value in zip(alphas, closed):
        residuals = []
        for i in range(60):
            keep = np.arange(60) != i
            c = np.linalg.solve(K[np.ix_(keep, keep)] + alpha * np.eye(59), Y[keep])
            residuals.append(K[i, keep] @ c - Y[i])
        assert value == pytest.approx(np.mean(np.square(residuals)), rel=1e-9)


def test_duplicate_rows_with_zero_ridge_fall_back_to_the_pseudo_inverse(rng):
    # Ridge 0 and repeated points make K exactly singular: a GramWarning, then the min-norm interpolant,
    # which (targets consistent on the duplicates) fits the training data to rounding, with no NaN.
    X = rng.standard_normal((40, 3))
    X = np.vstack([X, X[:10]])
    y = np.sin(X[:, 0]) + X[:, 1]
    K = Laplace()(X)
    with pytest.warns(GramWarning, match="singular or indefinite"):
        coef = krr_solve(K, y, 0.0)
    assert np.all(np.isfinite(coef))
    np.testing.assert_allclose(K @ coef, y, atol=1e-8)
    # the overwrite path rebuilds K from the triangle LAPACK did not touch and gives the same answer
    with pytest.warns(GramWarning):
        np.testing.assert_allclose(krr_solve(K.copy(), y, 0.0, overwrite_K=True), coef, atol=1e-10)


def test_indefinite_matrix_is_projected_not_nan(rng):
    # A symmetric matrix with eigenvalues ±1: Cholesky fails; the fallback drops λ + α ≤ cutoff directions.
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    eigenvalues = np.r_[np.ones(15), -np.ones(15)]
    K = (Q * eigenvalues) @ Q.T
    y = rng.standard_normal(30)
    with pytest.warns(GramWarning):
        coef = krr_solve(K, y, 0.5)
    expected = Q[:, :15] @ (Q[:, :15].T @ y) / 1.5  # only λ + α = 1.5 survives (−1 + 0.5 < 0 is dropped)
    np.testing.assert_allclose(coef, expected, atol=1e-12)
    assert np.all(np.isfinite(EigenPath(K).dual_coef(y, t=1e300)))


def test_well_posed_solve_does_not_warn(problem):
    _, K, Y = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        krr_solve(K, Y, 0.0)


def test_nystrom_pcg_approaches_exact_solve(rng):
    # Nyström KRR with m centers → exact KRR as m → n: at m = n the restricted problem is the exact one
    # (equal up to the CG tolerance times cond), and the error falls monotonically with m.
    X = rng.standard_normal((300, 4))
    y = np.sin(X @ np.array([1.0, -0.5, 0.3, 0.2]))
    kernel, alpha = RBF(), 1e-2
    exact = kernel(X) @ krr_solve(kernel(X), y, alpha)
    errors = []
    for m in (20, 80, 300):
        fit = nystrom_krr(kernel, X, y, alpha, m, random_state=0)
        assert fit.converged
        errors.append(_rel(fit.predict(X), exact))
    assert errors[0] > errors[1] > errors[2]   # measured: 0.82, 0.34, 6e-12
    assert errors[2] < 1e-9


def test_falkon_preconditioner_cuts_cg_iterations(rng):
    # The same m = 80 system solved by plain CG takes >1000 iterations (measured 1311); the preconditioned
    # one about 70 at tol 1e-10. Requiring a 10× cut leaves a wide margin on both.
    X = rng.standard_normal((300, 4))
    y = np.sin(X @ np.array([1.0, -0.5, 0.3, 0.2]))
    fit = nystrom_krr(RBF(), X, y, 1e-2, 80, random_state=0)
    K_nm, K_mm = RBF()(X, fit.centers), RBF()(fit.centers)
    H = K_nm.T @ K_nm + 1e-2 * K_mm
    _, plain_iterations, _ = conjugate_gradient(lambda v: H @ v, K_nm.T @ y[:, None], tol=1e-10,
                                                max_iter=5000, xp=np)
    assert fit.converged and 10 * fit.n_iter < plain_iterations
    np.testing.assert_allclose(H @ fit.coef, K_nm.T @ y, rtol=1e-6, atol=1e-8 * np.abs(K_nm.T @ y).max())


def test_nystrom_multiple_targets_equal_single_ones(rng):
    X = rng.standard_normal((100, 3))
    Y = rng.standard_normal((100, 2))
    both = nystrom_krr(RBF(), X, Y, 0.1, 40, random_state=1).coef
    first = nystrom_krr(RBF(), X, Y[:, 0], 0.1, 40, random_state=1).coef
    np.testing.assert_allclose(both[:, 0], first, rtol=1e-8, atol=1e-10)


def test_generic_namespace(xp, rng):
    # The same solver code under array-api-strict (generic cholesky/solve/eigh) gives the NumPy answers.
    X = rng.standard_normal((40, 3))
    K, Y = RBF()(X), rng.standard_normal((40, 2))
    Kx, Yx = xp.asarray(K), xp.asarray(Y)
    assert _rel(np.asarray(krr_solve(Kx, Yx, 0.1)), krr_solve(K, Y, 0.1)) < 1e-10
    path = EigenPath(Kx)
    assert _rel(np.asarray(path.dual_coef(Yx, alpha=0.1, t=30.0)), EigenPath(K).dual_coef(Y, 0.1, 30.0)) < 1e-10
    assert _rel(np.asarray(path.loo_errors(Yx, [0.1, 1.0])), EigenPath(K).loo_errors(Y, [0.1, 1.0])) < 1e-10
    fit = nystrom_krr(RBF(), xp.asarray(X), Yx, 0.1, 40, random_state=0)
    assert _rel(np.asarray(fit.coef), nystrom_krr(RBF(), X, Y, 0.1, 40, random_state=0).coef) < 1e-8


def test_bad_input(problem):
    _, K, Y = problem
    with pytest.raises(ValueError, match="`alpha` must be a finite number ≥ 0"):
        krr_solve(K, Y, -1.0)
    with pytest.raises(ValueError, match="`t` must be None .* or a number ≥ 0"):
        EigenPath(K).dual_coef(Y, t=-1.0)
    with pytest.raises(ValueError, match="K must be a square Gram matrix"):
        krr_solve(K[:, :5], Y)
    with pytest.raises(ValueError, match=r"y must have shape \(n,\) or \(n, n_targets\) with n = 120"):
        krr_solve(K, Y[:5])
    bad = K.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="K contains NaN"):
        krr_solve(bad, Y)
    with pytest.raises(ValueError, match=r"`n_centers` must be an integer in \[1, 120\]"):
        nystrom_krr(RBF(), problem[0], Y, 0.1, 500)
    with pytest.raises(ValueError, match=r"y must have shape \(n,\) or \(n, n_targets\) with n = 120"):
        nystrom_krr(RBF(), problem[0], np.asarray(1.0), 0.1, 40)  # 0-d y: shape checked before indexing
