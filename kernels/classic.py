"""Classic kernels (RBF, Laplace, polynomial): baselines for the neural kernels, with scikit-learn's conventions.

Each kernel is a callable ``k(x1, x2=None) -> (n1, n2)`` array (``x2=None`` means ``x2 = x1``), written once
against the array namespace of its inputs (NumPy on the CPU, CuPy on the GPU). Formulas and defaults are those
of ``sklearn.metrics.pairwise`` (``rbf_kernel``, ``laplacian_kernel``, ``polynomial_kernel``), so results agree
with scikit-learn to rounding:

- ``RBF(gamma)``:        k(x, y) = exp(−γ‖x − y‖²)
- ``Laplace(gamma)``:    k(x, y) = exp(−γ‖x − y‖₁)
- ``Polynomial(degree, gamma, coef0)``: k(x, y) = (γ⟨x, y⟩ + c₀)^degree

``gamma=None`` means γ = 1 / n_features, as in scikit-learn.
"""
from __future__ import annotations

import numpy as np
from kernels import backend
from kernels.parameters import ParameterHolder
from kernels.validation import KernelOverflowError, check_array, check_choice, check_scalar

# Row block for the Laplace kernel's (block, n2, d) difference tensor: about 2**22 elements per block.
_L1_BLOCK_ELEMENTS = 2 ** 22


