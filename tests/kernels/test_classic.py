"""kernels.classic: RBF, Laplace and polynomial kernels agree with sklearn.metrics.pairwise."""
import numpy as np
import pytest
from sklearn.metrics.pairwise import laplacian_kernel, polynomial_kernel, rbf_kernel

from kernels import Laplace, Polynomial, RBF
from kernels.classic import resolve_kernel

# (our kernel, scikit-learn's function with the same parameters)
CASES = [
    (RBF(), lambda a, b: rbf_kernel(a, b)),
    (RBF(gamma=0.7), lambda a, b: rbf_kernel(a, b, gamma=0.7)),
    (Laplace(), lambda a, b: laplacian_kernel(a, b)),
    (Laplace(gamma=0.3), lambda a, b: laplacian_kernel(a, b, gamma=0.3)),
    (Polynomial(), lambda a, b: polynomial_kernel(a, b)),
    (Polynomial(degree=2, gamma=0.5, coef0=-0.2), lambda a, b: polynomial_kernel(a, b, 2, 0.5, -0.2)),
]


@pytest.mark.parametrize("kernel, reference", CASES, ids=[repr(k) for k, _ in CASES])
def test_matches_scikit_learn(kernel, reference, rng):
    # Same formulas and defaults as sklearn.metrics.pairwise; entries are O(1), so float64 rounding of the
    # ‖x‖² + ‖y‖² − 2x·y expansion leaves differences of a few eps: 1e-12 is a safe bound.
    x1, x2 = rng.standard_normal((30, 6)), rng.standard_normal((20, 6))
    np.testing.assert_allclose(kernel(x1, x2), reference(x1, x2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kernel(x1), reference(x1, x1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", [RBF(), Laplace()])
def test_same_input_gram_is_symmetric_psd_with_unit_diagonal(kernel, rng):
    x = rng.standard_normal((50, 4))
    K = kernel(x)
    np.testing.assert_array_equal(np.diag(K), 1.0)  # distance exactly 0 on the diagonal
    np.testing.assert_allclose(K, K.T, atol=1e-15)
    # positive semi-definite up to rounding: smallest eigenvalue >= -n·eps·max eigenvalue
    eigenvalues = np.linalg.eigvalsh(K)
    assert eigenvalues.min() >= -50 * np.finfo(float).eps * eigenvalues.max()


def test_laplace_row_blocks_match_one_block(monkeypatch, rng):
    # The L1 kernel is computed in row blocks; a tiny block size must give the identical matrix.
    import kernels.classic as classic
    x1, x2 = rng.standard_normal((37, 5)), rng.standard_normal((11, 5))
    whole = Laplace()(x1, x2)
    monkeypatch.setattr(classic, "_L1_BLOCK_ELEMENTS", 5 * 11 * 4)  # 4 rows per block
    np.testing.assert_array_equal(Laplace()(x1, x2), whole)


@pytest.mark.parametrize("kernel", [RBF(), Laplace(), Polynomial()], ids=repr)
def test_namespace_generic(kernel, xp, rng):
    # The same code under array-api-strict gives the NumPy result (to rounding of the matmul order).
    x1, x2 = rng.standard_normal((12, 3)), rng.standard_normal((7, 3))
    expected = kernel(x1, x2)
    got = kernel(xp.asarray(x1), xp.asarray(x2))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-14)


def test_resolve_kernel_names_and_callables():
    assert resolve_kernel("rbf") == RBF() and resolve_kernel("LAPLACE") == Laplace()
    assert resolve_kernel("polynomial") == Polynomial()
    func = lambda a, b=None: a @ (a if b is None else b).T  # noqa: E731
    assert resolve_kernel(func) is func
    with pytest.raises(ValueError, match="unknown kernel 'gaussian'; valid: laplace, polynomial, rbf"):
        resolve_kernel("gaussian")
    with pytest.raises(TypeError, match="kernel must be a callable"):
        resolve_kernel(3)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="same number of features"):
        RBF()(rng.standard_normal((3, 2)), rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match="x1 contains NaN"):
        RBF()(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="x1 must be 2-dimensional"):
        Laplace()(np.ones(3))
    with pytest.raises(ValueError, match=r"`gamma` must be None \(1 / n_features\) or a finite number > 0"):
        RBF(gamma=-1.0)
    with pytest.raises(ValueError, match="`degree` must be an integer ≥ 1"):
        Polynomial(degree=0)


@pytest.mark.parametrize("kernel", [RBF, Laplace])
def test_gamma_beyond_float32_range_stays_finite(kernel, rng):
    # γ = 1e300 rounds to inf in float32 and γ·0 was NaN on the diagonal (issue #24); exp(−γ·d) is 1 at d = 0
    # and underflows to 0 for every d > 0 (the smallest float32 distance times 1e300 is far beyond 746)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    K = kernel(1e300)(x)
    assert K.dtype == np.float32
    np.testing.assert_array_equal(K, np.eye(4, dtype=np.float32))
