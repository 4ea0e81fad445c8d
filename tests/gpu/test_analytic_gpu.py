"""GPU: the fused CuPy kernels of kernels.analytic._cuda against their NumPy references, and whole kernels.

float64 on both sides, so agreement is to rounding (1e-12 relative; the CUDA atan2/asin/sqrt are within
a few ulp of NumPy's); float32 on the GPU against float64 on the CPU within float32 precision.
"""
import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

from kernels import Convolutional, FullyConnected  # noqa: E402
from kernels.analytic import rules  # noqa: E402
from kernels.analytic.duals import get_dual  # noqa: E402
from kernels.analytic.rules import activation_rule, conv_rule, dense_rule  # noqa: E402

CLOSED = ["relu", "erf", "abs", "leaky_relu", "step", "identity"]


@pytest.mark.parametrize("activation", CLOSED)
@pytest.mark.parametrize("parameterization, b_std", [("ntk", 0.3), ("standard", None)])
def test_fc_block_matches_reference(activation, parameterization, b_std):
    from kernels.analytic import _cuda as _analytic_cuda
    rng = np.random.default_rng(0)
    network = FullyConnected(2, activation, 1.3, b_std, parameterization, width=64, negative_slope=0.2).network(5)
    a, b = rng.standard_normal((9, 5)), rng.standard_normal((7, 5))
    k11, k22 = (np.sum(a * a, 1) / 5)[:, None], (np.sum(b * b, 1) / 5)[None, :]
    k12, ntk = a @ b.T / 5, rng.uniform(0.5, 2, (9, 7))
    want = dense_rule(activation_rule((k12.copy(), k11, k22, ntk.copy()), network.layers[1].dual), 1.3, b_std,
                      parameterization, 64)
    got = _analytic_cuda.fc_block(network.layers[1], network.layers[2],
                                  *(cupy.asarray(v) for v in (k12, ntk, k11, k22)))
    np.testing.assert_allclose(cupy.asnumpy(got[0]), want[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cupy.asnumpy(got[1]), want[3], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("geometry", [((3, 3), (1, 1), "SAME"), ((4, 2), (2, 1), "SAME"), ((2, 3), (2, 2), "VALID")])
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("parameterization, b_std", [("ntk", 0.2), ("standard", None)])
def test_window_block_matches_reference(activation, parameterization, b_std, geometry):
    from kernels.analytic import _cuda as _analytic_cuda
    rng = np.random.default_rng(1)
    window, strides, padding = geometry
    conv = rules.conv(18.0, 1.4, b_std, parameterization, window=window, strides=strides, padding=padding)
    x1, x2 = rng.standard_normal((3, 2, 7, 5)), rng.standard_normal((2, 2, 7, 5))
    k12 = np.einsum("icyx,jcvu->ijyxvu", x1, x2) / 2
    ntk = rng.uniform(0.5, 2, k12.shape)
    var1, var2 = np.sum(x1 * x1, 1) / 2, np.sum(x2 * x2, 1) / 2
    state = (k12.copy(), var1[:, None, :, :, None, None], var2[None, :, None, None, :, :], ntk.copy())
    out = conv_rule(state, 1.4, b_std, parameterization, 18.0, 0, True, window=window, strides=strides,
                    padding=padding)
    pre1, pre2 = out[1].reshape(3, *out[0].shape[2:4]), out[2].reshape(2, *out[0].shape[2:4])
    act = rules.activation(get_dual(activation))
    want = activation_rule(out, act.dual)
    got = _analytic_cuda.window_block(conv, cupy.asarray(k12), cupy.asarray(ntk), True, act, cupy.asarray(pre1),
                                      cupy.asarray(pre2))
    np.testing.assert_allclose(cupy.asnumpy(got[0]), want[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cupy.asnumpy(got[1]), want[3], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["vgg_two_avgpools", "resnet_downsample_block", "avgpool_even_same_s2_edges_true",
                                  "conv_strided_valid_flatten", "sumpool_globalsumpool"])
def test_stax_cupy_matches_numpy(name):
    # the neural-tangents fixture networks, on CuPy (the rows replaced by window/pool/readout kernels) and NumPy
    import json
    import pathlib
    from kernels import StaxKernel
    with np.load(pathlib.Path(__file__).parents[1] / "kernels" / "fixtures" / "nt_stax_reference.npz") as data:
        case = {c["name"]: c for c in json.loads(str(data["cases"]))}[name]
        x1, x2 = data[case["data"] + "_x1"], data[case["data"] + "_x2"]
    kernel = StaxKernel(case["spec"], block_size=2)
    for xs in ((x1,), (x1, x2)):
        want = kernel.kernels(*xs)
        got = kernel.kernels(*(cupy.asarray(x) for x in xs))
        for g, w in zip(got, want):
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=1e-11, atol=1e-13 * np.abs(w).max())


@pytest.mark.parametrize("activation", CLOSED + ["tanh"])
def test_fully_connected_cupy_matches_numpy(activation):
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((40, 6)), rng.standard_normal((25, 6))
    kernel = FullyConnected(3, activation, 1.2, 0.1, block_size=16)
    for xs in ((x1,), (x1, x2)):
        want = kernel.kernels(*xs)
        got = kernel.kernels(*(cupy.asarray(x) for x in xs))
        for g, w in zip(got, want):
            assert isinstance(g, cupy.ndarray)
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("readout", ["gap", "flatten"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_convolutional_cupy_matches_numpy(readout, parameterization):
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((5, 3, 6, 6)), rng.standard_normal((3, 3, 6, 6))
    kernel = Convolutional(3, "relu", 1.4, 0.1, 3, readout, parameterization, width=128, block_size=2)
    for xs in ((x1,), (x1, x2)):
        want = kernel.kernels(*xs)
        got = kernel.kernels(*(cupy.asarray(x) for x in xs))
        for g, w in zip(got, want):
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=1e-11, atol=1e-13)


def test_float32_on_gpu_within_float32_precision():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 20))
    kernel = FullyConnected(3, b_std=0.1)
    got = kernel.kernels(cupy.asarray(x, dtype=cupy.float32))
    for g, w in zip(got, kernel.kernels(x)):
        assert g.dtype == cupy.float32
        np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation, slope", [("relu", 0.0), ("abs", -1.0), ("leaky_relu", 0.5)])
def test_pinned_diagonal_is_theta_zero_exactly_on_gpu(activation, slope, dtype):
    # k12 = k11 = k22: s = 0 exactly (unfused products), so NNGP = k·cs·π bitwise (tests/cuda_host does the
    # same on the host); an FMA-contracted s would be off by ~1e-9 in float64.
    from kernels.analytic import _cuda as _analytic_cuda
    network = FullyConnected(1, activation, 1.0, 0.0, negative_slope=0.5).network(3)   # slope² exact: any FMA agrees
    k = np.random.default_rng(4).uniform(0.3, 3.0, (16, 16)).astype(dtype)
    nngp, _ = _analytic_cuda.fc_block(network.layers[1], network.layers[2],
                                      *(cupy.asarray(v) for v in (k, np.zeros_like(k), k, k)))
    t = np.dtype(dtype).type
    want = k * (((t(1) + t(slope) * t(slope)) / t(2 * np.pi)) * t(np.pi))
    np.testing.assert_array_equal(cupy.asnumpy(nngp), want)


# ----------------------------------------------------------------------------------------------- float32 range
@pytest.mark.parametrize("make, scale", [
    (lambda: FullyConnected(50, "erf", 0.5, 0.0), 1.0),            # ordered phase: variances near 1e-25
    (lambda: FullyConnected(3, "erf", 1.3, 0.0), 1e-15),           # |x| ≈ 1e-15: variances near 1e-30
    (lambda: FullyConnected(3, "step", 1.3, 0.0), 1e-15),
    (lambda: FullyConnected(3, "relu", 1.3, 1e-15), 1e-15),
    (lambda: FullyConnected(3, "relu", 1.3, 0.0, "standard", width=64), 1e-15),
    (lambda: Convolutional(34, "erf", 0.5, 0.0, 3, "gap", width=16), 1.0),
])
def test_float32_underflow_on_the_gpu(make, scale):
    # the products of two variances fall below FLT_MIN; CuPy compiles with -ftz=true, so without the duals'
    # power-of-two rescaling the cross terms were flushed to 0 (tests/cuda_host/test_underflow.py models it).
    # Against the float64 CPU kernel, within the float32 chain's rounding: 2e-7 a layer (that file's docstring)
    rng = np.random.default_rng(5)
    kernel = make()
    shape = (7, 5) if isinstance(kernel, FullyConnected) else (3, 2, 3, 3)
    x = (scale * rng.standard_normal(shape)).astype(np.float32)
    want = kernel.kernels(x)
    got = kernel.kernels(cupy.asarray(x))
    flat = x.reshape(len(x), -1).astype(np.float64)
    for g, w in zip(got, want):
        g = cupy.asnumpy(g)
        assert g.dtype == np.float32 and not np.any((g == 0) & (flat @ flat.T != 0))
        np.testing.assert_allclose(g, w, rtol=max(2e-5, kernel.depth * 2e-7), atol=0)


# ----------------------------------------------------------------------------------------------- near duplicates
def _near_duplicates(shape, rng):
    base = rng.standard_normal(shape)
    return np.concatenate([base, base + 1e-9 * rng.standard_normal(shape)])   # pairs of rows 1e-9 apart


@pytest.mark.parametrize("activation", ["relu", "erf", "step"])
@pytest.mark.parametrize("conv", [False, True])
def test_near_duplicate_inputs_on_the_gpu_equal_the_cpu_rules(activation, conv):
    # rows 1e-9 apart: 1 − ρ ≈ 5e-19, far inside the correlation clamp's 16·eps, so every path sets θ = 0 for
    # them; the CUDA kernels evaluate the same rules as the CPU reference chain (cpu_impl='reference'), so
    # float64 agrees to rounding, 1e-10 of the largest entry (the host runs of tests/cuda_host measured 1e-16)
    rng = np.random.default_rng(6)
    x = _near_duplicates((3, 2, 5, 5) if conv else (6, 8), rng)
    make = ((lambda impl: Convolutional(2, activation, 1.4, 0.1, 3, "gap", cpu_impl=impl)) if conv else
            (lambda impl: FullyConnected(3, activation, 1.4, 0.1, cpu_impl=impl)))
    want = make("reference").kernels(x)
    got = make("reference").kernels(cupy.asarray(x))
    for g, w in zip(got, want):
        np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=0, atol=1e-10 * np.abs(w).max())
    if activation != "step":
        # against the default CPU path (compiled loops, another rounding order): θ of a near-duplicate pair is
        # resolved to √(32·eps) ≈ 8e-8 rad a layer (kernels.analytic.duals.clamp_correlation), which moves the
        # ReLU NTK factor (π − θ)/2π by ≤ 3e-8 relative a layer: 1e-7 over three layers (host: 2.2e-9). Step
        # is left out: its angle map amplifies that rounding (fused and reference CPU paths differ by 2e-3)
        fused = make("auto").kernels(x)
        for g, w in zip(got, fused):
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=0, atol=1e-7 * np.abs(w).max())
        # float32 on the GPU (the rows round to exact duplicates) against float64 on the CPU: 1e-4 as above
        for g, w in zip(make("auto").kernels(cupy.asarray(x, dtype=cupy.float32)), fused):
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=0, atol=1e-4 * np.abs(w).max())


