"""float32 underflow in the CUDA chains (issue: √(k11·k22) and s = k11·k22 − k12² below FLT_MIN), run on the host
with flush-to-zero as the GPU compiles (host_cuda.py), against the CPU path of the same public call.

The CPU path is exact here: float32 inputs are accumulated in float64 (``kernels.analytic._numerics``), where
products near 1e-60 are far from float64's range limits. The CUDA kernels keep float32 and rescale each dual's
arguments by exact powers of two (``kernels.analytic._cuda``), so their products stay near 1.

Tolerances. Depth 3: a few tens of float32 roundings per output, 2e-5 relative (as test_host_execution.py).
Deep erf (w_std = 0.5, b = 0, the ordered phase: variances shrink by about w²·4/π ≈ 0.32 a layer, to 1e-20 at
depth 40 and 1e-25 at depth 50): at such variances the dual is nearly linear in k12 (asin r ≈ r), so each layer
passes a relative error on unchanged and adds its own few roundings, about 3·2^-24 ≈ 2e-7; after L layers
≤ L·2e-7 (1e-5 at depth 50; measured at most 2.2e-6; conv: 1.3e-6 at depth 34). Before the fix every
off-diagonal NNGP entry was exactly 0 (an error of 100%) and the NTK was off by 7% (depth 40) and 25% (depth 50);
tiny inputs gave NNGP errors of 26% (step) to 100% (erf, 'standard' ReLU: all off-diagonal entries 0).
Measured after the fix: 8e-8 to 3e-7.
"""
import numpy as np
import pytest

from kernels import Convolutional, FullyConnected
from kernels.analytic import _numerics

pytestmark = pytest.mark.cuda_host

PER_LAYER = 2e-7      # relative error a deep erf layer adds in float32 (module docstring)
SHALLOW = 2e-5        # depth-3 float32 chains (module docstring)
TINY = 1e-15          # |x|: variances near 1e-30, products near 1e-60, far below FLT_MIN ≈ 1.2e-38


def _cuda_and_cpu(make, x1, x2=None, monkeypatch=None):
    """(CUDA chain on the host, CPU path) of ``make().kernels(x1, x2)``, both from the same float32 inputs."""
    got = make().kernels(x1, x2)
    monkeypatch.setattr(_numerics, "uses_cuda_kernels", lambda xp: False)
    want = make().kernels(x1, x2)
    monkeypatch.setattr(_numerics, "uses_cuda_kernels", lambda xp: True)
    return got, want


def _check(harness, got, want, x1, x2, rtol):
    for g, w, name in zip(got, want, ("NNGP", "NTK")):
        assert g.dtype == np.float32 and w.dtype == np.float32
        harness.assert_zeros_only_where_orthogonal(g, x1, x2, f"CUDA {name}")
        harness.assert_zeros_only_where_orthogonal(w, x1, x2, f"CPU {name}")
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0, err_msg=name)


def _fc(depth, activation, w_std, b_std, parameterization="ntk"):
    # tiles of 3 over 7 (and 4) inputs: diagonal tiles (pinned), off-diagonal ones, and edge tiles
    return lambda: FullyConnected(depth, activation, w_std, b_std, parameterization, width=64, block_size=3,
                                  n_jobs=1, dtype="float32", cpu_impl="reference")


def _conv(depth, activation, w_std, b_std, parameterization="ntk"):
    return lambda: Convolutional(depth, activation, w_std, b_std, 3, "gap", parameterization, width=16,
                                 block_size=2, n_jobs=1, dtype="float32", cpu_impl="reference")


@pytest.mark.parametrize("with_x2", [False, True])
@pytest.mark.parametrize("depth", [40, 50])
def test_deep_ordered_phase_erf_underflow_fc(host, harness, monkeypatch, depth, with_x2):
    rng = np.random.default_rng(10)
    x1 = rng.standard_normal((7, 5)).astype(np.float32)
    x2 = rng.standard_normal((4, 5)).astype(np.float32) if with_x2 else None
    got, want = _cuda_and_cpu(_fc(depth, "erf", 0.5, 0.0), x1, x2, monkeypatch)
    assert 1e-29 < np.abs(want[0]).max() < 1e-19          # the regime: variances far below √FLT_MIN ≈ 1e-19
    _check(harness, got, want, x1, x2, depth * PER_LAYER)


@pytest.mark.parametrize("depth", [30, 34])   # SAME padding on 3 × 3 images: ≈ 0.21 a layer, 4e-23 at depth 30
def test_deep_ordered_phase_erf_underflow_conv(host, harness, monkeypatch, depth):
    rng = np.random.default_rng(11)
    x1 = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    got, want = _cuda_and_cpu(_conv(depth, "erf", 0.5, 0.0), x1, None, monkeypatch)
    assert any(name.startswith("window_block") for name, _, _ in host.launches)
    assert 1e-29 < np.abs(want[0]).max() < 1e-19
    _check(harness, got, want, x1, None, depth * PER_LAYER)


# none of these is positively homogeneous, so none is rescaled before the recursion (kernels.analytic._numerics)
TINY_NETWORKS = [("erf", 1.3, 0.0, "ntk"), ("step", 1.3, 0.0, "ntk"), ("relu", 1.3, TINY, "ntk"),
                 ("relu", 1.3, 0.0, "standard")]


@pytest.mark.parametrize("activation, w_std, b_std, parameterization", TINY_NETWORKS)
def test_tiny_inputs_underflow_fc(host, harness, monkeypatch, activation, w_std, b_std, parameterization):
    rng = np.random.default_rng(12)
    x1, x2 = (TINY * rng.standard_normal((7, 5))).astype(np.float32), None
    got, want = _cuda_and_cpu(_fc(3, activation, w_std, b_std, parameterization), x1, x2, monkeypatch)
    _check(harness, got, want, x1, x2, SHALLOW)


@pytest.mark.parametrize("activation, w_std, b_std, parameterization", TINY_NETWORKS)
def test_tiny_inputs_underflow_conv(host, harness, monkeypatch, activation, w_std, b_std, parameterization):
    rng = np.random.default_rng(13)
    x1 = (TINY * rng.standard_normal((3, 2, 3, 3))).astype(np.float32)
    x2 = (TINY * rng.standard_normal((2, 2, 3, 3))).astype(np.float32)
    got, want = _cuda_and_cpu(_conv(2, activation, w_std, b_std, parameterization), x1, x2, monkeypatch)
    _check(harness, got, want, x1, x2, SHALLOW)


def test_relu_with_a_tiny_bias_scales_as_the_unscaled_kernel_underflow(host, monkeypatch):
    # K(c·x; c·b) = c²·K(x; b) for a ReLU network with bias (every rule keeps k ∝ c², the angle unchanged):
    # an independent reference, the float64 CPU kernel of the unscaled network times c², c = 1e-15
    rng = np.random.default_rng(14)
    x = rng.standard_normal((6, 5))
    got = _fc(3, "relu", 1.3, TINY)().kernels((TINY * x).astype(np.float32))
    monkeypatch.setattr(_numerics, "uses_cuda_kernels", lambda xp: False)
    unscaled = FullyConnected(3, "relu", 1.3, 1.0, n_jobs=1).kernels((TINY * x).astype(np.float32) / TINY)
    for g, w in zip(got, unscaled):
        np.testing.assert_allclose(g, TINY ** 2 * w, rtol=SHALLOW, atol=0)
