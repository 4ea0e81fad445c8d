"""kernels.solve.lapack_blocks: the blocked Cholesky and triangular solves against SciPy's unblocked LAPACK.

The blocked algorithm performs the same operations as ``potrf`` in another order, so the factors agree to a few
units of rounding of the factor's entries: Higham's bound |ΔA| ≤ γ_{n+1}|Uᵀ||U| for both gives a difference of
order n·eps·‖A‖ / σ_min; for these well-conditioned matrices (eigenvalues in [1, ~3]) 1e-12 in float64 and 1e-4
in float32 leave a margin of 100× over what was seen.
"""
import numpy as np
import pytest
import scipy.linalg

from kernels.solve import lapack_blocks
from kernels.solve import ridge as solvers


def _spd(n, dtype=np.float64, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, n // 2 + 1))
    return (X @ X.T / n + np.eye(n)).astype(dtype)


@pytest.mark.parametrize("n, block", [(1, 4), (7, 3), (50, 8), (64, 16), (33, 64)])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_blocked_factor_equals_lapack_and_keeps_the_lower_triangle(n, block, dtype, tol, monkeypatch):
    monkeypatch.setattr(lapack_blocks, "COLUMNS", 5)       # several column chunks per panel, too
    K = _spd(n, dtype)
    A = np.array(K)
    lapack_blocks.cholesky_upper_inplace(A, block=block)
    U = scipy.linalg.cholesky(K.astype(np.float64), lower=False)
    np.testing.assert_allclose(np.triu(A), U, rtol=0, atol=tol)
    assert np.array_equal(np.tril(A, -1), np.tril(K, -1))      # never read nor written
    B = np.random.default_rng(1).standard_normal((n, 3)).astype(dtype)
    np.testing.assert_allclose(lapack_blocks.cholesky_solve_upper(A, B, block=block),
                               np.linalg.solve(K.astype(np.float64), B), rtol=0, atol=10 * tol)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [True, False])
def test_blocked_triangular_solve_reads_only_its_triangle(lower, trans, monkeypatch):
    monkeypatch.setattr(lapack_blocks, "LAPACK_MAX_BYTES", 800)   # 23 × 23 float64 (4232 bytes): blocked
    rng = np.random.default_rng(2)
    T = rng.standard_normal((23, 23)) + 8 * np.eye(23)          # diagonally dominant: κ ≈ 2
    B = rng.standard_normal((23, 2))
    triangle = np.tril(T) if lower else np.triu(T)
    op = triangle.T if trans else triangle
    X = lapack_blocks.solve_triangular(T, B, lower=lower, trans=trans, block=5)
    np.testing.assert_allclose(op @ X, B, rtol=0, atol=1e-13)


def test_not_positive_definite_raises_linalg_error():
    K = _spd(12)
    K[7, 7] = -1.0
    with pytest.raises(np.linalg.LinAlgError):
        lapack_blocks.cholesky_upper_inplace(np.array(K), block=4)


def test_large_matrices_take_the_blocked_path(monkeypatch):
    # Beyond 2 GiB one LAPACK call overflows or crashes (see kernels.solve.lapack_blocks); lowering the limit to 800
    # bytes sends a 12 × 12 float64 krr_solve (1152 bytes) through the blocked factor and solve, and EigenPath
    # through NumPy's eigh.
    monkeypatch.setattr(lapack_blocks, "LAPACK_MAX_BYTES", 800)
    monkeypatch.setattr(lapack_blocks, "BLOCK", 5)
    calls = []
    original = lapack_blocks.cholesky_upper_inplace
    monkeypatch.setattr(lapack_blocks, "cholesky_upper_inplace",
                        lambda A, block=5: (calls.append(A.shape), original(A, 5))[1])
    K, y = _spd(12), np.arange(12.0)
    coef = solvers.krr_solve(K, y, 0.1)
    assert calls == [(12, 12)]
    np.testing.assert_allclose(coef, np.linalg.solve(K + 0.1 * np.eye(12), y), rtol=1e-12)
    np.testing.assert_allclose(solvers.EigenPath(K).dual_coef(y, alpha=0.1), coef, rtol=1e-10)


def test_blocked_lower_factor_has_zeros_above(monkeypatch):
    monkeypatch.setattr(lapack_blocks, "LAPACK_MAX_BYTES", 800)
    monkeypatch.setattr(lapack_blocks, "BLOCK", 4)
    K = _spd(11)
    L = lapack_blocks.cholesky_lower(K)
    assert np.array_equal(np.triu(L, 1), np.zeros((11, 11)))
    np.testing.assert_allclose(L, scipy.linalg.cholesky(K, lower=True), rtol=0, atol=1e-12)
