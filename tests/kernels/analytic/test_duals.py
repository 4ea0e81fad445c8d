"""Dual activations: closed forms at special points, quadrature against closed forms, Monte Carlo."""
import math

import numpy as np
import pytest
from scipy.special import erf

from kernels.analytic import duals


def _random_covariances(rng, n=400):
    k11, k22 = rng.uniform(0.1, 10, n), rng.uniform(0.1, 10, n)
    rho = rng.uniform(-1, 1, n)
    rho[:4] = [1.0, -1.0, 0.0, 0.999999]       # include the edges θ = 0, π and orthogonal inputs
    return rho * np.sqrt(k11 * k22), k11, k22


@pytest.mark.parametrize("name, same, orthogonal, ntk_same, ntk_orth", [
    # (E[φ(u)²] at k11=k22=k12=k,  E[φ(u)φ(v)] at k12=0 with k11=a, k22=b,  E[φ'²] at θ=0,  E[φ'φ'] at k12=0)
    ("relu", lambda k: k / 2, lambda a, b: math.sqrt(a * b) / (2 * math.pi), 0.5, 0.25),
    ("abs", lambda k: k, lambda a, b: 2 * math.sqrt(a * b) / math.pi, 1.0, 0.0),
    ("identity", lambda k: k, lambda a, b: 0.0, 1.0, 1.0),
    ("step", lambda k: 0.5, lambda a, b: 0.25, 0.0, 0.0),
])
def test_closed_forms_at_special_points(name, same, orthogonal, ntk_same, ntk_orth):
    # θ = 0: E[φ(u)²] of the half-normal moments; θ = π/2: u, v independent, E[φ(u)]·E[φ(v)].
    d = duals.get_dual(name)
    k, a, b = np.array([2.7]), np.array([1.3]), np.array([0.4])
    assert d.nngp(k, k, k)[0] == pytest.approx(same(2.7), rel=1e-15, abs=1e-300)
    assert d.ntk(k, k, k)[0] == pytest.approx(ntk_same, rel=1e-15, abs=1e-300)
    assert d.nngp(np.zeros(1), a, b)[0] == pytest.approx(orthogonal(1.3, 0.4), rel=1e-14, abs=1e-16)
    assert d.ntk(np.zeros(1), a, b)[0] == pytest.approx(ntk_orth, rel=1e-14, abs=1e-16)


def test_relu_angle_is_exactly_zero_on_the_diagonal():
    # k12² == k11·k22 bitwise gives s = 0 and θ = atan2(0, k) = 0 exactly, so E[φ'φ'] = 1/2 exactly.
    k = np.random.default_rng(1).uniform(0.1, 5, 100)
    both = duals.get_dual("relu").both(k.copy(), k, k)
    assert np.all(both[1] == 0.5) and np.all(both[0] == k / 2)



@pytest.mark.parametrize("name", ["relu", "abs", "leaky_relu", "step"])
def test_float32_variances_whose_product_underflows(name, rng):
    # variances ≈ 1e-24 in float32: k11·k22 ≈ 1e-48 is below the smallest float32 (1.4e-45) and is 0 even without
    # flush-to-zero, which clamped every k12 to 0 (θ = π/2 for every pair). The ReLU family is homogeneous of
    # degree one (step: zero), so the duals there are 1e-24 (1) times the duals at the unscaled float64 values;
    # float32 rounding through a handful of operations bounds the difference by 1e-5 relative.
    k12, k11, k22 = (np.delete(v, 3) for v in _random_covariances(rng, 200))   # ρ = 0.999999 snaps in float32
    d = duals.get_dual(name)
    tiny = 1e-24
    got = d.both(*(np.float32(tiny) * v.astype(np.float32) for v in (k12, k11, k22)))
    want = d.both(k12, k11, k22)
    degree = 0 if name == "step" else 1
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], tiny ** degree * want[0], rtol=1e-5, atol=1e-5 * tiny ** degree)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)

