"""Near-identical, collinear and all-zero inputs: both engines (fused numba loops, reference rule chain) agree and
give positive semi-definite kernels (issue #24).

Tolerances. A Gram matrix computed in float64 is PSD to rounding: λ_min ≥ −n·eps·λ_max. The two engines run the
same arithmetic for the clamped cross term and s² = (b − |k12|)(b + |k12|) (``duals._clamped`` and
``_cpu._clamped``); they differ only in how atan2 is evaluated (a few ulp), so they agree to 1e-12 relative.
"""
import numpy as np
import pytest

from kernels import FullyConnected

EPS = np.finfo(np.float64).eps


def _inputs(kind, rng):
    x0 = rng.standard_normal((1, 5))
    if kind == "near":       # rows 1e-8 apart: 1 - ρ below eps, the angle cannot be resolved
        return x0 + 1e-8 * rng.standard_normal((6, 5))
    if kind == "collinear":  # multiples of one row: ρ = 1 up to the rounding of x·x'
        return np.outer(np.linspace(1.0, 3.0, 6), x0[0])
    return rng.standard_normal((6, 5))


def _relative_min_eigenvalue(K):
    w = np.linalg.eigvalsh((K + K.T) / 2)
    return w[0] / np.max(np.abs(w))


@pytest.mark.parametrize("kind", ["near", "collinear"])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_step_engines_agree_on_near_identical_inputs(kind, depth, rng):
    # before: the reference formed s² = k11·k22 − k12² (error eps·k², θ ≈ 1e-8) where the fused loops got θ = 0,
    # and the step dual's map ρ ↦ 1 − arccos(ρ)/π (infinite slope at 1) grew that to 20% of max|K| at depth 5
    x = _inputs(kind, rng)
    fused = FullyConnected(depth=depth, activation="step", cpu_impl="fused").kernels(x)
    reference = FullyConnected(depth=depth, activation="step", cpu_impl="reference").kernels(x)
    for a, b in zip(fused, reference):
        assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(a))
        assert _relative_min_eigenvalue(b) >= -len(x) * EPS


@pytest.mark.parametrize("activation", ["relu", "abs", "leaky_relu", "erf"])
@pytest.mark.parametrize("kind", ["near", "collinear"])
def test_reference_ntk_is_psd_on_near_identical_inputs(activation, kind, rng):
    # before: the reference ReLU NTK of rows 1e-8 apart had λ_min = −2e-10·λ_max (−1.9e-8 in the campaign)
    x = _inputs(kind, rng)
    for depth in (1, 3):
        K, T = FullyConnected(depth=depth, activation=activation, cpu_impl="reference").kernels(x)
        fused = FullyConnected(depth=depth, activation=activation, cpu_impl="fused").ntk(x)
        assert _relative_min_eigenvalue(T) >= -len(x) * EPS
        assert _relative_min_eigenvalue(K) >= -len(x) * EPS
        assert np.max(np.abs(T - fused)) <= 1e-12 * np.max(np.abs(fused))


def test_quadrature_dual_uses_the_clamped_angle(rng):
    # a callable activation runs the quadrature rule of the reference path; its angle β now comes from the same
    # clamped, snapped correlation as the closed forms. Before, β = acos(ρ) of the unclamped ρ gave β ≈ 2e-8 on
    # rows 1e-8 apart and a non-PSD NTK of a ReLU given as a callable (λ_min = −1.9e-10·λ_max at depth 3)
    x = _inputs("near", rng)
    K, T = FullyConnected(depth=3, activation=lambda v: np.maximum(v, 0.0)).kernels(x)
    assert _relative_min_eigenvalue(T) >= -len(x) * EPS and _relative_min_eigenvalue(K) >= -len(x) * EPS
    # and it matches the closed form: the callable's derivative is a 5-point difference with step h = 1e-3, wrong
    # only within 2h of the kink, a band of probability about 4h/√(2π·k) ≈ 1.6e-3 for k ≈ 1: rtol 1e-3 (6e-5 seen)
    np.testing.assert_allclose(T, FullyConnected(depth=3, activation="relu").ntk(x), rtol=1e-3)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_step_on_zero_rows_is_psd(impl, depth):
    # φ = 1[x > 0], φ(0) = 0: a zero-variance pre-activation gives φ ≡ 0, so the zero row of K is 0. Before, θ =
    # atan2(0, 0) = 0 gave K(0, x) = w²/2 for every x, and with x and −x an indefinite kernel (λ_min = −0.15·λ_max)
    x = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    K, T = FullyConnected(depth=depth, activation="step", cpu_impl=impl).kernels(x)
    assert np.all(K[0] == 0) and np.all(T[0] == 0)
    assert _relative_min_eigenvalue(K) >= -4 * EPS and _relative_min_eigenvalue(T) >= -4 * EPS
    # the other rows are the step kernel of unit vectors: w²·(π − θ)/2π with w² = 2 at depth 1
    if depth == 1:
        np.testing.assert_allclose(K[1:, 1:], [[1, 0, 0.5], [0, 1, 0.5], [0.5, 0.5, 1]], atol=1e-15)


def test_array_api_path_agrees_with_numpy(rng):
    xp = pytest.importorskip("array_api_strict")
    x = _inputs("near", rng)
    want = FullyConnected(depth=3, activation="step", cpu_impl="fused").ntk(x)
    got = np.asarray(FullyConnected(depth=3, activation="step").ntk(xp.asarray(x)))
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))
