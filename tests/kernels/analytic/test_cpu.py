"""The fused numba CPU loops (kernels/_analytic_cpu.py) against the NumPy reference rule chain.

Both paths evaluate the same formulas in float64; they differ only in rounding (the order of the patch
sums, 1/f² folded into w², the polynomial arctangent, a two-level readout sum), a few ulps per layer,
so entries must agree to 1e-12 of the kernel's scale. Sizes are small: the loops are compiled once
(numba cache=True), then each case takes milliseconds.
"""
import math

import numpy as np
import pytest

from kernels import Convolutional, FullyConnected

FC_CASES = [
    dict(depth=3),
    dict(depth=0, b_std=0.3),
    dict(depth=2, activation="erf", b_std=0.2),
    dict(depth=2, activation="leaky_relu", negative_slope=0.2, b_std=0.1),
    dict(depth=2, activation="abs"), dict(depth=2, activation="step"), dict(depth=2, activation="identity"),
    dict(depth=2, parameterization="standard", width=64, b_std=0.4),
    dict(depth=3, parameterization="standard", width=16, b_std=None, activation="erf"),
    dict(depth=3, trained_layers=[2, 4]),
    dict(depth=2, parameterization="standard", width=8, b_std=0.3, trained_layers={1}),
    dict(depth=2, readout_w_std=0.7, readout_b_std=None, b_std=0.2),
    dict(depth=1, parameterization="standard", width=8, b_std=0.1, readout_b_std=0.5),
]
CONV_CASES = [
    dict(depth=3), dict(depth=0), dict(depth=2, readout="flatten", b_std=0.3),
    dict(depth=2, activation="erf", b_std=0.2), dict(depth=2, activation="leaky_relu", readout="flatten"),
    dict(depth=1, activation="step", filter_size=5), dict(depth=2, activation="identity"),
    dict(depth=2, parameterization="standard", width=32, b_std=0.1),
    dict(depth=2, parameterization="standard", width=8, b_std=None, readout="flatten"),
    dict(depth=3, trained_layers=(1, 4)), dict(depth=2, readout="flatten", trained_layers=[2]),
]


def _assert_paths_agree(make, xs):
    fused = make(cpu_impl="fused").kernels(*xs)
    reference = make(cpu_impl="reference").kernels(*xs)
    for got, want in zip(fused, reference):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("config", FC_CASES, ids=str)
def test_fc_fused_equals_reference(rng, config):
    x1, x2 = rng.standard_normal((13, 7)), rng.standard_normal((6, 7))
    for xs in ((x1,), (x1, x2)):
        _assert_paths_agree(lambda **kw: FullyConnected(**config, block_size=5, **kw), xs)


@pytest.mark.parametrize("config", CONV_CASES, ids=str)
def test_conv_fused_equals_reference(rng, config):
    # non-square images, 2 channels; block_size=2: chunks of 4 image pairs, so several chunks on 2 threads
    x1, x2 = rng.standard_normal((5, 2, 5, 4)), rng.standard_normal((3, 2, 5, 4))
    for xs in ((x1,), (x1, x2)):
        _assert_paths_agree(lambda **kw: Convolutional(**config, block_size=2, n_jobs=2, **kw), xs)


def test_fc_fused_neural_tangents_abrelu_and_scaled_erf(rng):
    # ABRelu(a, b) and Erf(a, b, c) run in the fused FC loop (c₊, c₋ from (a, b); erf at b²K, scaled by a², + c²)
    from kernels import stax
    kernel = stax.serial(stax.Dense(16, W_std=1.3, b_std=0.2), stax.ABRelu(-0.3, 1.2), stax.Dense(16, W_std=1.1),
                         stax.Erf(1.3, 0.7, 0.1), stax.Dense(1, b_std=0.1))
    x1, x2 = rng.standard_normal((7, 5)), rng.standard_normal((4, 5))
    for xs in ((x1,), (x1, x2)):
        fused = kernel.set_params(cpu_impl="fused").kernels(*xs)
        reference = kernel.set_params(cpu_impl="reference").kernels(*xs)
        for got, want in zip(fused, reference):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_fused_single_kernel_calls_and_float32(rng):
    # nngp()/ntk() skip part of the work (want_ntk) but give the same numbers as kernels().
    images = rng.standard_normal((4, 3, 4, 4))
    kernel = Convolutional(depth=2, b_std=0.1, cpu_impl="fused")
    nngp, ntk = kernel.kernels(images)
    np.testing.assert_allclose(kernel.nngp(images), nngp, rtol=1e-15)
    np.testing.assert_allclose(kernel.ntk(images), ntk, rtol=1e-15)
    # float32 inputs: the loop computes in float64 and rounds the result (error ≤ float32 rounding, 6e-8).
    k32 = kernel.ntk(images.astype(np.float32))
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, ntk, rtol=1e-6)
    fc = FullyConnected(depth=2, cpu_impl="fused")
    x = rng.standard_normal((9, 5))
    np.testing.assert_allclose(fc.ntk(x.astype(np.float32)), fc.ntk(x), rtol=1e-6)


def test_quadrature_and_non_numpy_inputs_use_the_reference(rng):
    # tanh has no closed-form dual: 'auto' runs the reference chain (bitwise the same numbers), 'fused' refuses.
    x = rng.standard_normal((5, 3))
    auto = FullyConnected(depth=1, activation="tanh").ntk(x)
    np.testing.assert_array_equal(auto, FullyConnected(depth=1, activation="tanh", cpu_impl="reference").ntk(x))
    with pytest.raises(ValueError, match="cpu_impl='fused' cannot run: activation 'tanh' has no closed-form"):
        FullyConnected(depth=1, activation="tanh", cpu_impl="fused").ntk(x)
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="not NumPy"):
        Convolutional(depth=1, cpu_impl="fused").ntk(xp.asarray(rng.standard_normal((2, 1, 3, 3))))
    with pytest.raises(ValueError, match="unknown cpu_impl .numba.; valid: auto, fused, reference"):
        FullyConnected(cpu_impl="numba")


def test_theta_matches_arctan2():
    # _theta is the branch-free atan2(s, k12) for s >= 0 (module docstring: series error < 1e-18, so what is
    # left is rounding, a few ulps of π); compare with libm's atan2 over all quadrant cases and exact zeros.
    from kernels.analytic._cpu import _theta
    rng = np.random.default_rng(1)
    s = np.concatenate([np.abs(rng.standard_normal(4000)) * 10.0 ** rng.integers(-8, 8, 4000),
                        [0.0, 0.0, 1.0, 1.0, 2.0, 0.0]])
    k = np.concatenate([rng.standard_normal(4000) * 10.0 ** rng.integers(-8, 8, 4000),
                        [1.0, -1.0, 0.0, 1.0, -2.0, 0.0]])
    got = np.array([_theta(a, b) for a, b in zip(s, k)])
    np.testing.assert_allclose(got, np.arctan2(s, k), rtol=0, atol=8 * np.finfo(float).eps * math.pi)
    assert got[-6] == 0.0 and got[-1] == 0.0   # θ = 0 exactly on a pinned diagonal (s = 0, k12 >= 0)
