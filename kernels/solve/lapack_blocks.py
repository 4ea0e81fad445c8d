"""Cholesky factorisation and triangular solves of large matrices, LAPACK only on blocks of 32 MiB.

Two faults of the stock wheels make one LAPACK call on a large matrix unsafe:
- SciPy's OpenBLAS has 32-bit LAPACK integers (``scipy.linalg.lapack.HAS_ILP64`` is False): from n² ≥ 2³¹
  (n ≥ 46,341) the element offsets overflow (scipy/scipy#17436: ``cholesky`` segfaults at n = 47,000).
- OpenBLAS's multithreaded ``potrf`` segfaults on large matrices even with 64-bit integers: measured here on
  2 cores, float64 at n = 23,100 (4.3 GB) in SciPy's OpenBLAS 0.3.30 and in NumPy's 0.3.31
  (``np.linalg.cholesky``), not with ``OPENBLAS_NUM_THREADS=1``; float64 at n = 22,000 (3.9 GB) and float32 at
  n = 26,000 (2.7 GB) pass, float32 at n = 60,000 crashes.
So an operand over ``LAPACK_MAX_BYTES`` (2 GiB, a margin of 2 below the smallest crash seen) is factorised in
blocks: LAPACK sees only b × b diagonal blocks and b-row panels, copied to contiguous memory, while the O(n³)
work runs as NumPy matrix products on strided views of the whole matrix. This is the right-looking block
Cholesky of Golub & Van Loan, "Matrix Computations" (4th ed., §4.2): the n³/3 flops of ``potrf`` and its
backward error bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §10.1: the bound holds
whatever the order of each inner product's sum).

The matrix is a C-ordered n × n array A; the factor U (A = UᵀU) overwrites its upper triangle and the strict
lower triangle is never read or written, so it can keep the original matrix (the layout of LAPACK's
``cho_factor(A.T, lower=True)`` on the Fortran-ordered view).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

LAPACK_MAX_BYTES = 2 ** 31
BLOCK = 2048           # rows of a diagonal block: sgemm/dgemm reach their speed at this inner dimension
COLUMNS = 16384        # columns per matrix product or panel solve (a 2048 × 16384 float64 temporary is 256 MiB)


def needs_blocks(*arrays) -> bool:
    """True when one of ``arrays`` is too large for one LAPACK call (see the module docstring)."""
    return any(a.nbytes > LAPACK_MAX_BYTES for a in arrays)


def cholesky_inplace(A, block: int = BLOCK) -> None:
    """U (A = UᵀU) into A's upper triangle: one ``potrf`` up to ``LAPACK_MAX_BYTES``, else blocked.

    Raises ``numpy.linalg.LinAlgError`` when A is not positive definite in its precision.
    """
    if needs_blocks(A):
        cholesky_upper_inplace(A, block)
        return
    factor, _ = scipy.linalg.cho_factor(A.T, lower=True, overwrite_a=True, check_finite=False)
    if not np.shares_memory(factor, A):     # SciPy copied (it does for non-native byte order): write U back
        _set_upper(A, factor.T)


def cholesky_solve(A, B, block: int = BLOCK):
    """X with (UᵀU)·X = B for U in A's upper triangle (from ``cholesky_inplace``)."""
    if needs_blocks(A, B):
        return cholesky_solve_upper(A, B, block)
    return scipy.linalg.cho_solve((A.T, True), B, check_finite=False)