def test_erf_closed_form_at_orthogonal_inputs():
    # erf is odd: E[erf(u) erf(v)] = 0 for independent u, v; E[φ'φ'] = (4/π)/√((1+2a)(1+2b)).
    d = duals.get_dual("erf")
    assert d.nngp(np.zeros(1), np.ones(1), 2 * np.ones(1))[0] == 0.0
    assert d.ntk(np.zeros(1), np.ones(1), 2 * np.ones(1))[0] == pytest.approx(4 / math.pi / math.sqrt(15), 1e-15)


def test_leaky_relu_interpolates_identity_and_relu(rng):
    k12, k11, k22 = _random_covariances(rng, 50)
    ident = duals.get_dual("leaky_relu", negative_slope=1.0)
    relu = duals.get_dual("leaky_relu", negative_slope=0.0)
    np.testing.assert_allclose(ident.nngp(k12, k11, k22), k12, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ident.ntk(k12, k11, k22), 1.0, rtol=1e-13)
    np.testing.assert_allclose(relu.nngp(k12, k11, k22), duals.get_dual("relu").nngp(k12, k11, k22), rtol=1e-15)


@pytest.mark.parametrize("name, fn, prime", [
    ("relu", lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    ("erf", erf, lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x)),
    ("abs", np.abs, np.sign),
])
def test_quadrature_matches_closed_forms(rng, name, fn, prime):
    # Measured error (see the duals docstring) is ≤ 2e-9 relative; the requirement is 1e-8.
    k12, k11, k22 = _random_covariances(rng)
    closed = duals.get_dual(name)
    scale = np.sqrt(k11 * k22)
    quad = duals.polar_expectation(fn, fn, k12, k11, k22)
    assert np.max(np.abs(quad - closed.nngp(k12, k11, k22)) / scale) < 1e-8
    quad = duals.polar_expectation(prime, prime, k12, k11, k22)
    exact = closed.ntk(k12, k11, k22)
    assert np.max(np.abs(quad - exact) / np.maximum(np.abs(exact), 1e-3)) < 1e-8


