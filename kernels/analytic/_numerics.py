"""Numerics shared by every analytic kernel: the working precision, exact rescaling of homogeneous kernels, and
the range checks before and after the layer recursion (``KernelOverflowError`` naming x1/x2).

Working precision, decided here only: float32 inputs on the CPU are accumulated in float64 and the outputs
rounded once at the end (the layer recursion amplifies rounding errors: chaotic activations, deep nets; float64
costs about the same there). The CUDA kernels keep float32.
"""
from __future__ import annotations

import math

import numpy as np

from kernels import backend
from kernels.validation import KernelOverflowError


def uses_cuda_kernels(xp) -> bool:
    """Whether tiles in namespace ``xp`` run the CUDA kernels of ``kernels.analytic._cuda`` (CuPy arrays)."""
    return xp.__name__.endswith("cupy")


def working_inputs(xp, x1, x2):
    """(x1, x2) in the working precision: float32 NumPy inputs as float64, anything else unchanged."""
    if xp.__name__.endswith("numpy") and not uses_cuda_kernels(xp) and x1.dtype == xp.float32:
        return tuple(None if x is None else xp.astype(x, xp.float64) for x in (x1, x2))
    return x1, x2


def mean_square(xp, x) -> float:
    """max over samples of ‖x‖²/d (0 for None); +inf when the squares overflow."""
    if x is None:
        return 0.0
    with np.errstate(over="ignore"):
        return float(xp.max(xp.sum(x * x, axis=tuple(range(1, x.ndim))))) / math.prod(x.shape[1:])


def rescaled(homogeneous: bool, x1, x2):
    """Inputs divided by powers of two 2^e1, 2^e2 near their largest |values| when those lie outside
    [2^-16, 2^16] and the kernel is positively homogeneous, with the exponent e1 + e2 of the factor that
    restores the kernel (0: nothing rescaled).

    Without bias a ReLU-type network's kernels are homogeneous of degree one in each argument,
    K(a·x, b·x') = a·b·K(x, x') for a, b > 0 (every layer rule keeps k12 ∝ ab, k11 ∝ a², k22 ∝ b², and the
    duals' angle θ depends only on the correlation). Dividing by a power of two is exact, so the result
    equals the unscaled computation wherever that does not overflow or underflow (|x| ≈ 2e77 in float64
    or 2e10 in float32 used to give NaN), and x1, x2 of very different sizes lose nothing.
    """
    if not homogeneous:
        return x1, x2, 0
    e1 = backend.power_of_two_exponent(x1)
    e1 = e1 if abs(e1) > 16 else 0
    if x2 is None:
        return backend.times_power_of_two(x1, -e1), None, 2 * e1
    e2 = backend.power_of_two_exponent(x2)
    e2 = e2 if abs(e2) > 16 else 0
    return backend.times_power_of_two(x1, -e1), backend.times_power_of_two(x2, -e2), e1 + e2


def restored(outs: list, exponent: int) -> list:
    """The outputs times 2^exponent (the inverse of ``rescaled``; an overflow is reported by ``check_overflow``)."""
    if not exponent:
        return outs
    with np.errstate(over="ignore"):
        return [backend.times_power_of_two(o, exponent) for o in outs]


def _limit(dtype: str) -> float:
    return math.sqrt(float(np.finfo(dtype).max))


def check_input_range(xp, x1, x2, owner: str):
    """KernelOverflowError naming x1/x2 when (‖x‖²/d)² would overflow (the first layer multiplies two variances)."""
    dtype = str(x1.dtype).split(".")[-1]
    limit = _limit(dtype)
    for x, name in ((x1, "x1"), (x2, "x2")):
        size = mean_square(xp, x)
        if not size < limit:
            raise KernelOverflowError(
                f"{name} is too large for {owner} in {dtype}: its largest mean square ||x||^2/d is {size:.3g}, but "
                f"it must stay below {limit:.2g} (the kernel multiplies two variances). Rescale {name} (e.g. "
                "standardise it)" + (", or use float64 (limit 1.3e154)" if dtype == "float32" else "")
                + "; ReLU-type kernels without bias scale exactly and accept any finite input")


def check_overflow(xp, out, name: str, size: float, owner: str, depth: int, w_std: float):
    """KernelOverflowError when the kernel came out non-finite although inputs and weights were finite.

    Its mirror, exactly-zero entries from an underflow, is not checked at run time: correct kernels have them
    too (orthogonal inputs under odd activations such as erf and identity, anti-parallel ones under ReLU and
    step, where θ = π; true values below the dtype's smallest normal), so a check would need the input Gram and
    per-activation rules, and still could not tell those apart from a flushed cross term. The cause is removed
    instead: the CUDA duals rescale their arguments (``kernels.analytic._cuda``), the CPU accumulates float32 in
    float64, and tests/cuda_host/test_underflow.py checks that zeros appear only where the inputs are orthogonal.
    """
    if bool(xp.all(xp.isfinite(out))):
        return
    dtype = str(out.dtype).split(".")[-1]
    raise KernelOverflowError(
        f"the {name} of {owner} overflowed {dtype} on inputs x1/x2 with largest mean square ||x||^2/d = "
        f"{size:.3g}: kernel values must stay below about {_limit(dtype):.1g} in {dtype} (the recursion multiplies "
        f"two variances), and each of the depth={depth} layers scales them by about w_std^2 = {w_std ** 2:.3g} "
        "times the activation's gain. Rescale x1/x2 (e.g. standardise them) or lower w_std or depth"
        + (", or use float64" if dtype == "float32" else ""))