def cholesky_upper_inplace(A, block: int = BLOCK) -> None:
    """Overwrite A's upper triangle with U, A = UᵀU, reading only that triangle (see the module docstring).

    Raises ``numpy.linalg.LinAlgError`` when A is not positive definite in its precision; the upper triangle is
    then partly overwritten (the strict lower one is intact).
    """
    n = A.shape[0]
    buffer = np.empty((min(block, n), min(COLUMNS, n)), dtype=A.dtype)   # reused: no page faults per product
    for k0 in range(0, n, block):
        k1 = min(k0 + block, n)
        U = scipy.linalg.cholesky(np.array(A[k0:k1, k0:k1]), lower=False, overwrite_a=True, check_finite=False)
        _set_upper(A[k0:k1, k0:k1], U)
        for c0 in range(k1, n, COLUMNS):               # panel ← U⁻ᵀ·panel
            c1 = min(c0 + COLUMNS, n)
            A[k0:k1, c0:c1] = scipy.linalg.solve_triangular(U, A[k0:k1, c0:c1], lower=False, trans=1,
                                                            check_finite=False)
        panel = A[k0:k1]
        for i0 in range(k1, n, block):                 # trailing upper triangle −= panelᵀ·panel
            i1 = min(i0 + block, n)
            _set_upper(A[i0:i1, i0:i1], A[i0:i1, i0:i1] - panel[:, i0:i1].T @ panel[:, i0:i1])
            for c0 in range(i1, n, COLUMNS):
                c1 = min(c0 + COLUMNS, n)
                product = np.matmul(panel[:, i0:i1].T, panel[:, c0:c1], out=buffer[:i1 - i0, :c1 - c0])
                np.subtract(A[i0:i1, c0:c1], product, out=A[i0:i1, c0:c1])


def cholesky_lower(A):
    """Lower factor L of A = LLᵀ (zeros above the diagonal); A is not modified. LinAlgError when not positive
    definite."""
    if not needs_blocks(A):
        return scipy.linalg.cholesky(A, lower=True, check_finite=False)
    U = np.array(A, order="C")
    cholesky_upper_inplace(U)
    n = U.shape[0]
    for i0 in range(0, n, BLOCK):              # zero the strict lower triangle in slabs (no n × n mask)
        i1 = min(i0 + BLOCK, n)
        U[i0:i1, :i0] = 0
        U[i0:i1, i0:i1] = np.triu(U[i0:i1, i0:i1])
    return U.T


def _set_upper(target, values) -> None:
    """Write the upper triangle (diagonal included) of a square block, leaving its strict lower part."""
    upper = np.triu(np.ones(target.shape, dtype=bool))
    np.copyto(target, values, where=upper)


def solve_triangular(T, B, *, lower: bool, trans: bool = False, block: int = BLOCK):
    """X with op(T)·X = B, op(T) = Tᵀ if ``trans`` else T, reading only the ``lower``/upper triangle of T.

    One LAPACK ``trtrs`` up to ``LAPACK_MAX_BYTES``; beyond, blocked substitution: one ``trtrs`` per b × b
    diagonal block, the rest NumPy products.
    """
    if not needs_blocks(T, B):
        return scipy.linalg.solve_triangular(T, B, lower=lower, trans=int(trans), check_finite=False)
    n = T.shape[0]
    X = np.array(B, dtype=np.result_type(T.dtype, B.dtype), copy=True)
    starts = list(range(0, n, block))
    forward = lower != trans          # op(T) is lower triangular: solve top to bottom
    for k0 in starts if forward else reversed(starts):
        k1 = min(k0 + block, n)
        if forward and k0 > 0:
            X[k0:k1] -= (T[:k0, k0:k1].T if trans else T[k0:k1, :k0]) @ X[:k0]
        elif not forward and k1 < n:
            X[k0:k1] -= (T[k1:, k0:k1].T if trans else T[k0:k1, k1:]) @ X[k1:]
        X[k0:k1] = scipy.linalg.solve_triangular(T[k0:k1, k0:k1], X[k0:k1], lower=lower, trans=int(trans),
                                                 check_finite=False)
    return X


def cholesky_solve_upper(A, B, block: int = BLOCK):
    """X with (UᵀU)·X = B for U in A's upper triangle (from ``cholesky_upper_inplace``)."""
    return solve_triangular(A, solve_triangular(A, B, lower=False, trans=True, block=block), lower=False,
                            block=block)
