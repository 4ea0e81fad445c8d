"""Dual activations: for (u, v) ~ N(0, [[k11, k12], [k12, k22]]) the pair of functions

    nngp(k12, k11, k22) = E[φ(u) φ(v)]        (next NNGP entry)
    ntk(k12, k11, k22)  = E[φ'(u) φ'(v)]      (factor multiplying the NTK)

Arguments broadcast against each other (a tile of cross terms with its row and column variances), and
the code uses only the array API standard, so the same functions run on NumPy, CuPy and array-api-strict.

Closed forms (Cho & Saul 2009, arc-cosine kernels; Williams 1997, erf), with
s = √(k11·k22 − k12²) and θ = atan2(s, k12) ∈ [0, π]:

* ``"relu"``, ``"leaky_relu"`` (slope a below zero), ``"abs"`` (a = −1), ``"identity"`` (a = 1):
  φ(x) = a·min(x, 0) + max(x, 0) gives
  E[φφ] = (1 + a²)·(s + (π − θ)·k12)/2π − 2a·(s − θ·k12)/2π,
  E[φ'φ'] = (1 + a²)·(π − θ)/2π + 2a·θ/2π.
* ``"step"`` (Heaviside 1[x > 0], arc-cosine order 0): E[φφ] = (π − θ)/2π (0 when a variance is 0, as φ(0) = 0);
  φ' = 0 almost everywhere, so E[φ'φ'] = 0.
* ``"erf"``: E[φφ] = (2/π)·asin(2k12 / √((1 + 2k11)(1 + 2k22))),
  E[φ'φ'] = (4/π) / √((1 + 2k11)(1 + 2k22) − 4k12²).

Any other elementwise function ("tanh", "gelu", "softplus", "sigmoid", "sin", "swish" = x·sigmoid(x), or a
callable) goes through numerical quadrature. Writing (u, v) = (√k11·r·cos α, √k22·r·cos(α − β)) with cos β = k12/√(k11k22)
turns the expectation into (1/2π)∫dα ∫r·e^(−r²/2)·φ(u)φ(v) dr. The angle is split where u or v changes sign
(α = ±π/2, β ± π/2), so kinks at zero (ReLU-like functions) fall on panel edges, and each of the four arcs
and the radius r ∈ [0, 12] use Gauss–Legendre rules. Plain tensor-product Gauss–Hermite converges only
algebraically across such a kink (measured: 9e-4 absolute error, 0.3% relative, on the ReLU dual at
ρ = 0.5 with 64² nodes), which is why the split polar rule is used instead.

Measured quadrature error (float64, 32 angular nodes per arc × 48 radial nodes, against the closed
forms above over 2000 random (k11, k22, ρ) with k ∈ [0.1, 10], ρ ∈ [−1, 1], exact derivatives):
ReLU nngp 9e-16 (relative to √(k11·k22)), ntk 6e-15; erf nngp 1.5e-11 absolute, ntk 2e-9 relative
(the erf derivative is a narrow bump when k ≈ 10; for k ≤ 3 the error is 4e-13).
tests/kernels/test_duals.py checks 1e-8. A callable's derivative is a 5-point central difference with
step 1e-3 (truncation error h⁴·|φ⁽⁵⁾|/30 ≈ 3e-14·|φ⁽⁵⁾|).
Quadrature costs 4·32·48 = 6144 function evaluations per entry: fine for thousands of points, slow
for 10⁴ × 10⁴ kernels.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import numpy as np
import scipy.special

from kernels.backend import get_namespace
from kernels.validation import check_choice, check_scalar

CLOSED_FORMS = ("relu", "leaky_relu", "abs", "identity", "step", "erf")
QUADRATURE = ("tanh", "gelu", "softplus", "sigmoid", "sin", "swish")
ACTIVATIONS = CLOSED_FORMS + QUADRATURE

_ANGLE_NODES = 32
_RADIAL_NODES = 48
_RADIUS = 12.0          # e^(−72) · polynomial growth: negligible tail
_CHUNK_POINTS = 2 ** 22  # evaluations held in memory at once by the quadrature


@dataclasses.dataclass(frozen=True)
class Dual:
    """A dual activation: ``nngp`` gives E[φ(u)φ(v)], ``ntk`` gives E[φ'(u)φ'(v)].

    ``both`` returns the pair at once (sharing s and θ; for ReLU it reuses k12's buffer, so pass an array
    you own); ``name`` and ``slope`` identify a closed form to the fused GPU kernels (``closed`` is False
    for quadrature duals).
    """
    name: str
    nngp: Callable
    ntk: Callable
    slope: float = 0.0
    closed: bool = True
    params: tuple = ()

    def both(self, k12, k11, k22):
        if self.name in ("relu", "leaky_relu", "abs"):
            return _abrelu_both(self.slope, k12, k11, k22)
        if self.name == "abrelu":
            return _abrelu_both(self.params[0], k12, k11, k22, self.params[1])
        return self.nngp(k12, k11, k22), self.ntk(k12, k11, k22)


# ------------------------------------------------------------------------------------------ closed forms
def clamp_correlation(k12, k11, k22):
    """k12 clipped to [−√(k11·k22), √(k11·k22)], so the correlation ρ = k12/√(k11·k22) stays in [−1, 1], and
    set to ±√(k11·k22) when |ρ| > 1 − 16·eps.

    Rounding can push a cross term past Cauchy–Schwarz, or just short of it, for duplicate rows (x·x' comes
    from a matrix product, ‖x‖² from a sum); for activations whose correlation map expands near ρ = 1 (erf,
    tanh with w_std > 1) that rounding then grows layer after layer (measured 4e-8 relative after 100 erf
    layers in float64, and a non-PSD kernel in float32). A correlation within 16·eps of ±1 cannot be resolved
    from the rounded inputs anyway (moving it changes the angle θ by at most √(32·eps), the size of the angle's
    own rounding error), and √(k·k) = k exactly in IEEE arithmetic, so a duplicate row's cross term becomes
    exactly its variance at every layer.
    """
    return _clamped(k12, k11, k22)[0]


def _clamped(k12, k11, k22):
    """(k12 clamped as ``clamp_correlation``, s² = k11·k22 − k12² ≥ 0), the arithmetic of the fused CPU loops
    (``kernels.analytic._cpu._clamped``), so the reference and fused engines agree bit for bit up to the angle.

    s² is formed as (b − |k12|)·(b + |k12|) with b = √(k11·k22), never as k11·k22 − k12²: the latter cancels
    catastrophically for near-identical inputs (an absolute error of eps·k11·k22 whatever s² is), which gave
    θ ≈ √eps ≈ 1e-8 where the fused loops, and the clamped k12, give θ = 0. Duals whose correlation map has an
    infinite slope at ρ = 1 amplify that difference at every layer (the step dual, θ ↦ 1 − θ/π: 1e-8 became
    20% of max|K| at depth 5), and a ReLU NTK built from it was not positive semi-definite (−1.9e-8·max).
    The factored form is exactly 0 for a snapped k12 (|k12| = b) and scales exactly with powers of two.
    """
    k12, bound, a = _clamped_parts(k12, k11, k22)
    return k12, _clip_low((bound - a) * (bound + a))


def _clip_low(v):
    return get_namespace(v).clip(v, min=0.0)


def _clamped_parts(k12, k11, k22):
    """(k12 clamped, b = √(k11·k22), |k12|). b is √k11·√k22 where k11·k22 is below the dtype's smallest normal
    number (float32: variances below ≈ 1e-19; a GPU flushes such products to 0, which snapped every k12 to 0),
    and √(k11·k22) everywhere else, so the result is unchanged wherever the product was representable."""
    xp = get_namespace(k12)
    product = k11 * k22
    tiny = float(xp.finfo(k12.dtype).smallest_normal)
    bound = xp.where(product >= tiny, xp.sqrt(product), xp.sqrt(k11) * xp.sqrt(k22))
    k12 = xp.clip(k12, min=-bound, max=bound)
    near = bound * (1.0 - 16 * float(xp.finfo(k12.dtype).eps))
    k12 = xp.where(xp.abs(k12) > near, xp.where(k12 > 0, bound, -bound), k12)
    return k12, bound, xp.abs(k12)


def _angle(k12, k11, k22):
    """(k12 clamped, s, θ) with s = √(k11·k22 − k12²) from ``_clamped`` and θ = atan2(s, k12) ∈ [0, π]
    (θ = 0 exactly when k12 was snapped to √(k11·k22)); s is √(b − |k12|)·√(b + |k12|) where s² is below the
    smallest normal number (flushed to 0 on a GPU in float32), as ``_clamped_parts`` does for b."""
    xp = get_namespace(k12)
    k12, bound, a = _clamped_parts(k12, k11, k22)
    s2 = _clip_low((bound - a) * (bound + a))
    tiny = float(xp.finfo(k12.dtype).smallest_normal)
    s = xp.where(s2 >= tiny, xp.sqrt(s2), xp.sqrt(_clip_low(bound - a)) * xp.sqrt(bound + a))
    return k12, s, xp.atan2(s, k12)


def _abrelu_coefficients(a: float, b: float = 1.0) -> tuple:
    """(c₊, c₋) = ((a² + b²)/2π, 2ab/2π) of the duals of φ(x) = a·min(x, 0) + b·max(x, 0)."""
    return (a * a + b * b) / (2 * math.pi), 2 * a * b / (2 * math.pi)


def _abrelu_both(a: float, k12, k11, k22, b: float = 1.0):
    """Both ABReLU duals from one (s, θ), with (c₊, c₋) from ``_abrelu_coefficients``:
    E[φ'φ'] = c₊(π − θ) + c₋θ and E[φφ] = (c₊ − c₋)·s + k12·E[φ'φ']."""
    c_same, c_cross = _abrelu_coefficients(a, b)
    k12, s, th = _angle(k12, k11, k22)
    th *= c_cross - c_same
    th += c_same * math.pi          # th now holds E[φ'φ']
    s *= c_same - c_cross
    if a == 0.0 and b == 1.0:       # ReLU: k12 is no longer needed, reuse its buffer
        k12 *= th
        k12 += s
        return k12, th
    s += k12 * th
    return s, th


def _abrelu(slope: float, b: float = 1.0) -> tuple:
    """(nngp, ntk) of φ(x) = slope·min(x, 0) + b·max(x, 0), from the module docstring's closed form."""
    c_same, c_cross = _abrelu_coefficients(float(slope), float(b))

    def nngp(k12, k11, k22):
        k12, s, th = _angle(k12, k11, k22)
        return c_same * (s + (math.pi - th) * k12) - c_cross * (s - th * k12)

    def ntk(k12, k11, k22):
        _, _, th = _angle(k12, k11, k22)
        return c_same * (math.pi - th) + c_cross * th

    return nngp, ntk