# ----------------------------------------------------------------------------------------------- quadrature on CuPy
def test_gelu_quadrature_dual_on_cupy_equals_numpy():
    # gelu has no closed form: its dual is the polar Gauss–Legendre rule of kernels.analytic.duals, whose erf is
    # cupyx.scipy.special.erf on CuPy and scipy.special.erf on NumPy (both within a few ulp): the same nodes and
    # weights, so the kernels agree to 1e-11 of the largest entry
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((12, 4)), rng.standard_normal((5, 4))
    kernel = FullyConnected(2, "gelu", 1.2, 0.1, block_size=8)
    for xs in ((x1,), (x1, x2)):
        for g, w in zip(kernel.kernels(*(cupy.asarray(x) for x in xs)), kernel.kernels(*xs)):
            assert isinstance(g, cupy.ndarray)
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=0, atol=1e-11 * np.abs(w).max())


# ----------------------------------------------------------------------------------------------- diagonal pins
def test_pin_fast_paths_write_into_cupy_arrays():
    # rules.pin_diagonal writes through a strided view (k12.reshape(-1)[::n + 1]) and pin_conv through fancy
    # indexing: on CuPy both must write into k12 itself, as the NumPy paths do (compared bitwise with loops)
    from kernels.analytic import rules
    rng = np.random.default_rng(8)
    k12, k11 = rng.standard_normal((6, 6)), rng.standard_normal(6)
    want = k12.copy()
    want[np.arange(6), np.arange(6)] = k11
    got = rules.pin_diagonal(cupy, cupy.asarray(k12), cupy.asarray(k11))
    np.testing.assert_array_equal(cupy.asnumpy(got), want)
    strided = cupy.asarray(np.asfortranarray(k12))                 # not C-contiguous: the mask path
    np.testing.assert_array_equal(cupy.asnumpy(rules.pin_diagonal(cupy, strided, cupy.asarray(k11))), want)
    b, h, w = 3, 2, 4
    tile, var = rng.standard_normal((b, b, h, w, h, w)), rng.standard_normal((b, h, w))
    expected = tile.copy()
    for i in range(b):
        for y in range(h):
            for xx in range(w):
                expected[i, i, y, xx, y, xx] = var[i, y, xx]
    state = (cupy.asarray(tile), cupy.asarray(var.reshape(b, 1, h, w, 1, 1)), None, None)
    np.testing.assert_array_equal(cupy.asnumpy(rules.pin_conv(cupy, state, True)[0]), expected)
    flat, fvar = rng.standard_normal((b, b, h, w)), rng.standard_normal((b, 1, h, w))
    expected_flat = flat.copy()
    for i in range(b):
        expected_flat[i, i] = fvar[i, 0]
    state = (cupy.asarray(flat), cupy.asarray(fvar), None, None)
    np.testing.assert_array_equal(cupy.asnumpy(rules.pin_conv(cupy, state, False)[0]), expected_flat)
