"""Kernel ridge regression on a stored Gram matrix (``kernels.GramStore``): (K + α·I) c = y.

Two methods, both converging to the exact solution of the stored system; ``method="auto"`` picks
"cholesky" when the matrix fits in ``memory_limit`` bytes, else "cg".

- "cholesky": K is loaded once, in the store's dtype (float32 halves the memory), and factorised in place
  (LAPACK ``potrf`` on one triangle, in blocks when K is over 2 GiB, where one call overflows or crashes:
  ``kernels.solve.lapack_blocks``; the other triangle keeps K). The factor is then the preconditioner of a
  conjugate gradient run in float64 whose operator is the exact K read from the kept triangle: iterative
  refinement, so a float32 factor yields coefficients of float64 quality in a few iterations whenever the
  float32 factorisation exists (Higham, "Accuracy and Stability of Numerical Algorithms", §12.1). When it
  breaks down in that precision, K + (α + δ)I is factorised instead, with the smallest δ = n·eps·max K_ii·10^j
  (j = 0..7) that works: the operator stays exact, so only the number of iterations grows.
- "cg": nothing n × n is held in memory. Each iteration streams the tiles from the store (one pass over
  the upper triangle); the preconditioner is a rank-m Nyström approximation K ≈ U·diag(λ)·Uᵀ from m random
  columns, P⁻¹ = (λ_m + α)·U·diag(1/(λ + α))·Uᵀ + (I − UUᵀ) (Frangella, Tropp & Udell, "Randomized Nyström
  preconditioning", SIAM J. Matrix Anal. Appl. 2023; the FALKON idea of Rudi et al. 2017 applied to the full
  system), which needs O(n·m) memory.

Stopping rule (both): every target's relative residual ‖y − (K + αI)c‖₂ / ‖y‖₂ ≤ ``tol``, checked on the
residual recomputed in float64 (CG restarts from it when its running residual drifted), or a restart that no
longer halves it (the rounding floor, about eps₆₄·κ(K + αI)), or ``max_iter``; a warning says when ``tol`` was
not reached. Then ‖c − c*‖ / ‖c*‖ ≤ κ(K + αI)·tol against the exact solution c*
of the stored K (taken in float64), the standard perturbation bound. The iterations and the final residual
are returned in ``StoredSolution``.
"""
from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np

from kernels import backend
from kernels.solve import lapack_blocks
from kernels.grams.store import GramStore
from kernels.solve.krylov import conjugate_gradient
from kernels.validation import GramWarning, check_array, check_choice, check_scalar

METHODS = ("auto", "cholesky", "cg")


class ConvergenceWarning(RuntimeWarning):
    """The conjugate gradient stopped before reaching ``tol`` (at ``max_iter``, or at the rounding floor)."""


@dataclasses.dataclass
class StoredSolution:
    """Dual coefficients and how they were found."""

    coef: np.ndarray        # (n,) or (n, n_targets), float64
    method: str             # "cholesky" or "cg"
    n_iter: int             # conjugate gradient iterations
    residual: float         # max over targets of ‖y − (K + αI)c‖ / ‖y‖ (float64)
    converged: bool         # residual <= tol
    tol: float


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable`` on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_store(store):
    if not isinstance(store, GramStore):
        raise TypeError(f"store must be a kernels.GramStore, got {type(store).__name__}")
    if not store.symmetric:
        raise ValueError(f"kernel ridge regression needs the square Gram matrix K(x, x), but {store.path} holds "
                         f"K(x1, x2) of shape {store.shape}; build it with gram(kernel, x, store=...)")
    missing = len(store.missing_tiles())
    if missing:
        raise ValueError(f"{store.path}: {missing} of {store.tiles_total} tiles are missing; rerun the same "
                         "kernels.gram(...) call to finish them before solving")