def test_callable_uses_numerical_derivative_and_matches_named(rng):
    # A callable's derivative is a 5-point difference (error ~h⁴ = 1e-12): it must match "tanh" closely.
    k12, k11, k22 = _random_covariances(rng, 60)
    named, custom = duals.get_dual("tanh"), duals.get_dual(np.tanh)
    np.testing.assert_allclose(custom.nngp(k12, k11, k22), named.nngp(k12, k11, k22), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(custom.ntk(k12, k11, k22), named.ntk(k12, k11, k22), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name, fn, prime", [
    ("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ("sin", np.sin, np.cos),
    ("gelu", lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
     lambda x: 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    ("softplus", lambda x: np.logaddexp(0, x), lambda x: 1 / (1 + np.exp(-x))),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
])
def test_quadrature_duals_against_monte_carlo(name, fn, prime):
    # 400k Gaussian pairs: the sample mean's standard error is std/√n ≈ 0.0016·std; allow 5 SE.
    rng = np.random.default_rng(7)
    k11, k22, k12 = 1.5, 0.8, 0.6
    z = rng.standard_normal((2, 400_000))
    u = math.sqrt(k11) * z[0]
    v = (k12 / math.sqrt(k11)) * z[0] + math.sqrt(k22 - k12 ** 2 / k11) * z[1]
    d = duals.get_dual(name)
    for samples, value in ((fn(u) * fn(v), d.nngp(np.array([k12]), k11, k22)[0]),
                           (prime(u) * prime(v), d.ntk(np.array([k12]), k11, k22)[0])):
        se = samples.std() / math.sqrt(samples.size)
        assert abs(samples.mean() - value) < 5 * se


def test_sin_dual_closed_form():
    # E[sin u sin v] = e^{-(k11+k22)/2}·sinh(k12) (a standard Gaussian identity): quadrature to 1e-12.
    k11, k22, k12 = np.array([0.7, 2.0]), np.array([1.1, 0.5]), np.array([0.3, -0.9])
    exact = np.exp(-(k11 + k22) / 2) * np.sinh(k12)
    np.testing.assert_allclose(duals.get_dual("sin").nngp(k12, k11, k22), exact, rtol=1e-12)


@pytest.mark.parametrize("name", duals.ACTIVATIONS)
def test_zero_variance_is_finite(name):
    # A zero-norm input has k11 = k12 = 0: the dual must be defined (no NaN from 0/0).
    d = duals.get_dual(name)
    zero = np.zeros(3)
    other = np.array([0.0, 1.0, 2.0])
    assert np.all(np.isfinite(d.nngp(zero, zero, other))) and np.all(np.isfinite(d.ntk(zero, zero, other)))


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match="relu, leaky_relu, abs, identity, step, erf, tanh"):
        duals.get_dual("mish")
    with pytest.raises(ValueError, match="negative_slope"):
        duals.get_dual("leaky_relu", negative_slope=float("nan"))


def _scalar_reference(name, k12, k11, k22, a=0.3):
    """(E[φφ], E[φ'φ']) entry by entry in plain Python floats: an evaluation independent of the array code.
    ReLU family φ = a·min(x, 0) + max(x, 0) and step: the arc-cosine forms in ``math``; erf (Williams 1997);
    sin: E[sin u sin v] = e^{−(k11+k22)/2}·sinh(k12), E[cos u cos v] = e^{−(k11+k22)/2}·cosh(k12) (Gaussian
    characteristic function)."""
    slopes = {"relu": 0.0, "abs": -1.0, "leaky_relu": a, "identity": 1.0}
    out = []
    for c, u, v in zip(k12, k11, k22):
        c, u, v = float(c), float(u), float(v)
        if name == "erf":
            out.append(((2 / math.pi) * math.asin(2 * c / math.sqrt((1 + 2 * u) * (1 + 2 * v))),
                        (4 / math.pi) / math.sqrt((1 + 2 * u) * (1 + 2 * v) - 4 * c * c)))
        elif name == "sin":
            damp = math.exp(-(u + v) / 2)
            out.append((damp * math.sinh(c), damp * math.cosh(c)))
        else:
            b = math.sqrt(u * v)
            c = max(-b, min(b, c))
            s = math.sqrt(max(u * v - c * c, 0.0))
            th = math.atan2(s, c)
            if name == "step":
                out.append(((math.pi - th) / (2 * math.pi), 0.0))
                continue
            slope = slopes[name]
            plus, cross = (1 + slope * slope) / (2 * math.pi), 2 * slope / (2 * math.pi)
            out.append((plus * (s + (math.pi - th) * c) - cross * (s - th * c), plus * (math.pi - th) + cross * th))
    return np.array(out).T


@pytest.mark.parametrize("name", ["relu", "erf", "abs", "leaky_relu", "step", "identity", "sin"])
def test_array_api_strict_matches_numpy(xp, name, rng):
    # NumPy and array-api-strict both against the scalar reference (never the array code against itself):
    # closed forms to 1e-13 of the scale √(k11·k22); sin is a quadrature dual here, held to the 1e-8 that the
    # module docstring states for quadrature
    k12, k11, k22 = _random_covariances(rng, 30)
    d = duals.get_dual(name, negative_slope=0.3)
    got = d.nngp(xp.asarray(k12), xp.asarray(k11), xp.asarray(k22))
    got_ntk = d.ntk(xp.asarray(k12), xp.asarray(k11), xp.asarray(k22))
    want, want_ntk = _scalar_reference(name, k12, k11, k22)
    tol = 1e-8 if name == "sin" else 1e-13
    scale = np.sqrt(k11 * k22)
    np.testing.assert_allclose(np.asarray(got), want, rtol=tol, atol=tol * scale.max())
    np.testing.assert_allclose(np.asarray(got_ntk), want_ntk, rtol=tol, atol=tol)