def _step_nngp(k12, k11, k22):
    """P(u > 0, v > 0) = (π − θ)/2π, and 0 when u or v has variance 0: φ = 1[x > 0] with φ(0) = 0, so an input
    whose pre-activation is exactly 0 (an all-zero row without bias) gives φ ≡ 0. (Taking θ = atan2(0, 0) = 0
    there instead gave K(0, x) = 1/2 for every x, and with x and −x an indefinite kernel.)"""
    xp = get_namespace(k12)
    _, _, th = _angle(k12, k11, k22)
    positive = (k11 > 0) & (k22 > 0)         # not k11·k22 > 0: that product underflows in float32
    return xp.where(positive, (math.pi - th) / (2 * math.pi), xp.zeros_like(th))


def _step_ntk(k12, k11, k22):
    xp = get_namespace(k12)
    return xp.zeros_like(k12 + k11 + k22)


def _identity_nngp(k12, k11, k22):
    xp = get_namespace(k12)
    return k12 + xp.zeros_like(k11 + k22)


def _identity_ntk(k12, k11, k22):
    xp = get_namespace(k12)
    return xp.ones_like(k12 + k11 + k22)


def _erf_nngp(k12, k11, k22):
    xp = get_namespace(k12)
    k12 = clamp_correlation(k12, k11, k22)
    q = xp.sqrt(1 + 2 * k11) * xp.sqrt(1 + 2 * k22)     # two roots: the product cannot overflow
    return (2 / math.pi) * xp.asin(xp.clip(2 * k12 / q, min=-1.0, max=1.0))