def solve_stored(store, y, alpha: float = 0.0, *, method: str = "auto", tol: float = 1e-9, max_iter=None,
                 memory_limit=None, n_centers: int = 1000, random_state=0, block: int = 2048) -> StoredSolution:
    """Solve (K + α·I) c = y for a stored symmetric Gram matrix K; see the module docstring.

    ``memory_limit``: bytes the "cholesky" method may use (default: 80% of the available memory).
    ``max_iter``: default 50 for "cholesky", 500 for "cg". ``n_centers``: the Nyström rank m for "cg".
    ``block``: rows per slab when the float64 operator reads the in-memory matrix.
    """
    _check_store(store)
    alpha = check_scalar(alpha, "alpha", float, min_val=0)
    n = store.shape[0]
    Y = np.asarray(backend.to_numpy(check_array(y, "y")), dtype=np.float64)
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise ValueError(f"y must have shape (n,) or (n, n_targets) with n = {n} (the size of the stored K), "
                         f"got {Y.shape}")
    check_choice(method, "method", METHODS)
    tol = check_scalar(tol, "tol", float, min_val=0, max_val=1, include_boundaries="neither")
    max_iter = check_scalar(max_iter, "max_iter", int, min_val=1, allow_none="the method's default")
    n_centers = check_scalar(n_centers, "n_centers", int, min_val=1)
    block = check_scalar(block, "block", int, min_val=1)
    memory_limit = check_scalar(memory_limit, "memory_limit", int, min_val=0,
                                allow_none="80% of the available memory")
    if not (random_state is None or isinstance(random_state, np.random.Generator)
            or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_))
                and random_state >= 0)):
        raise TypeError(f"random_state must be None, an integer >= 0 or a numpy.random.Generator, got "
                        f"{random_state!r}")
    if method == "auto":
        method = "cholesky" if fits_in_memory(store, memory_limit) else "cg"
    Y2 = Y if Y.ndim == 2 else Y[:, None]
    # (K + αI) c = y is linear: solve it for y / 2^e with max|y / 2^e| in [1/2, 1) and scale c back (exact), so
    # |y| up to the float64 maximum neither overflows the residual norms nor the stopping rule
    peak = float(np.max(np.abs(Y2))) if Y2.size else 0.0
    exponent = int(np.frexp(peak)[1]) if peak > 0 else 0
    Y2 = np.ldexp(Y2, -exponent)
    if _zero_diagonal(store):          # a PSD K with a zero diagonal is 0: K + αI = αI
        coef = _zero_kernel_coef(store, Y2, alpha)
        return StoredSolution(_scaled_back(coef, exponent, y, Y.ndim), "zero kernel", 0, 0.0 if alpha else 1.0,
                              alpha > 0 or not np.any(Y2), float(tol))
    if method == "cholesky":
        try:
            operator, precondition = _cholesky_operators(store, alpha, block)
        except _NotFactorable as failure:    # indefinite beyond any shift: the in-memory fit's pseudo-inverse
            warnings.warn(f"{failure}; solving with its eigendecomposition (eigenvalues below n*eps*max treated "
                          "as zero), as kernels.krr_solve does in memory", GramWarning, stacklevel=2)
            coef = _pseudo_inverse_solve(failure.matrix, Y2, alpha)
            residual = _relative_residual(failure.matrix, alpha, coef, Y2)
            return StoredSolution(_scaled_back(coef, exponent, y, Y.ndim), "eigh", 0, residual, residual <= tol,
                                  float(tol))
        max_iter = 50 if max_iter is None else max_iter
    else:
        operator = _streaming_operator(store, alpha)
        precondition = _nystrom_preconditioner(store, alpha, min(n_centers, n), random_state)
        max_iter = 500 if max_iter is None else max_iter
    coef, n_iter, residual = _restarted_cg(operator, precondition, Y2, tol, max_iter)
    converged = residual <= tol
    if not converged:
        warnings.warn(f"{method}: relative residual {residual:.2e} after {n_iter} iterations is above tol={tol:g} "
                      "(float64 rounding stops refinement near eps*cond(K + alpha*I)); add a ridge alpha, or raise "
                      "max_iter (or n_centers for 'cg')", ConvergenceWarning, stacklevel=2)
    return StoredSolution(_scaled_back(coef, exponent, y, Y.ndim), method, n_iter, residual, converged, float(tol))


def _scaled_back(coef, exponent, y, ndim):
    """The coefficients of the unscaled y, or a ValueError naming y when they leave float64's range."""
    with np.errstate(over="ignore"):
        coef = np.ldexp(coef, exponent)
    if not np.all(np.isfinite(coef)):
        raise ValueError(f"the dual coefficients overflowed float64: y is too large (max |y| = "
                         f"{float(np.max(np.abs(backend.to_numpy(y)))):.3g}) for this K and ridge; rescale y (e.g. "
                         "standardise it)")
    return coef if ndim == 2 else coef[:, 0]