def _pair(x1, x2):
    """Validate ``x1``, ``x2`` (2-D float arrays, same number of columns); ``x2=None`` reuses ``x1``."""
    x1 = check_array(x1, "x1", ndim=2)
    if x2 is None:
        return x1, x1, True
    x2 = check_array(x2, "x2", ndim=2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 must have the same number of features, got {x1.shape[1]} and {x2.shape[1]}")
    if backend.device_of(x1) != backend.device_of(x2):
        raise ValueError("x1 and x2 must live on the same device")
    return x1, x2, False


def check_gamma(gamma):
    """γ must be None (= 1/n_features) or a finite number > 0."""
    return check_scalar(gamma, "gamma", float, min_val=0, include_boundaries="neither", allow_none="1 / n_features")


def _gamma(gamma, n_features):
    return 1.0 / n_features if gamma is None else float(gamma)


def squared_distances(x1, x2, same: bool):
    """‖x1_i − x2_j‖² by the Gram expansion, clipped at 0; exactly 0 on the diagonal when ``same``.

    Inputs are divided by a power of two 2^e first (exact) and the result multiplied by 4^e, so large inputs
    give +inf for far-apart pairs (exp(−γ·inf) = 0, the right limit) instead of inf − inf = NaN.
    """
    e = backend.power_of_two_exponent(x1, x2)
    if abs(e) <= 16:
        return _squared_distances(x1, x2, same)
    d2 = _squared_distances(backend.times_power_of_two(x1, -e), backend.times_power_of_two(x2, -e), same)
    with np.errstate(over="ignore"):
        return backend.times_power_of_two(d2, 2 * e)


def _squared_distances(x1, x2, same: bool):
    xp = backend.get_namespace(x1)
    sq1 = xp.sum(x1 * x1, axis=1)
    sq2 = sq1 if same else xp.sum(x2 * x2, axis=1)
    d2 = sq1[:, None] + sq2[None, :] - 2.0 * (x1 @ x2.T)
    d2 = xp.clip(d2, 0.0, None)
    if same:
        n = x1.shape[0]
        d2 = xp.where(xp.eye(n, dtype=xp.bool, device=d2.device), xp.zeros_like(d2), d2)
    return d2


def _exp_neg(gamma: float, d):
    """exp(−γ·d) for distances d ≥ 0 in d's dtype. A γ beyond that dtype's range (γ = 1e300 with float32
    inputs) would round to inf and give inf·0 = NaN at d = 0: the product is then formed in float64 (where γ·d
    is 0 at d = 0 and overflows to +inf, exp → 0, elsewhere) and the result rounded back."""
    xp = backend.get_namespace(d)
    if gamma <= float(xp.finfo(d.dtype).max):
        return xp.exp(-gamma * d)
    with np.errstate(over="ignore"):
        return xp.astype(xp.exp(-gamma * xp.astype(d, xp.float64)), d.dtype)


class _Kernel(ParameterHolder):
    """A classic kernel: a picklable holder of its parameters, called as ``k(x1, x2=None)``."""


class _GammaKernel(_Kernel):
    """A kernel whose only parameter is γ (None = 1/n_features)."""

    _param_names = ("gamma",)

    def __init__(self, gamma=None):
        check_gamma(gamma)
        self.gamma = gamma


class RBF(_GammaKernel):
    """Gaussian kernel exp(−γ‖x − y‖²); γ = 1/n_features by default (as ``sklearn.metrics.pairwise.rbf_kernel``)."""

    def __call__(self, x1, x2=None):
        x1, x2, same = _pair(x1, x2)
        return _exp_neg(_gamma(self.gamma, x1.shape[1]), squared_distances(x1, x2, same))


class Laplace(_GammaKernel):
    """Laplace kernel exp(−γ‖x − y‖₁); γ = 1/n_features by default (as ``sklearn…laplacian_kernel``)."""

    def __call__(self, x1, x2=None):
        x1, x2, _ = _pair(x1, x2)
        xp = backend.get_namespace(x1)
        n1, n2, d = x1.shape[0], x2.shape[0], x1.shape[1]
        block = max(1, _L1_BLOCK_ELEMENTS // max(1, n2 * d))
        gamma = _gamma(self.gamma, d)
        rows = [xp.sum(xp.abs(x1[i:min(i + block, n1), None, :] - x2[None, :, :]), axis=2)
                for i in range(0, n1, block)]
        return _exp_neg(gamma, xp.concat(rows, axis=0))


class Polynomial(_Kernel):
    """Polynomial kernel (γ⟨x, y⟩ + c₀)^degree; defaults degree=3, γ=1/n_features, c₀=1 (as scikit-learn)."""

    _param_names = ("degree", "gamma", "coef0")

    def __init__(self, degree=3, gamma=None, coef0=1.0):
        check_scalar(degree, "degree", int, min_val=1)
        check_gamma(gamma)
        check_scalar(coef0, "coef0", float)
        self.degree, self.gamma, self.coef0 = degree, gamma, coef0

    def __call__(self, x1, x2=None):
        x1, x2, _ = _pair(x1, x2)
        with np.errstate(over="ignore", invalid="ignore"):
            K = (_gamma(self.gamma, x1.shape[1]) * (x1 @ x2.T) + float(self.coef0)) ** int(self.degree)
        xp = backend.get_namespace(K)
        if not bool(xp.all(xp.isfinite(K))):
            dtype = str(K.dtype).split(".")[-1]
            raise KernelOverflowError(f"{self!r} overflowed {dtype} on x1/x2: (gamma*<x, y> + coef0)^degree must stay "
                             f"below {float(np.finfo(dtype).max):.2g}, so |gamma*<x, y> + coef0| below "
                             f"{float(np.finfo(dtype).max) ** (1 / int(self.degree)):.3g}; rescale x1/x2 "
                             "(e.g. standardise them) or lower degree")
        return K


KERNELS = {"rbf": RBF, "laplace": Laplace, "polynomial": Polynomial}


def resolve_kernel(kernel, name: str = "kernel"):
    """A kernel callable from a name ("rbf", "laplace", "polynomial": default parameters) or a callable."""
    if isinstance(kernel, str):
        return KERNELS[check_choice(kernel.lower(), name, sorted(KERNELS))]()
    if not callable(kernel):
        raise TypeError(f"{name} must be a callable k(x1, x2=None) or one of {sorted(KERNELS)}, "
                        f"got {type(kernel).__name__}")
    return kernel
