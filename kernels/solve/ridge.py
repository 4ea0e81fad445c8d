"""Kernel regression solvers: Cholesky KRR, the eigen path (many ridges and gradient-flow times), Nyström + PCG.

Ridge convention (scikit-learn's ``KernelRidge``): the dual coefficients solve (K + α·I) c = y and predictions
are f(x*) = K(x*, X) c, so α here equals ``KernelRidge(alpha=α)``; α = 0 is min-norm interpolation.

Gradient flow (docs/conventions.md, *Gradient flow and ridge*): on the loss (1/2n)·(‖f(X) − y‖² + α‖f‖²_H)
from f₀ = 0 the dual coefficients are c(t) = (K + αI)⁻¹ (I − exp(−t·(K + αI)/n)) y; with α = 0 this is
f_t(x*) = K(x*, X) K⁻¹ (I − exp(−tK/n)) y, what a linearized network trained by full-batch gradient flow
predicts; t → ∞ gives KRR with ridge α.

Ill-conditioned or indefinite Gram matrices (α = 0 with duplicate rows, kernels that are not positive
definite): when the Cholesky factorisation fails or a pivot falls below the cutoff, the solve falls back to an
eigendecomposition and treats eigenvalues λ + α ≤ rcond·max|λ + α| (rcond = n·eps of the dtype, the cutoff of
``numpy.linalg.pinv``-style solvers) as zero — a pseudo-inverse — and warns with ``GramWarning``. The result is
always finite.

Arrays are NumPy (SciPy's LAPACK), CuPy (cuSOLVER) or any array-API namespace (generic ``xp.linalg``).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import warnings

import array_api_compat
import numpy as np
import scipy.linalg

from kernels import backend
from kernels.solve import lapack_blocks
from kernels.solve.krylov import conjugate_gradient
from kernels.validation import ArgumentTypeError, check_array, check_scalar


class GramWarning(RuntimeWarning):
    """The Gram matrix was singular or indefinite to working precision; a pseudo-inverse was used instead."""


# ----------------------------------------------------------------------------------------------- validation
def check_alpha(alpha, name: str = "alpha") -> float:
    """The ridge α: a finite real number ≥ 0."""
    return check_scalar(alpha, name, float, min_val=0)


def check_time(t, name: str = "t"):
    """The gradient-flow time t: None (converged) or a real number ≥ 0 (math.inf also means converged)."""
    return check_scalar(t, name, float, min_val=0, allow_inf=True, allow_none="converged")


def finite_coefficients(coef, y, what: str = "dual coefficients"):
    """``coef``, or a ValueError naming y when solving overflowed (y near the dtype's largest value)."""
    xp = backend.get_namespace(coef)
    if not bool(xp.all(xp.isfinite(coef))):
        raise ValueError(f"the {what} overflowed {str(coef.dtype).split('.')[-1]}: y is too large (max |y| = "
                         f"{float(xp.max(xp.abs(y))):.3g}) for this K and ridge; rescale y (e.g. standardise it)")
    return coef


def check_symmetric(K, name: str = "K", block: int = 1024):
    """ValueError unless K is square and symmetric to √eps relative to max|K| (compared in row blocks, so no
    n×n temporary): a Gram matrix computed in tiles is symmetric to rounding, a transposed or mixed-up one is not."""
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square Gram matrix, got shape {tuple(K.shape)}")
    xp = backend.get_namespace(K)
    scale = float(xp.max(xp.abs(K)))
    n = K.shape[0]
    worst = max((float(xp.max(xp.abs(K[i:min(i + block, n), :] - xp.permute_dims(K[:, i:min(i + block, n)], (1, 0)))))
                 for i in range(0, n, block)), default=0.0)
    if worst > math.sqrt(_eps(K)) * scale:
        raise ValueError(f"{name} must be symmetric (a Gram matrix K(X, X)), but max|{name} - {name}.T| = {worst:.3g} "
                         f"against max|{name}| = {scale:.3g}; if the asymmetry is rounding, pass ({name} + {name}.T) / 2")
    return K


def check_alphas(alphas, name: str = "alphas") -> list:
    """A non-empty sequence of ridges, each a finite number >= 0 (a single number is refused: use dual_coef)."""
    if isinstance(alphas, (numbers.Number, str, bytes)) or not hasattr(alphas, "__len__"):
        raise ArgumentTypeError(f"{name} must be a non-empty sequence of ridges (list or 1-D array), got "
                        f"{type(alphas).__name__} {alphas!r}; for a single ridge use dual_coef(y, alpha=...)")
    values = list(backend.to_numpy(alphas).tolist() if backend.is_array(alphas) else alphas)
    if not values:
        raise ValueError(f"{name} is empty; give at least one ridge alpha >= 0")
    return [check_alpha(a, f"{name}[{i}]") for i, a in enumerate(values)]


def _check_gram(K, y):
    K = check_symmetric(check_array(K, "K", ndim=2))
    y = _like(check_array(y, "y"), K)
    if y.ndim not in (1, 2) or y.shape[0] != K.shape[0]:
        raise ValueError(f"y must have shape (n,) or (n, n_targets) with n = {K.shape[0]} (the size of K), "
                         f"got {tuple(y.shape)}")
    if backend.device_of(y) != backend.device_of(K):
        raise ValueError("K and y must live on the same device")
    return K, y


def _is_gram_store(K) -> bool:
    from kernels.grams.store import GramStore
    return isinstance(K, GramStore)


def _like(y, reference):
    """y cast to the dtype of ``reference`` (same namespace)."""
    xp = backend.get_namespace(reference)
    return y if y.dtype == reference.dtype else xp.astype(y, reference.dtype)


def _eps(A) -> float:
    """Machine epsilon of A's dtype (NumPy, CuPy or array-API dtype)."""
    return float(np.finfo(str(A.dtype).split(".")[-1]).eps)


def _rcond(K) -> float:
    """The relative cutoff n·eps (of K's dtype) below which eigenvalues and pivots count as zero."""
    return K.shape[0] * _eps(K)


# ----------------------------------------------------------------------------------------------- dense linear algebra
def _cholesky_lower(A, xp):
    """Lower Cholesky factor of A (other triangle zero), or None when A is not positive definite.

    CuPy only reports a failed factorisation when asked: under its default ``linalg='ignore'`` cuSOLVER's
    ``potrf`` stops at the first non-positive pivot and returns the half-factored matrix, finite garbage
    with no error. So CuPy runs under ``cupyx.errstate(linalg='raise')``, which checks cuSOLVER's info code.
    """
    if array_api_compat.is_numpy_namespace(xp):
        try:
            return lapack_blocks.cholesky_lower(A)
        except np.linalg.LinAlgError:
            return None
    if array_api_compat.is_cupy_namespace(xp):
        import cupyx
        try:
            with cupyx.errstate(linalg="raise"):
                L = xp.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            return None
    else:
        try:
            L = xp.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            return None
    # other namespaces may return NaN instead of raising; a valid factor has a positive finite diagonal
    diagonal = xp.linalg.diagonal(L)
    return L if bool(xp.all(xp.isfinite(diagonal))) and bool(xp.all(diagonal > 0)) else None


def solve_triangular(L, B, xp, *, lower: bool = True, trans: bool = False):
    """Solve L·X = B (or Lᵀ·X = B with ``trans``) for triangular L: SciPy, cupyx, or a generic solve."""
    if array_api_compat.is_numpy_namespace(xp):
        return lapack_blocks.solve_triangular(L, B, lower=lower, trans=trans)
    if array_api_compat.is_cupy_namespace(xp):
        import cupyx.scipy.linalg   # CuPy is optional: imported on the GPU path only
        return cupyx.scipy.linalg.solve_triangular(L, B, lower=lower, trans=int(trans))
    return xp.linalg.solve(L.T if trans else L, B)


def _add_diagonal(A, value, xp):
    return A + value * xp.eye(A.shape[0], dtype=A.dtype, device=array_api_compat.device(A))


def _pivots_ok(pivot_diagonal, xp, rcond: float) -> bool:
    """Cholesky pivots L_ii all positive and L_ii² all above rcond times the largest: K + αI is numerically
    positive definite. (Squaring alone would let a negative pivot of a garbage factor pass.)"""
    if not bool(xp.all(pivot_diagonal > 0)):
        return False
    pivots = pivot_diagonal ** 2
    return float(xp.min(pivots)) > rcond * float(xp.max(pivots))


# ----------------------------------------------------------------------------------------------- exact KRR
def krr_solve(K, y, alpha: float = 0.0, *, overwrite_K: bool = False):
    """Dual coefficients c of kernel ridge regression, (K + α·I) c = y, for all targets (columns of y) at once.

    One Cholesky factorisation (LAPACK ``potrf`` through SciPy on the CPU, cuSOLVER on the GPU) serves every
    target. ``overwrite_K=True`` lets the NumPy path factorise in K's own memory (no n×n copy); K then holds
    garbage afterwards. When the factorisation fails or a pivot is below n·eps of the largest, falls back to
    the eigen pseudo-inverse (``EigenPath``) with a ``GramWarning``. A ``kernels.GramStore`` is solved by
    ``kernels.solve.stored.solve_stored`` (in-memory Cholesky with float64 refinement, or streaming CG).
    """
    if _is_gram_store(K):
        from kernels.solve.stored import solve_stored
        return solve_stored(K, y, alpha).coef
    K, y = _check_gram(K, y)
    return solve_checked(K, y, check_alpha(alpha), overwrite_K)


def solve_checked(K, y, alpha: float, overwrite_K: bool = False):
    """``krr_solve`` on arguments already checked (a finite symmetric K, y of matching rows on K's device, α ≥ 0):
    the inner path of callers that validated them once (the estimators)."""
    xp = backend.get_namespace(K)
    rcond = _rcond(K)
    if array_api_compat.is_numpy_namespace(xp):
        coef, K = _krr_lapack(K, y, alpha, overwrite_K, rcond)
    else:
        L = _cholesky_lower(_add_diagonal(K, alpha, xp), xp)
        coef = None
        if L is not None and _pivots_ok(xp.linalg.diagonal(L), xp, rcond):
            coef = solve_triangular(L, solve_triangular(L, y, xp), xp, trans=True)
    if coef is not None:
        return finite_coefficients(coef, y)
    warnings.warn(f"K + alpha*I (alpha={alpha}) is singular or indefinite to working precision; "
                  "solving with its eigendecomposition, eigenvalues below n*eps*max treated as zero",
                  GramWarning, stacklevel=2)
    return EigenPath(K).dual_coef(y, alpha=alpha)


def _krr_lapack(K, y, alpha, overwrite, rcond):
    """SciPy path: in-place Cholesky into K's upper triangle (``lapack_blocks.cholesky_inplace``: ``potrf`` on the
    Fortran-ordered view Kᵀ = K, in blocks when K is over 2 GiB), then its two triangular solves.

    Returns (coef or None, K intact). LAPACK only touches one triangle, so on failure K is rebuilt from the
    other triangle and the saved diagonal.
    """
    diagonal = np.array(np.diagonal(K))
    A = K if overwrite else np.array(K, order="C")
    A.flat[::A.shape[0] + 1] += alpha
    try:
        lapack_blocks.cholesky_inplace(A)
        factored = True
    except np.linalg.LinAlgError:
        factored = False
    if factored and _pivots_ok(np.diagonal(A), np, rcond):
        return lapack_blocks.cholesky_solve(A, y), K
    if np.shares_memory(A, K):  # rebuild K from the triangle LAPACK did not touch (upper of the view Aᵀ)
        upper = np.triu(A.T, 1)
        K = upper + upper.T
        K.flat[::K.shape[0] + 1] = diagonal
    return None, K


# ----------------------------------------------------------------------------------------------- eigen path
class EigenPath:
    """One eigendecomposition K = U·diag(λ)·Uᵀ serving many ridges α, gradient-flow times t and LOO errors.

    For each (α, t) the dual coefficients are c = U·diag(g(λ))·Uᵀ y with
    g(λ) = 1/(λ + α) (KRR) or g(λ) = (1 − exp(−t(λ + α)/n))/(λ + α) (gradient flow at time t), so once
    Uᵀy is known each extra (α, t) costs one n×n by n×k product. Eigenvalues with λ + α ≤ n·eps·max|λ|
    (numerical null space or negative rounding) get g = 0: the pseudo-inverse, never NaN.
    """

    def __init__(self, K, *, checked: bool = False):
        """``checked=True``: K is known finite and symmetric (a caller validated it), so it is not scanned again."""
        if _is_gram_store(K):   # a stored Gram matrix is read into memory, in float64
            K = K.to_numpy(dtype=np.float64)
        if not checked:
            K = check_symmetric(check_array(K, "K", ndim=2))
        self.xp = backend.get_namespace(K)
        self.n = K.shape[0]
        self.eigenvalues, self.eigenvectors = _eigh(K, self.xp)
        self.cutoff = _rcond(K) * float(self.xp.max(self.xp.abs(self.eigenvalues)))

    def _project(self, y):
        y = _like(check_array(y, "y"), self.eigenvalues)
        if y.ndim not in (1, 2) or y.shape[0] != self.n:
            raise ValueError(f"y must have shape (n,) or (n, n_targets) with n = {self.n}, got {tuple(y.shape)}")
        return self.eigenvectors.T @ y

    def spectral_filter(self, alpha: float = 0.0, t=None):
        """g(λ) for one (α, t): 1/(λ+α) when t is None, else −expm1(−t(λ+α)/n)/(λ+α); 0 below the cutoff."""
        xp = self.xp
        alpha, t = check_alpha(alpha), check_time(t)
        shifted = self.eigenvalues + alpha
        kept = shifted > self.cutoff
        safe = xp.where(kept, shifted, xp.ones_like(shifted))
        if t is None or math.isinf(t):
            g = 1.0 / safe
        else:
            g = -xp.expm1(-(t / self.n) * safe) / safe
        return xp.where(kept, g, xp.zeros_like(g))

    def dual_coef(self, y, alpha: float = 0.0, t=None):
        """Dual coefficients for one ridge α and time t (None: converged KRR)."""
        uty = self._project(y)
        g = self.spectral_filter(alpha, t)
        return finite_coefficients(self.eigenvectors @ (g[:, None] * uty if uty.ndim == 2 else g * uty), uty)

    def dual_coefs(self, y, alphas, t=None):
        """Dual coefficients for every ridge in ``alphas``: shape (len(alphas),) + y.shape, one matrix product."""
        xp = self.xp
        alphas = check_alphas(alphas)
        uty = self._project(y)
        uty2 = uty if uty.ndim == 2 else uty[:, None]
        filters = xp.stack([self.spectral_filter(a, t) for a in alphas], axis=1)  # (n, A)
        k = uty2.shape[1]
        scaled = xp.reshape(filters[:, :, None] * uty2[:, None, :], (self.n, len(alphas) * k))
        coefs = xp.reshape(self.eigenvectors @ scaled, (self.n, len(alphas), k))
        coefs = finite_coefficients(xp.permute_dims(coefs, (1, 0, 2)), uty)
        return coefs if uty.ndim == 2 else coefs[:, :, 0]

    def loo_errors(self, y, alphas):
        """Closed-form leave-one-out mean squared error of KRR for each ridge in ``alphas`` (shape (A,)).

        With G = (K + αI)⁻¹ and c = G y, the LOO residual of sample i is c_i / G_ii (the classic
        hat-matrix identity y_i − f₋ᵢ(x_i) = (y_i − ŷ_i)/(1 − H_ii) with H = K G, since y − ŷ = α c and
        1 − H_ii = α G_ii; Rifkin & Lippert, "Notes on regularized least squares", 2007). G is the
        pseudo-inverse when α = 0.

        Samples with G_ii = 0 (to n·eps of the largest filter value: a zero kernel row at α = 0, or an all-zero
        or negative-definite K, whose eigenvalues are all cut) do not influence the fit, so their LOO
        residual is the plain residual y_i − ŷ_i; a ``GramWarning`` says so, and another one when K has
        eigenvalues below −cutoff (not positive semi-definite). The result is always finite.
        """
        xp = self.xp
        alphas = check_alphas(alphas)
        uty = self._project(y)
        uty2 = uty if uty.ndim == 2 else uty[:, None]
        y2 = self.eigenvectors @ uty2
        squares = self.eigenvectors ** 2
        if float(xp.min(self.eigenvalues)) < -self.cutoff:
            warnings.warn(f"K is not positive semi-definite (smallest eigenvalue {float(xp.min(self.eigenvalues)):.3g}, "
                          f"cutoff {self.cutoff:.3g}); eigenvalues below the cutoff are treated as zero",
                          GramWarning, stacklevel=2)
        errors, flagged = [], 0
        for a in alphas:
            g = self.spectral_filter(a)
            c = self.eigenvectors @ (g[:, None] * uty2)
            diag = squares @ g
            unused = diag <= _rcond(self.eigenvectors) * max(float(xp.max(g)), 0.0)
            flagged = max(flagged, int(xp.sum(xp.astype(unused, xp.int64))))
            fitted = self.eigenvectors @ ((self.eigenvalues * g)[:, None] * uty2)
            residual = xp.where(unused[:, None], y2 - fitted,
                                c / xp.where(unused, xp.ones_like(diag), diag)[:, None])
            errors.append(xp.mean(residual ** 2))
        if flagged:
            warnings.warn(f"{flagged} sample(s) have G_ii = 0 for some ridge (a zero kernel row at alpha = 0, or K "
                          "zero or negative definite): their LOO residual is the plain residual y_i - f(x_i)",
                          GramWarning, stacklevel=2)
        return finite_coefficients(xp.stack(errors), uty, "LOO errors")


def _eigh(K, xp):
    if array_api_compat.is_numpy_namespace(xp):
        if lapack_blocks.needs_blocks(K):       # NumPy's LAPACK has 64-bit indices, SciPy's 32 (n ≥ 46,341 fails)
            return np.linalg.eigh(K)
        return scipy.linalg.eigh(K, driver="evd", check_finite=False)
    return xp.linalg.eigh(K)


# ----------------------------------------------------------------------------------------------- Nyström + PCG
@dataclasses.dataclass
class NystromKRR:
    """A fitted Nyström KRR model: f(x) = k(x, centers) · coef."""

    kernel: object
    centers: object
    coef: object
    n_iter: int
    converged: bool

    def predict(self, x):
        return self.kernel(x, self.centers) @ self.coef


def nystrom_krr(kernel, X, y, alpha: float, n_centers: int, *, tol: float = 1e-10, max_iter: int = 200,
                random_state=None, block_size: int = 4096) -> NystromKRR:
    """Nyström kernel ridge regression solved by preconditioned conjugate gradient (FALKON-style).

    With m centers drawn uniformly without replacement, solves the Nyström-restricted problem
    min_β ‖y − K_nm β‖² + α βᵀ K_mm β, i.e. (K_nmᵀ K_nm + α K_mm) β = K_nmᵀ y, which equals exact KRR
    (K + αI) c = y when every sample is a center. Preconditioner (Rudi, Carratino & Rosasco, "FALKON",
    NeurIPS 2017): K_nmᵀK_nm ≈ (n/m)·K_mm², so with K_mm = L Lᵀ and A Aᵀ = (n/m)·LᵀL + αI the map
    β = L⁻ᵀ A⁻ᵀ γ makes the system close to the identity and CG converges in a few iterations.
    Memory O(n·m) (K_nm is kept; it is computed ``block_size`` rows at a time). ``tol`` is the relative
    residual of the preconditioned system, per target column.
    """
    from kernels.classic import resolve_kernel
    kernel = resolve_kernel(kernel)
    X = check_array(X, "X", ndim=2)
    xp = backend.get_namespace(X)
    y = _like(check_array(y, "y"), X)
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape (n,) or (n, n_targets) with n = {X.shape[0]}, got {tuple(y.shape)}")
    alpha = check_alpha(alpha)
    check_scalar(tol, "tol", float, min_val=0)
    check_scalar(max_iter, "max_iter", int, min_val=1)
    check_scalar(block_size, "block_size", int, min_val=1)
    n = X.shape[0]
    m = check_scalar(n_centers, "n_centers", int, min_val=1, max_val=n)
    rng = np.random.default_rng(random_state)
    index = np.sort(rng.choice(n, size=m, replace=False))
    centers = xp.take(X, xp.asarray(index, device=array_api_compat.device(X)), axis=0)
    Y = y if y.ndim == 2 else y[:, None]

    K_nm = xp.concat([kernel(X[i:min(i + block_size, n), :], centers) for i in range(0, n, block_size)], axis=0)
    K_mm = kernel(centers)
    L = _jittered_cholesky(K_mm, xp)
    A = _jittered_cholesky(_add_diagonal((n / m) * (L.T @ L), alpha, xp), xp)

    # B = L⁻ᵀ A⁻ᵀ formed once (two triangular solves with m right-hand sides): CG then needs only matrix
    # products. Any nonsingular B gives the same β = Bγ = H⁻¹ K_nmᵀ y, so rounding in B only affects speed.
    identity = xp.eye(m, dtype=X.dtype, device=array_api_compat.device(X))
    B = solve_triangular(L, solve_triangular(A, identity, xp, trans=True), xp, trans=True)

    def operator(v):              # Bᵀ (K_nmᵀ K_nm + α K_mm) B v
        w = B @ v
        return B.T @ (K_nm.T @ (K_nm @ w) + alpha * (K_mm @ w))

    gamma, n_iter, converged = conjugate_gradient(operator, B.T @ (K_nm.T @ Y), tol=tol, max_iter=max_iter,
                                                  xp=xp)
    coef = finite_coefficients(B @ gamma, y)
    return NystromKRR(kernel, centers, coef if y.ndim == 2 else coef[:, 0], n_iter, converged)


def _jittered_cholesky(A, xp):
    """Lower Cholesky factor of A + εI with the smallest ε = m·eps·max(diag)·10^j (j = 0..6) that works."""
    scale = float(xp.max(xp.abs(xp.linalg.diagonal(A))))
    eps = _eps(A)
    for j in range(7):
        L = _cholesky_lower(_add_diagonal(A, A.shape[0] * eps * scale * 10.0 ** j, xp), xp)
        if L is not None:
            return L
    raise np.linalg.LinAlgError("the centers' Gram matrix is not positive definite even with jitter "
                                f"{A.shape[0] * eps * scale * 1e6:.3g}; is the kernel positive semi-definite?")