def _pseudo_inverse_solve(K, Y, alpha):
    """c = Σ_{λ+α > cutoff} u (uᵀy)/(λ + α) with cutoff n·eps·max|λ|: the pseudo-inverse of ``EigenPath``."""
    lam, U = np.linalg.eigh(K)
    shifted = lam + alpha
    kept = shifted > K.shape[0] * np.finfo(np.float64).eps * float(np.max(np.abs(lam)))
    return U[:, kept] @ ((U[:, kept].T @ Y) / shifted[kept, None])


def _zero_diagonal(store) -> bool:
    """Whether every K_ii is 0 (read from the diagonal tiles): a PSD kernel is then 0 everywhere (|K_ij|² ≤
    K_ii·K_jj), e.g. the NTK of all-zero inputs to a network without bias."""
    for index in store.grid:
        if index[0] == index[1] and np.any(np.diagonal(store.read_tile(index)) != 0):
            return False
    return True


def _zero_kernel_coef(store, Y, alpha):
    """(0 + αI) c = y: c = y/α, or c = 0 for α = 0 (the pseudo-inverse of 0, what krr_solve gives in memory)."""
    if alpha > 0:
        return Y / alpha
    warnings.warn(f"{store.path} holds the zero matrix (every K_ii = 0) and alpha = 0: the min-norm solution "
                  "c = 0 (predictions 0), as kernels.krr_solve gives in memory", GramWarning, stacklevel=3)
    return np.zeros_like(Y)


def _relative_residual(K, alpha, coef, Y) -> float:
    norms = np.linalg.norm(Y, axis=0)
    R = Y - (K @ coef + alpha * coef)
    return float(np.max(np.linalg.norm(R, axis=0) / np.where(norms > 0, norms, 1.0)))


class _NotFactorable(Exception):
    """K + (α + δ)I did not factorise for any shift tried; ``matrix`` is K (float64, both triangles)."""

    def __init__(self, message, matrix):
        super().__init__(message)
        self.matrix = matrix