def _erf_ntk(k12, k11, k22):
    """(4/π)/√D with D = (1 + 2k11)(1 + 2k22) − 4k12² written as 1 + 2(k11 + k22) + 4(k11·k22 − k12²):
    no cancellation, and D ≥ 1 once k12 is clamped, so the factor is finite and at most 4/π."""
    xp = get_namespace(k12)
    _, gap = _clamped(k12, k11, k22)
    return (4 / math.pi) / xp.sqrt(1 + 2 * (k11 + k22) + 4 * gap)


# ------------------------------------------------------------------------------------------ quadrature
def _erf(x):
    """erf on NumPy/CuPy (SciPy / cupyx); other namespaces go through NumPy and back."""
    xp = get_namespace(x)
    if xp.__name__.endswith("cupy"):
        import cupyx.scipy.special   # CuPy is optional: imported on the GPU path only
        return cupyx.scipy.special.erf(x)
    if xp.__name__.endswith("numpy"):
        return scipy.special.erf(x)
    return xp.asarray(scipy.special.erf(np.asarray(x)), dtype=x.dtype, device=x.device)


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _gelu_prime(x):
    xp = get_namespace(x)
    return 0.5 * (1 + _erf(x / math.sqrt(2))) + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _sigmoid(x):
    xp = get_namespace(x)
    return 1 / (1 + xp.exp(-x))


