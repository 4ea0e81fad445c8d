"""kernels.solve.stored and the stored paths of krr_solve, EigenPath and the estimators: a float32 store solved
to float64 accuracy (in memory, and streamed with a Nyström preconditioner)."""
import numpy as np
import pytest
import scipy.linalg

pytest.importorskip("zarr")

from kernels import FullyConnected, KernelRegressor, NTKClassifier, gram  # noqa: E402
from kernels.solve.stored import ConvergenceWarning, solve_stored  # noqa: E402
from kernels.solve.ridge import EigenPath, krr_solve  # noqa: E402

EPS64 = np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """A float32 depth-3 ReLU NTK store of 300 points, its exact float64 copy and 3 targets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    store = gram(FullyConnected(depth=3), x, tile=100, store=tmp_path_factory.mktemp("g") / "k.zarr", progress=False)
    return store, store.to_numpy().astype(np.float64), rng.standard_normal((300, 3))


@pytest.fixture(params=["lapack", "blocked"])
def factorisation(request, monkeypatch):
    """Both ways of factorising in memory: one LAPACK call, or blocks of 32 as for a K over 2 GiB."""
    if request.param == "blocked":
        from kernels.solve import lapack_blocks
        monkeypatch.setattr(lapack_blocks, "LAPACK_MAX_BYTES", 800)
        monkeypatch.setattr(lapack_blocks, "cholesky_upper_inplace",
                            lambda A, block=32, inner=lapack_blocks.cholesky_upper_inplace: inner(A, 32))
        monkeypatch.setattr(lapack_blocks, "cholesky_solve_upper",
                            lambda A, B, block=32, inner=lapack_blocks.cholesky_solve_upper: inner(A, B, 32))
    return request.param


def _relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("method", ["cholesky", "cg"])
def test_float32_store_gives_float64_coefficients(problem, method, factorisation):
    store, K, y = problem
    alpha, tol = 1e-3, 1e-10
    A = K + alpha * np.eye(len(K))
    reference = scipy.linalg.solve(A, y, assume_a="pos")
    solution = solve_stored(store, y, alpha, method=method, tol=tol, n_centers=100)
    assert solution.method == method and solution.converged and solution.residual <= tol
    assert 1 <= solution.n_iter <= (10 if method == "cholesky" else 200)
    # perturbation bound: ‖Δc‖/‖c‖ ≤ κ·(relative residual), plus the reference's own rounding κ·eps
    kappa = np.linalg.cond(A)
    assert _relative_error(solution.coef, reference) <= kappa * (tol + 10 * EPS64)
    # what the refinement buys: a plain float32 Cholesky solve is off by about κ·eps32, orders more
    plain = scipy.linalg.cho_solve(scipy.linalg.cho_factor(store.to_numpy() + np.float32(alpha) * np.eye(300,
                                   dtype=np.float32)), y.astype(np.float32))
    assert _relative_error(plain, reference) > 100 * _relative_error(solution.coef, reference)


def test_auto_method_follows_the_memory_limit(problem):
    store, _, y = problem
    assert solve_stored(store, y, 1e-3).method == "cholesky"              # 300² floats fit easily
    assert solve_stored(store, y, 1e-3, memory_limit=300 * 300 * 4 - 1, n_centers=100).method == "cg"


def test_krr_solve_and_eigen_path_accept_a_store(problem):
    store, K, y = problem
    reference = scipy.linalg.solve(K + 1e-3 * np.eye(300), y, assume_a="pos")
    np.testing.assert_allclose(krr_solve(store, y, 1e-3), reference, rtol=1e-7, atol=1e-9 * np.abs(reference).max())
    # EigenPath reads the store in float64: the same numbers as from the float64 copy
    np.testing.assert_array_equal(EigenPath(store).dual_coef(y, alpha=1e-3, t=50.0),
                                  EigenPath(K).dual_coef(y, alpha=1e-3, t=50.0))


class Linear:
    """x·x' in float32: a positive semi-definite kernel with exact integer values for integer inputs."""

    def __call__(self, a, b=None):
        return (a @ (a if b is None else b).T).astype(np.float32)