def _restarted_cg(operator, precondition, Y, tol, max_iter):
    """PCG restarted from the true residual whenever its recursive residual claims convergence too early.

    On an ill-conditioned system the residual CG updates drifts from y − A·c; each restart solves
    A·δ = y − A·c afresh (iterative refinement) until the true relative residual is below ``tol``, a restart
    no longer halves it (the floor float64 rounding sets, about eps·κ), or ``max_iter`` iterations were spent.
    Returns (c, iterations, max relative residual).
    """
    norms = np.linalg.norm(Y, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    coef, used, R, residual = np.zeros_like(Y), 0, Y, 1.0
    while True:
        inner_tol = tol * float(np.min(norms / np.maximum(np.linalg.norm(R, axis=0), np.finfo(float).tiny)))
        delta, n_iter, _ = conjugate_gradient(operator, R, tol=min(inner_tol, 0.5), max_iter=max_iter - used,
                                              xp=np, precondition=precondition)
        candidate = coef + delta
        R_new = Y - operator(candidate)
        new = float(np.max(np.linalg.norm(R_new, axis=0) / norms))
        used += n_iter
        if new < residual:
            coef, R = candidate, R_new
        if new <= tol or used >= max_iter or new > 0.5 * residual:
            return coef, used, min(new, residual)
        residual = new


# ----------------------------------------------------------------------------------------------- in memory
def _cholesky_operators(store, alpha, block):
    """(exact float64 operator from the kept triangle, float32-or-store-dtype Cholesky preconditioner)."""
    n = store.shape[0]
    A = store.to_numpy()                           # C order; LAPACK on the F-order view Aᵀ writes A's upper part
    diagonal = np.array(np.diagonal(A), dtype=np.float64)
    shift = alpha
    factored = False
    for attempt in range(8):
        A.flat[::n + 1] = diagonal + shift
        try:
            lapack_blocks.cholesky_inplace(A)
            factored = True
            break
        except np.linalg.LinAlgError:   # not positive definite in this precision: factor K + (α + δ)I instead
            _restore_upper(A, block)
            shift = alpha + n * np.finfo(A.dtype).eps * float(np.max(np.abs(diagonal))) * 10.0 ** attempt
    if not factored:
        K = A.astype(np.float64)
        lower = np.tril(K, -1)
        K = lower + lower.T
        K.flat[::n + 1] = diagonal
        raise _NotFactorable(f"K + alpha*I from {store.path} is not positive definite even with a shift of "
                             f"{shift:.3g}", K)
    dtype = A.dtype

    def operator(V):               # (K + αI)·V in float64, K from the strict lower triangle and the diagonal
        out = (diagonal + alpha)[:, None] * V
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            for j0 in range(0, i1, block):
                j1 = min(j0 + block, i1)
                panel = A[i0:i1, j0:j1].astype(np.float64)
                if j0 == i0:
                    panel = np.tril(panel, -1)
                out[i0:i1] += panel @ V[j0:j1]
                out[j0:j1] += panel.T @ V[i0:i1]
        return out

    def precondition(R):
        return lapack_blocks.cholesky_solve(A, R.astype(dtype)).astype(np.float64)

    return operator, precondition


def _restore_upper(A, block):
    """Copy A's strict lower triangle onto the upper one (a failed factorisation overwrote it), slab by slab."""
    n = A.shape[0]
    for i0 in range(0, n, block):
        i1 = min(i0 + block, n)
        A[:i1, i0:i1] = np.where(np.tri(i1, i1 - i0, -1 - i0, dtype=bool), A[:i1, i0:i1], A[i0:i1, :i1].T)


# ----------------------------------------------------------------------------------------------- out of memory
def _streaming_operator(store, alpha):
    """(K + αI)·V with K read tile by tile from the store (the upper tiles, each used twice)."""
    def operator(V):
        out = alpha * V
        for index in store.grid:
            i0, i1, j0, j1 = store.bounds(index)
            tile = store.read_tile(index).astype(np.float64)
            out[i0:i1] += tile @ V[j0:j1]
            if index[0] != index[1]:
                out[j0:j1] += tile.T @ V[i0:i1]
        return out
    return operator


def _columns(store, columns):
    """K[:, columns] (n × m) read from the stored tiles."""
    n = store.shape[0]
    out = np.empty((n, len(columns)))
    for index in store.grid:
        i0, i1, j0, j1 = store.bounds(index)
        in_j = np.flatnonzero((columns >= j0) & (columns < j1))
        in_i = np.flatnonzero((columns >= i0) & (columns < i1)) if index[0] != index[1] else in_j[:0]
        if in_j.size == 0 and in_i.size == 0:
            continue
        tile = store.read_tile(index)
        out[i0:i1, in_j] = tile[:, columns[in_j] - j0]
        out[j0:j1, in_i] = tile[columns[in_i] - i0, :].T
    return out


def _cholesky_with_jitter(A):
    """Lower Cholesky factor of the centers' Gram matrix plus the smallest jitter m·eps·max(diag)·10^j that works
    (exactly duplicated centers or rounding make K_mm only semi-definite)."""
    scale, m = float(np.max(np.abs(np.diagonal(A)))), A.shape[0]
    for j in range(7):
        try:
            return lapack_blocks.cholesky_lower(A + m * np.finfo(A.dtype).eps * scale * 10.0 ** j * np.eye(m))
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("the Nyström centers' Gram matrix is not positive definite even with jitter; "
                                "is the stored kernel positive semi-definite?")


def _nystrom_preconditioner(store, alpha, m, random_state):
    """P⁻¹ from a rank-m Nyström approximation of K built on m uniformly drawn columns."""
    n = store.shape[0]
    columns = np.sort(np.random.default_rng(random_state).choice(n, size=m, replace=False))
    K_nm = _columns(store, columns)
    L = _cholesky_with_jitter(K_nm[columns])
    B = lapack_blocks.solve_triangular(L, K_nm.T, lower=True).T   # K_nys = B Bᵀ
    del K_nm
    U, s, _ = np.linalg.svd(B, full_matrices=False)    # NumPy's LAPACK has 64-bit indices (n·m may pass 2³¹)
    lam = s ** 2
    mu = max(alpha, n * np.finfo(np.float64).eps * float(lam[0]))    # α = 0: a tiny shift keeps P⁻¹ finite
    scale = (lam[-1] + mu) / (lam + mu)

    def precondition(R):
        projected = U.T @ R
        return U @ (scale[:, None] * projected) + (R - U @ projected)

    return precondition


def fits_in_memory(store, memory_limit=None) -> bool:
    """Whether ``solve_stored(method="auto")`` would load ``store`` (n² entries in its dtype) into memory."""
    limit = int(0.8 * available_memory()) if memory_limit is None else memory_limit
    n = store.shape[0]
    return n * n * store.dtype.itemsize + 8 * n * 64 <= limit