def _softplus(x):
    xp = get_namespace(x)
    return xp.logaddexp(xp.zeros_like(x), x)


def _named_functions():
    def tanh(x):
        return get_namespace(x).tanh(x)

    def tanh_prime(x):
        t = get_namespace(x).tanh(x)
        return 1 - t * t

    def sigmoid_prime(x):
        s = _sigmoid(x)
        return s * (1 - s)

    def sin(x):
        return get_namespace(x).sin(x)

    def cos(x):
        return get_namespace(x).cos(x)

    def swish(x):
        return x * _sigmoid(x)

    def swish_prime(x):   # d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
        s = _sigmoid(x)
        return s * (1 + x * (1 - s))

    return {"tanh": (tanh, tanh_prime), "gelu": (_gelu, _gelu_prime), "softplus": (_softplus, _sigmoid),
            "sigmoid": (_sigmoid, sigmoid_prime), "sin": (sin, cos), "swish": (swish, swish_prime)}


def numerical_derivative(fn: Callable, step: float = 1e-3) -> Callable:
    """φ'(x) ≈ [φ(x−2h) − 8φ(x−h) + 8φ(x+h) − φ(x+2h)] / 12h (error h⁴·φ⁽⁵⁾/30)."""
    def derivative(x):
        return (fn(x - 2 * step) - 8 * fn(x - step) + 8 * fn(x + step) - fn(x + 2 * step)) / (12 * step)
    return derivative


@functools.lru_cache(maxsize=4)
def _rules(n_angle: int, n_radial: int):
    """Gauss–Legendre nodes/weights on [0, 1] for the arcs, and radial nodes r with weights r·e^(−r²/2)·dr."""
    xa, wa = np.polynomial.legendre.leggauss(n_angle)
    xr, wr = np.polynomial.legendre.leggauss(n_radial)
    r = _RADIUS * (xr + 1) / 2
    w_r = _RADIUS / 2 * wr * r * np.exp(-r * r / 2)
    return (xa + 1) / 2, wa / 2, r, w_r