def test_a_float32_factorisation_that_fails_is_shifted_and_still_converges(tmp_path, factorisation):
    """K = G·Gᵀ of rank 40 (n = 120), α = 1e-7·max K: float32 Cholesky breaks down, float64 is still exact."""
    G = np.random.default_rng(1).integers(-2, 3, (120, 40)).astype(float)
    store = gram(Linear(), G, tile=50, store=tmp_path / "k.zarr", progress=False)
    K = store.to_numpy().astype(np.float64)
    alpha = 1e-7 * float(K.max())
    with pytest.raises(np.linalg.LinAlgError):
        scipy.linalg.cho_factor(store.to_numpy() + np.float32(alpha) * np.eye(120, dtype=np.float32))
    A = K + alpha * np.eye(120)
    y = np.random.default_rng(2).standard_normal(120)
    solution = solve_stored(store, y, alpha, method="cholesky", tol=1e-8)
    assert solution.converged
    # as accurate as LAPACK's float64 solve of the same system (both err by about κ·eps ≈ 6e-9 here)
    assert _relative_error(solution.coef, np.linalg.solve(A, y)) <= 10 * np.linalg.cond(A) * EPS64


def test_unreached_tolerance_warns_and_reports(problem):
    store, _, y = problem
    with pytest.warns(ConvergenceWarning, match="relative residual"):
        solution = solve_stored(store, y, 1e-3, method="cg", n_centers=5, max_iter=2)
    assert not solution.converged and solution.n_iter == 2 and solution.residual > solution.tol


def test_bad_stores_and_arguments_are_refused(problem, tmp_path, rng):
    store, _, y = problem
    x = rng.standard_normal((10, 3))
    cross = gram(Linear(), x, x[:4], store=tmp_path / "cross.zarr", progress=False)
    with pytest.raises(ValueError, match="needs the square Gram matrix"):
        solve_stored(cross, np.ones(10))
    square = gram(Linear(), x, tile=4, store=tmp_path / "square.zarr", progress=False)
    (tmp_path / "square.zarr" / "kernel" / "c" / "0" / "1").unlink()
    with pytest.raises(ValueError, match="1 of 6 tiles are missing"):
        solve_stored(square, np.ones(10))
    with pytest.raises(TypeError, match="store must be a kernels.GramStore"):
        solve_stored(np.eye(3), np.ones(3))
    with pytest.raises(ValueError, match="y must have shape"):
        solve_stored(store, np.ones(7))
    with pytest.raises(ValueError, match="unknown method 'lu'; valid: auto, cholesky, cg"):
        solve_stored(store, y, method="lu")
    with pytest.raises(ValueError, match=r"`tol` must be a finite number in \(0, 1\), got 0"):
        solve_stored(store, y, tol=0)
    with pytest.raises(ValueError, match="`max_iter` must be"):
        solve_stored(store, y, max_iter=0)
    with pytest.raises(ValueError, match="`alpha` must be a finite number ≥ 0"):
        solve_stored(store, y, alpha=-1.0)


# ----------------------------------------------------------------------------------------------- estimators
def test_estimators_spill_the_gram_matrix_to_a_store(tmp_path, rng):
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = X[:400] / 16.0
    plain = NTKClassifier(depth=2, alpha=1e-3, device="cpu").fit(X[:300], y[:300])
    stored = NTKClassifier(depth=2, alpha=1e-3, device="cpu", gram_store=tmp_path).fit(X[:300], y[:300])
    assert stored.solve_info_["method"] == "cholesky" and stored.solve_info_["converged"]
    # float64 kernel, both solves exact to about κ·eps: the outputs agree to 1e-9 and so do the labels
    np.testing.assert_allclose(stored.decision_function(X[300:]), plain.decision_function(X[300:]), atol=1e-9)
    assert np.array_equal(stored.predict(X[300:]), plain.predict(X[300:]))
    assert [p.name for p in tmp_path.iterdir()] == [stored.gram_store_.path.name]
    stored.fit(X[:300], y[:300])                                    # a refit reuses the finished store
    assert len(list(tmp_path.iterdir())) == 1
    flow = KernelRegressor(kernel="rbf", alpha=0.1, t=20.0, device="cpu", gram_store=tmp_path).fit(X[:300], X[:300, 9])
    reference = KernelRegressor(kernel="rbf", alpha=0.1, t=20.0, device="cpu").fit(X[:300], X[:300, 9])
    np.testing.assert_allclose(flow.predict(X[300:]), reference.predict(X[300:]), atol=1e-10)
    with pytest.raises(ValueError, match="memory and gram_store"):
        KernelRegressor(memory=str(tmp_path), gram_store=tmp_path).fit(X[:30], X[:30, 9])


