"""neural-tangents' closed-form duals (ABRelu, Erf(a, b, c), Gelu, Sin/Cos, Rbf, Exp, Gaussian) against the split
polar quadrature of their functions, and at special points."""
import math

import numpy as np
import pytest
from scipy.special import erf

from kernels.analytic import duals


def _covariances(rng, n=200):
    k11, k22 = rng.uniform(0.1, 3, n), rng.uniform(0.1, 3, n)
    rho = rng.uniform(-1, 1, n)
    rho[:3] = [1.0, -1.0, 0.0]
    return rho * np.sqrt(k11 * k22), k11, k22


def _gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _gelu_prime(x):
    return 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


CASES = [
    ("abrelu", duals.abrelu(-0.3, 1.2), lambda x: -0.3 * np.minimum(x, 0) + 1.2 * np.maximum(x, 0),
     lambda x: np.where(x > 0, 1.2, -0.3)),
    ("scaled_erf", duals.scaled_erf(1.3, 0.7, 0.1), lambda x: 1.3 * erf(0.7 * x) + 0.1,
     lambda x: 1.3 * 0.7 * 2 / math.sqrt(math.pi) * np.exp(-0.49 * x * x)),
    ("gelu", duals.gelu_exact(), _gelu, _gelu_prime),
    ("sin", duals.sine(1.1, 0.9, 0.3), lambda x: 1.1 * np.sin(0.9 * x + 0.3), lambda x: 0.99 * np.cos(0.9 * x + 0.3)),
    ("rbf", duals.rbf(0.5), lambda x: math.sqrt(2) * np.sin(x + math.pi / 4), lambda x: math.sqrt(2) * np.cos(
        x + math.pi / 4)),
    ("exp", duals.exponential(0.7, 0.4), lambda x: 0.7 * np.exp(0.4 * x), lambda x: 0.28 * np.exp(0.4 * x)),
    ("gaussian", duals.gaussian(1.0, -0.5), lambda x: np.exp(-0.5 * x * x), lambda x: -x * np.exp(-0.5 * x * x)),
]


@pytest.mark.parametrize("name, dual, fn, prime", CASES, ids=[c[0] for c in CASES])
def test_closed_forms_equal_the_quadrature_of_their_functions(rng, name, dual, fn, prime):
    # The polar rule integrates these smooth (or kinked-at-0) functions to ≤ 1e-9 for k ≤ 3 (kernels.analytic.duals
    # docstring); the closed forms are exact, so 1e-8 of the scale separates a wrong formula from rounding.
    k12, k11, k22 = _covariances(rng)
    nngp = duals.polar_expectation(fn, fn, k12, k11, k22)
    ntk = duals.polar_expectation(prime, prime, k12, k11, k22)
    scale_k = np.maximum(np.abs(nngp).max(), 1e-300)
    np.testing.assert_allclose(dual.nngp(k12, k11, k22), nngp, rtol=1e-8, atol=1e-8 * scale_k)
    both = dual.both(k12.copy(), k11, k22)
    np.testing.assert_allclose(both[0], nngp, rtol=1e-8, atol=1e-8 * scale_k)
    np.testing.assert_allclose(both[1], ntk, rtol=1e-8, atol=1e-8 * np.abs(ntk).max())


def test_named_members_of_the_abrelu_family_keep_their_fused_names():
    # b = 1: the duals the fused engines know; anything else is 'abrelu' (reference rules only)
    assert [duals.abrelu(a, 1.0).name for a in (0.0, -1.0, 1.0, 0.2)] == ["relu", "abs", "identity", "leaky_relu"]
    assert duals.abrelu(0.2, 1.0).slope == 0.2 and duals.abrelu(-0.3, 1.2).name == "abrelu"
    assert duals.scaled_erf().name == "erf" and duals.scaled_erf(1.0, 2.0).name == "scaled_erf"


def test_gelu_at_orthogonal_inputs_is_the_product_of_means():
    # k12 = 0: u, v independent, E[gelu(u)] = E[u Φ(u)] = k/√(2π(1 + k)), E[gelu'(u)] = 1/2.
    d = duals.gelu_exact()
    a, b = np.array([1.3]), np.array([0.4])
    mean = lambda k: k / math.sqrt(2 * math.pi * (1 + k))   # noqa: E731
    assert d.nngp(np.zeros(1), a, b)[0] == pytest.approx(mean(1.3) * mean(0.4), rel=1e-14)
    assert d.ntk(np.zeros(1), a, b)[0] == pytest.approx(0.25, rel=1e-14)


def test_sigmoid_like_is_an_erf_with_neural_tangents_constants():
    # Sigmoid_like = 0.5·erf(x/2.4020563531719796) + 0.5: at k12 = 0 its NNGP is c² = 0.25 (erf is odd)
    d = duals.scaled_erf(0.5, 1 / 2.4020563531719796, 0.5)
    assert d.nngp(np.zeros(1), np.ones(1), np.ones(1))[0] == pytest.approx(0.25, rel=1e-15)


def test_numerical_dual_takes_a_given_derivative():
    d = duals.numerical(np.tanh, lambda x: 1 - np.tanh(x) ** 2)
    named = duals.get_dual("tanh")
    k = (np.array([0.3]), np.array([1.0]), np.array([0.7]))
    assert d.ntk(*k)[0] == pytest.approx(named.ntk(*k)[0], rel=1e-13) and not d.closed