def polar_expectation(f: Callable, g: Callable, k12, k11, k22, n_angle: int = _ANGLE_NODES,
                      n_radial: int = _RADIAL_NODES):
    """E[f(u)·g(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]) by the split polar Gauss–Legendre rule.

    Arcs of α (lengths β, π−β, β, π−β starting at −π/2) end where u or v changes sign.
    """
    xp = get_namespace(k12)
    k12, k11, k22 = xp.broadcast_arrays(k12, k11, k22)
    shape, dtype = k12.shape, k12.dtype
    k12, k11, k22 = (xp.reshape(a, (-1,)) for a in (k12, k11, k22))
    xa, wa, r, wr = (xp.asarray(a, dtype=dtype, device=k12.device) for a in _rules(n_angle, n_radial))
    sd1, sd2 = xp.sqrt(k11), xp.sqrt(k22)
    beta = _angle(k12, k11, k22)[2]     # clamped and snapped as the closed forms (0 when a variance is 0)
    zero = xp.zeros_like(beta)
    starts = (zero - math.pi / 2, beta - math.pi / 2, zero + math.pi / 2, beta + math.pi / 2)
    lengths = (beta, math.pi - beta, beta, math.pi - beta)
    per_entry = 4 * n_angle * n_radial
    chunk = max(1, _CHUNK_POINTS // per_entry)
    out = []
    n = k12.shape[0]
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        total = xp.zeros_like(k12[sl])
        for start, length in zip(starts, lengths):
            alpha = start[sl][:, None] + length[sl][:, None] * xa[None, :]                 # (m, n_angle)
            weight = length[sl][:, None] * wa[None, :]
            c1 = (sd1[sl][:, None] * xp.cos(alpha))[:, :, None] * r                    # (m, n_angle, n_r)
            c2 = (sd2[sl][:, None] * xp.cos(alpha - beta[sl][:, None]))[:, :, None] * r
            radial = xp.sum(f(c1) * g(c2) * wr, axis=2)
            total = total + xp.sum(weight * radial, axis=1)
        out.append(total / (2 * math.pi))
    return xp.reshape(xp.concat(out), shape)


def _quadrature(fn: Callable, derivative: Callable) -> tuple:
    def nngp(k12, k11, k22):
        return polar_expectation(fn, fn, k12, k11, k22)

    def ntk(k12, k11, k22):
        return polar_expectation(derivative, derivative, k12, k11, k22)

    return nngp, ntk


# ------------------------------------------------------------------------------------------ neural-tangents' forms
# The closed forms of neural-tangents 0.6.5 stax (``_src/stax/elementwise.py``), with S = k11 + k22 and
# P = k11·k22; each is E[φ(u)φ(v)] and E[φ'(u)φ'(v)] of the named φ (tests/kernels/analytic/test_duals_stax.py
# checks them by Monte Carlo, tests/kernels/test_stax.py against neural-tangents itself).
def abrelu(a: float, b: float) -> Dual:
    """φ(x) = a·min(x, 0) + b·max(x, 0) (ABRelu): the ReLU family's dual with c₊ = (a² + b²)/2π, c₋ = 2ab/2π.
    The named members keep their names (and fused engines): b = 1 is 'leaky_relu' with slope a ('relu' at
    a = 0, 'abs' at −1, 'identity' at 1)."""
    a, b = float(a), float(b)
    if b == 1.0:
        if a == 1.0:
            return Dual("identity", _identity_nngp, _identity_ntk, slope=1.0)
        named = {0.0: "relu", -1.0: "abs"}.get(a, "leaky_relu")
        return Dual(named, *_abrelu(a), slope=a)
    return Dual("abrelu", *_abrelu(a, b), slope=a, params=(a, b))


def scaled_erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Dual:
    """φ(x) = a·erf(b·x) + c: K ← a²·erf_dual(b²K) + c², E[φ'φ'] = a²b²·erf_ntk(b²K) (plain 'erf' at (1, 1, 0))."""
    a, b, c = float(a), float(b), float(c)
    if (a, b, c) == (1.0, 1.0, 0.0):
        return Dual("erf", _erf_nngp, _erf_ntk)
    b2 = b * b

    def nngp(k12, k11, k22):
        return a * a * _erf_nngp(b2 * k12, b2 * k11, b2 * k22) + c * c

    def ntk(k12, k11, k22):
        return a * a * b2 * _erf_ntk(b2 * k12, b2 * k11, b2 * k22)

    return Dual("scaled_erf", nngp, ntk, params=(a, b, c))


def _gelu_terms(k12, k11, k22):
    """(k12 clamped, P = k11·k22, P⁺ = (k11 + 1)(k22 + 1), Δ² = P⁺ − k12², Δ, φ = atan2(k12, Δ)); Δ² ≥ 1 + S."""
    xp = get_namespace(k12)
    k12 = clamp_correlation(k12, k11, k22)
    p, p_plus = k11 * k22, (k11 + 1) * (k22 + 1)
    delta2 = p_plus - k12 * k12
    delta = xp.sqrt(delta2)
    return k12, p, p_plus, delta2, delta, xp.atan2(k12, delta)


def _gelu_exact_nngp(k12, k11, k22):
    """E[gelu(u) gelu(v)] for gelu(x) = x·Φ(x): [(k12² + P·Δ²)/(P⁺·Δ) + k12·φ]/2π + k12/4."""
    k12, p, p_plus, delta2, delta, phi = _gelu_terms(k12, k11, k22)
    return ((k12 * k12 + p * delta2) / (p_plus * delta) + k12 * phi) / (2 * math.pi) + k12 / 4


def _gelu_exact_ntk(k12, k11, k22):
    """E[gelu'(u) gelu'(v)] = [1/Δ² + (1 − P)/P⁺ + 1]·k12/(2πΔ) + 1/4 + φ/2π."""
    k12, p, p_plus, delta2, delta, phi = _gelu_terms(k12, k11, k22)
    return (1 / delta2 + (1 - p) / p_plus + 1) * k12 / (2 * math.pi * delta) + 0.25 + phi / (2 * math.pi)


def gelu_exact() -> Dual:
    """GELU x·Φ(x) in closed form (neural-tangents' Gelu; the name 'gelu' stays lazykit's quadrature dual)."""
    return Dual("gelu_exact", _gelu_exact_nngp, _gelu_exact_ntk)


def sine(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Dual:
    """φ(x) = a·sin(b·x + c): K ← a²/2·(s₁ − s₂), E[φ'φ'] = a²b²/2·(s₁ + s₂), s₁ = e^{b²(k12 − S/2)},
    s₂ = e^{−b²(k12 + S/2)}·cos 2c (Cos(a, b, c) is Sin(a, b, c + π/2))."""
    a, b, c = float(a), float(b), float(c)
    xp_exp = lambda x: get_namespace(x).exp(x)   # noqa: E731
    cos2c = math.cos(2 * c)

    def terms(k12, k11, k22):
        half = (k11 + k22) / 2
        return xp_exp(b * b * (k12 - half)), xp_exp(-b * b * (k12 + half)) * cos2c

    def nngp(k12, k11, k22):
        s1, s2 = terms(k12, k11, k22)
        return a * a / 2 * (s1 - s2)

    def ntk(k12, k11, k22):
        s1, s2 = terms(k12, k11, k22)
        return a * a * b * b / 2 * (s1 + s2)

    return Dual("sine", nngp, ntk, params=(a, b, c))


def rbf(gamma: float = 1.0) -> Dual:
    """neural-tangents' Rbf: K ← e^{γ(2k12 − k11 − k22)}, E[φ'φ'] = 2γ·K_new."""
    gamma = float(gamma)

    def nngp(k12, k11, k22):
        return get_namespace(k12).exp(gamma * (2 * k12 - k11 - k22))

    def ntk(k12, k11, k22):
        return 2 * gamma * nngp(k12, k11, k22)

    return Dual("rbf", nngp, ntk, params=(gamma,))


def exponential(a: float = 1.0, b: float = 1.0) -> Dual:
    """φ(x) = a·e^{b·x}: K ← a²·e^{b²(S/2 + k12)}, E[φ'φ'] = b²·K_new."""
    a, b = float(a), float(b)

    def nngp(k12, k11, k22):
        return a * a * get_namespace(k12).exp(b * b * ((k11 + k22) / 2 + k12))

    def ntk(k12, k11, k22):
        return b * b * nngp(k12, k11, k22)

    return Dual("exp", nngp, ntk, params=(a, b))


def numerical(fn: Callable, derivative: Callable | None = None) -> Dual:
    """The quadrature dual of an elementwise callable ``fn`` (its derivative given, or a 5-point difference)."""
    return Dual(getattr(fn, "__name__", "callable"),
                *_quadrature(fn, derivative or numerical_derivative(fn)), closed=False)


def gaussian(a: float = 1.0, b: float = -1.0) -> Dual:
    """φ(x) = a·e^{b·x²}: with D = √max((1 − 2b·k11)(1 − 2b·k22) − 4b²k12², 0), K ← a²/D, E[φ'φ'] = 4a²b²k12/D³."""
    a, b = float(a), float(b)

    def det(k12, k11, k22):
        xp = get_namespace(k12)
        return xp.sqrt(xp.clip((1 - 2 * b * k11) * (1 - 2 * b * k22) - 4 * b * b * k12 * k12, min=0.0))

    def nngp(k12, k11, k22):
        return a * a / det(k12, k11, k22)

    def ntk(k12, k11, k22):
        d = det(k12, k11, k22)
        return 4 * a * a * b * b * k12 / (d * d * d)

    return Dual("gaussian", nngp, ntk, params=(a, b))


# ------------------------------------------------------------------------------------------ lookup
def get_dual(activation, negative_slope: float = 0.01) -> Dual:
    """The dual of ``activation`` (a name in ``ACTIVATIONS`` or an elementwise callable on arrays)."""
    # |a| < 1e150: the dual uses a², which must be finite; checked for every activation, so a bad value is
    # never silently ignored
    check_scalar(negative_slope, "negative_slope", float, min_val=-1e150, max_val=1e150, include_boundaries="neither")
    if callable(activation):
        return numerical(activation)
    check_choice(activation, "activation", ACTIVATIONS)   # or a callable, handled above
    if activation == "leaky_relu":
        return Dual("leaky_relu", *_abrelu(negative_slope), slope=float(negative_slope))
    slopes = {"relu": 0.0, "abs": -1.0}
    if activation in slopes:
        return Dual(activation, *_abrelu(slopes[activation]), slope=slopes[activation])
    if activation == "identity":
        return Dual("identity", _identity_nngp, _identity_ntk, slope=1.0)
    if activation == "step":
        return Dual("step", _step_nngp, _step_ntk)
    if activation == "erf":
        return Dual("erf", _erf_nngp, _erf_ntk)
    return Dual(activation, *_quadrature(*_named_functions()[activation]), closed=False)