# ----------------------------------------------------------------------------------------------- issue #24
@pytest.mark.parametrize("method", ["cholesky", "cg"])
@pytest.mark.parametrize("size", [1e300, 1e-300])
def test_targets_near_the_float64_limits_are_solved_exactly(method, size, problem):
    # (K + αI) c = y is linear, so y is solved scaled by a power of two and c scaled back. Before, |y| = 1e300
    # overflowed ‖y‖ and the stopping rule said "`tol` must be ... got nan", naming a parameter never passed
    store, K, Y = problem
    coef = solve_stored(store, Y[:, 0] * size, 1e-3, method=method, tol=1e-10).coef
    want = scipy.linalg.solve(K + 1e-3 * np.eye(len(K)), Y[:, 0], assume_a="pos") * size
    np.testing.assert_allclose(coef, want, rtol=1e-6)   # κ(K + αI)·tol bound with κ ≈ 1e4 for this ridge


def test_coefficients_beyond_float64_name_y(tmp_path, rng):
    # RBF of 6 points: λ_min(K) < 1, so c = K⁻¹y exceeds the float64 maximum for |y| = 1.7e308
    from kernels import RBF
    store = gram(RBF(), rng.standard_normal((6, 3)), store=tmp_path / "s.zarr", progress=False)
    with pytest.raises(ValueError, match=r"overflowed float64: y is too large"):
        solve_stored(store, np.full(6, 1.7e308) * np.array([1, -1, 1, -1, 1, -1]), 0.0)


def test_zero_kernel_store_is_a_drop_in_for_the_in_memory_fit(tmp_path):
    # the NTK of all-zero inputs to a network without bias is 0: in memory the pseudo-inverse gives c = 0 and
    # predictions 0; the stored fit raised LinAlgError
    from kernels import NTKRegressor
    from kernels.solve.ridge import GramWarning
    X, y = np.zeros((5, 3)), np.arange(5.0)
    with pytest.warns(GramWarning):
        stored = NTKRegressor(gram_store=tmp_path).fit(X, y)
    with pytest.warns(GramWarning):
        memory = NTKRegressor().fit(X, y)
    for new in (np.zeros((2, 3)), np.ones((2, 3))):
        np.testing.assert_array_equal(stored.predict(new), memory.predict(new))
    assert stored.solve_info_["method"] == "zero kernel"
    ridge = NTKRegressor(gram_store=tmp_path, alpha=2.0).fit(X, y)
    np.testing.assert_array_equal(ridge.dual_coef_[:, 0], y / 2.0)          # (0 + 2I) c = y


def test_an_indefinite_store_falls_back_to_the_pseudo_inverse(tmp_path, rng):
    from kernels.solve.ridge import GramWarning
    x = rng.standard_normal((6, 2))
    store = gram(lambda a, b: -(a @ b.T), x, store=tmp_path / "neg.zarr", progress=False)   # negative semidefinite
    y = rng.standard_normal(6)
    with pytest.warns(GramWarning):
        solution = solve_stored(store, y, 0.0, method="cholesky")
    with pytest.warns(GramWarning):
        want = krr_solve(-(x @ x.T), y, 0.0)
    assert solution.method == "eigh"
    np.testing.assert_allclose(solution.coef, want, rtol=1e-10, atol=1e-12)
