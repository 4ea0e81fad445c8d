"""The CUDA kernels of kernels.analytic._cuda, executed on the host through their own launch code (method:
host_cuda.py), against the NumPy reference rules.

Tolerances. float64: the host kernel and NumPy evaluate the same formulas in a different order (and FMA
contracted), with the same libm, so they agree to a few ulp of the largest entry: 1e-12 relative leaves
room while a layout or index error is O(1e-2) or more. float32 against the float64 reference: each output
is a few tens of float32 roundings (2^-24 ≈ 6e-8 each) through well-conditioned duals (random inputs keep
|cos θ| ≤ 0.99), so 2e-5 relative.
"""
import numpy as np
import pytest

from kernels import Convolutional, FullyConnected, stax
from kernels.analytic import _numerics
from kernels.analytic import rules
from kernels.analytic.duals import get_dual
from kernels.analytic.rules import activation_rule, conv_rule

pytestmark = pytest.mark.cuda_host

CLOSED = ["relu", "erf", "abs", "leaky_relu", "step", "identity"]
RTOL = {"float64": 1e-12, "float32": 2e-5}


def _close(got, want, dtype):
    assert got.dtype == np.dtype(dtype)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", CLOSED)
@pytest.mark.parametrize("parameterization, b_std", [("ntk", 0.3), ("standard", None)])
def test_fc_block_matches_reference(host, activation, parameterization, b_std, dtype):
    from kernels.analytic import _cuda as _analytic_cuda
    rng = np.random.default_rng(0)
    network = FullyConnected(2, activation, 1.3, b_std, parameterization, width=64, negative_slope=0.2).network(5)
    activation_layer, dense_layer = network.layers[1], network.layers[2]      # the pair fc_block fuses
    x = rng.standard_normal((16, 5))
    variances = np.sum(x * x, 1) / 5
    k12 = x[:9] @ x[9:].T / 5                                                   # a 9 × 7 cross tile
    state = (k12, variances[:9, None], variances[None, 9:], rng.uniform(0.5, 2, k12.shape))
    want = rules.apply(network, rules.apply(network, tuple(np.copy(v) for v in state), activation_layer),
                       dense_layer)
    got = _analytic_cuda.fc_block(activation_layer, dense_layer,
                                  *(v.astype(dtype) for v in (state[0], state[3], state[1], state[2])))
    _close(got[0], want[0], dtype)
    _close(got[1], want[3], dtype)


def _images_state(rng, b1, b2, channels, h, w, pairs: bool):
    """A tile's input state as the reference tiles build it: K(p, q) = Σ_c x[c, p]·x'[c, q]/C on every pixel pair
    (``pairs``) or on matching pixels, per-pixel variances, and a positive random Θ."""
    x1, x2 = rng.standard_normal((b1, channels, h, w)), rng.standard_normal((b2, channels, h, w))
    var1, var2 = np.sum(x1 * x1, 1) / channels, np.sum(x2 * x2, 1) / channels
    if pairs:
        k12 = np.einsum("icyx,jcvu->ijyxvu", x1, x2) / channels
        k11, k22 = var1.reshape(b1, 1, h, w, 1, 1), var2.reshape(1, b2, 1, 1, h, w)
    else:
        k12 = np.einsum("icyx,jcyx->ijyx", x1, x2) / channels
        k11, k22 = var1.reshape(b1, 1, h, w), var2.reshape(1, b2, h, w)
    return k12, k11, k22, rng.uniform(0.5, 2, k12.shape)


# windows, strides, paddings: odd and even windows (even SAME windows pad asymmetrically, lo = total // 2), strides
# of 1 and 2 per axis, VALID, a 1×1 stride-2 shortcut; inputs 7 × 5 (odd, non-square)
GEOMETRIES = [((3, 3), (1, 1), "SAME"), ((4, 2), (1, 1), "SAME"), ((3, 2), (2, 1), "SAME"),
              ((2, 3), (2, 2), "VALID"), ((1, 1), (2, 2), "SAME"), ((2, 4), (1, 2), "SAME")]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pairs", [True, False])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("activation, parameterization, b_std", [("relu", "ntk", 0.2), ("erf", "standard", None),
                                                                 ("step", "ntk", None), ("identity", "standard", 0.3),
                                                                 (None, "ntk", 0.1)])
def test_window_block_matches_the_conv_and_activation_rules(host, geometry, pairs, activation, parameterization,
                                                            b_std, dtype):
    from kernels.analytic import _cuda as _analytic_cuda
    rng = np.random.default_rng(1)
    window, strides, padding = geometry
    conv = rules.conv(18.0, 1.4, b_std, parameterization, window=window, strides=strides, padding=padding)
    state = _images_state(rng, 3, 2, 2, 7, 5, pairs)
    want = conv_rule(tuple(v.copy() for v in state), 1.4, b_std, parameterization, 18.0, 0, pairs, window=window,
                     strides=strides, padding=padding)
    act = None if activation is None else rules.activation(get_dual(activation))
    variances = [v.reshape(v.shape[0] * v.shape[1], *[d for d in v.shape[2:] if d > 1]) for v in want[1:3]]
    if act is not None:
        want = activation_rule(want, act.dual)
    got = _analytic_cuda.window_block(conv, state[0].astype(dtype), state[3].astype(dtype), pairs, act,
                                      *(v.astype(dtype) for v in variances))
    assert got[0].shape == want[0].shape
    _close(got[0], want[0], dtype)
    _close(got[1], want[3], dtype)
    (name, grid, block), = host.launches           # one launch: 256 threads a block, enough blocks to cover
    assert name.startswith("window_block") and block == (256, 1, 1) and grid == (-(-want[0].size // 256), 1, 1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("window, strides, padding, norm", [
    ((2, 2), (2, 2), "VALID", "window"), ((3, 3), (1, 1), "SAME", "window"), ((3, 3), (1, 1), "SAME", "edges"),
    ((2, 3), (2, 1), "SAME", "edges"), ((3, 2), (2, 2), "SAME", "none"), ((2, 2), (1, 2), "VALID", "none")])
def test_pool_block_matches_the_avg_pool_rule(host, window, strides, padding, norm, dtype):
    from kernels.analytic import _cuda as _analytic_cuda
    state = _images_state(np.random.default_rng(2), 2, 3, 2, 7, 5, True)
    want = rules.avg_pool_rule(tuple(v.copy() for v in state), window, strides, padding, norm)
    got = _analytic_cuda.pool_block(rules.avg_pool(window, strides, padding, norm), state[0].astype(dtype),
                                    state[3].astype(dtype))
    assert got[0].shape == want[0].shape
    _close(got[0], want[0], dtype)
    _close(got[1], want[3], dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["gap", "gsp", "flatten"])
def test_readout_block_matches_the_readout_rule(host, mode, dtype):
    from kernels.analytic import _cuda as _analytic_cuda
    k12 = _images_state(np.random.default_rng(3), 3, 2, 2, 5, 3, True)[0]
    want = rules.readout_rule((k12, None, None, None), True, mode)[0]
    _close(_analytic_cuda.readout_block(k12.astype(dtype), mode), want, dtype)


def _both_paths(host, monkeypatch, make, x1, x2=None):
    """(CUDA chain on the host, NumPy reference) of the same public call; ``make`` builds the kernel with
    cpu_impl='reference', the tile path that hands CuPy tiles to the CUDA chains (not the numba CPU loops)."""
    got = make().kernels(x1, x2)
    monkeypatch.setattr(_numerics, "uses_cuda_kernels", lambda xp: False)
    want = make().kernels(x1.astype(np.float64), None if x2 is None else x2.astype(np.float64))
    monkeypatch.setattr(_numerics, "uses_cuda_kernels", lambda xp: True)
    return got, want


def _conv(f=(3, 3), s=(1, 1), padding="SAME", **kw):
    return stax.Conv(8, f, strides=s, padding=padding, W_std=1.3, b_std=0.1, **kw)


# stax stacks through every replaced row and layout: pixel pairs with per-pixel variances (GAP after the last
# activation), with pixel-pair variances (an activation after pooling: VGG), matching pixels (Flatten; a strided
# VALID conv; Dense on pixels after an activation: the FC pair falls back to the rules there), pooling norms with asymmetric SAME pads, 'standard' widths, a residual block with a 1×1 stride-2
# shortcut (branches through the chain), and the readouts 'gap', 'gsp', 'flatten' (a Dense and Erf after it: the
# fused FC pair on vectors)
NETWORKS = {
    "vgg": lambda: stax.serial(_conv(), stax.Relu(), stax.AvgPool((2, 2), (2, 2)), _conv(), stax.Erf(),
                               stax.AvgPool((2, 2), (2, 2), "SAME"), _conv((2, 3)), stax.Relu(), stax.GlobalAvgPool(),
                               stax.Dense(4), stax.Erf(), stax.Dense(1)),
    "strided_flatten": lambda: stax.serial(_conv((3, 2), (2, 1), "VALID"), stax.Relu(), stax.Dense(8, b_std=0.2),
                                           stax.Relu(), _conv((2, 2)), stax.LeakyRelu(0.3), stax.Flatten(),
                                           stax.Dense(1)),
    "pool_norms": lambda: stax.serial(_conv((4, 4)), stax.Abs(), stax.AvgPool((3, 2), (1, 2), "SAME",
                                                                            normalize_edges=True),
                                      _conv(parameterization="standard"), stax.Relu(), stax.SumPool((2, 2), (1, 1)),
                                      stax.GlobalSumPool(), stax.Dense(1)),
    "resnet_down": lambda: stax.serial(_conv(), stax.FanOut(2),
                                       stax.parallel(stax.serial(stax.Relu(), _conv((3, 3), (2, 2))),
                                                     _conv((1, 1), (2, 2))),
                                       stax.FanInSum(), stax.Relu(), stax.AvgPool((2, 1)), stax.Flatten(),
                                       stax.Dense(1)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("with_x2", [False, True])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_whole_image_kernels_through_the_cuda_chain(host, monkeypatch, name, with_x2, dtype):
    # 7 × 5 images (odd, non-square) in tiles of 2 over 5 images: off-diagonal tiles with two images a side, whose
    # k12 is a permuted view (the layout that scrambled outputs allocated with empty_like: errors of 1e-2 to 3e-1)
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((5, 2, 7, 5)).astype(dtype)
    x2 = rng.standard_normal((3, 2, 7, 5)).astype(dtype) if with_x2 else None
    got, want = _both_paths(host, monkeypatch, lambda: NETWORKS[name]().set_params(
        block_size=2, n_jobs=1, dtype=dtype, cpu_impl="reference"), x1, x2)
    for g, w in zip(got, want):
        _close(g, w, dtype)
    launched = {n.split("<")[0] for n, _, _ in host.launches}
    assert {"window_block", "readout_block" if name != "strided_flatten" else "window_block"} <= launched
    assert ("pool_block" in launched) == (name != "strided_flatten")


def test_the_convolutional_kernel_through_the_cuda_chain(host, monkeypatch):
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal((5, 2, 4, 3))
    for readout in ("gap", "flatten"):
        got, want = _both_paths(host, monkeypatch, lambda: Convolutional(
            2, "relu", 1.2, 0.1, 3, readout, block_size=2, n_jobs=1, cpu_impl="reference"), x1)
        for g, w in zip(got, want):
            _close(g, w, "float64")
        assert any(name.startswith("window_block") for name, _, _ in host.launches)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("with_x2", [False, True])
@pytest.mark.parametrize("activation", ["relu", "erf", "step", "identity"])
def test_whole_fc_kernel_through_the_cuda_chain(host, monkeypatch, activation, with_x2, dtype):
    # 5 × 3 inputs in tiles of 2: every layout the elementwise kernel meets (2-D, 1×n, n×1, 1×1)
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((5, 4)).astype(dtype)
    x2 = rng.standard_normal((3, 4)).astype(dtype) if with_x2 else None
    got, want = _both_paths(host, monkeypatch, lambda: FullyConnected(
        3, activation, 1.3, 0.2, block_size=2, n_jobs=1, dtype=dtype, cpu_impl="reference"), x1, x2)
    for g, w in zip(got, want):
        _close(g, w, dtype)



@pytest.mark.parametrize("with_x2", [False, True])
def test_step_is_zero_where_a_variance_is_zero(host, monkeypatch, with_x2):
    # φ = 1[x > 0], φ(0) = 0: an all-zero input without bias has pre-activations ≡ 0, so K(0, x) = 0 for every
    # x (duals._step_nngp). atan2(0, 0) = 0 instead gives 1/2 there, an indefinite kernel with x and −x.
    rng = np.random.default_rng(7)
    x1 = rng.standard_normal((5, 4))
    x1[0] = 0.0
    x2 = np.concatenate([np.zeros((1, 4)), rng.standard_normal((2, 4))]) if with_x2 else None
    got, want = _both_paths(host, monkeypatch, lambda: FullyConnected(
        2, "step", 1.3, 0.0, block_size=2, n_jobs=1, cpu_impl="reference"), x1, x2)
    np.testing.assert_array_equal(want[0][0], 0.0)                  # the reference: the zero row's NNGP is 0
    for g, w in zip(got, want):
        _close(g, w, "float64")


@pytest.mark.parametrize("activation", ["relu", "step", "erf"])
def test_near_identical_inputs_match_the_reference(host, activation):
    # x' = x + 1e-7·noise: s² = k11·k22 − k12² ≈ 1e-14·k². Formed as a difference of products, its rounding error
    # (≈ 2e-16·k²) is ≈ 2% of it, ≈ 1e-9 of the NNGP; factored as (b − |k12|)(b + |k12|), as the reference does,
    # b − |k12| is exact (Sterbenz) on the same inputs, so the kernel and the rule agree to RTOL (1e-12).
    from kernels.analytic import _cuda as _analytic_cuda
    rng = np.random.default_rng(8)
    network = FullyConnected(2, activation, 1.3, 0.1, width=64).network(6)
    activation_layer, dense_layer = network.layers[1], network.layers[2]
    x = rng.standard_normal((8, 6))
    x2 = x + 1e-7 * rng.standard_normal((8, 6))
    state = (x @ x2.T / 6, np.sum(x * x, 1)[:, None] / 6, np.sum(x2 * x2, 1)[None, :] / 6, np.ones((8, 8)))
    want = rules.apply(network, rules.apply(network, tuple(np.copy(v) for v in state), activation_layer),
                       dense_layer)
    got = _analytic_cuda.fc_block(activation_layer, dense_layer, state[0], state[3], state[1], state[2])
    _close(got[0], want[0], "float64")
    _close(got[1], want[3], "float64")

def _theta_zero_dual(k, slope, dtype):
    """The closed-form ReLU-family dual at θ = 0 in the kernel's own arithmetic: s = 0, so
    dot = cs·π and nngp = k·dot with cs = (1 + slope²)/(2π) (one rounding each, in ``dtype``)."""
    t = np.dtype(dtype).type
    cs = (t(1) + t(slope) * t(slope)) / t(2 * np.pi)
    return k * (cs * t(np.pi))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation, slope", [("relu", 0.0), ("abs", -1.0), ("leaky_relu", 0.5)])
def test_pinned_diagonal_is_theta_zero_exactly(host, activation, slope, dtype):
    # k12 = k11 = k22 (a pinned diagonal): s must be exactly 0, so NNGP = k·cs·π bitwise. With the product
    # contracted into an FMA, s is the rounding error of k11·k22 and NNGP is off by ~1e-9 (float64).
    from kernels.analytic import _cuda as _analytic_cuda
    network = FullyConnected(1, activation, 1.0, 0.0, negative_slope=0.5).network(3)   # slope² exact: any FMA agrees   # w² = 1, b² = 0: K = nngp
    k = np.random.default_rng(4).uniform(0.3, 3.0, (16, 16)).astype(dtype)
    nngp, ntk = _analytic_cuda.fc_block(network.layers[1], network.layers[2], k, np.zeros_like(k), k, k)
    np.testing.assert_array_equal(nngp, _theta_zero_dual(k, slope, dtype))
    np.testing.assert_array_equal(_analytic_cuda.activation_variance(network.layers[1], k),
                                  _theta_zero_dual(k, slope, dtype))      # the variances: the same θ = 0

    conv = Convolutional(1, activation, 1.0, 0.0, 1, "gap", negative_slope=0.5).network(1, 3, 2)  # 1×1, w = 1
    var = np.random.default_rng(5).uniform(0.3, 3.0, (2, 3, 2)).astype(dtype)     # (B, H, W) variances
    pair = np.zeros((2, 2, 3, 2, 3, 2), dtype)                                  # only the pinned entries matter
    nngp, _ = _analytic_cuda.window_block(conv.layers[0], pair, np.zeros_like(pair), True, conv.layers[1], var, var,
                                          pin=True)
    flat = nngp.reshape(2, 2, 6, 6)
    pinned = np.stack([np.diag(flat[i, i]) for i in range(2)])                  # (i, i, p, p) entries
    np.testing.assert_array_equal(pinned, _theta_zero_dual(var.reshape(2, 6), slope, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", CLOSED)
def test_activation_variance_matches_reference(host, activation, dtype):
    # the variances after an activation come from the dual source too, dual(v, v, v)
    from kernels.analytic import _cuda as _analytic_cuda
    layer = FullyConnected(1, activation, negative_slope=0.2).network(3).layers[1]
    v = np.random.default_rng(6).uniform(0.05, 20.0, (5, 1))
    got = _analytic_cuda.activation_variance(layer, v.astype(dtype))
    _close(got, rules.activation_variance(v, layer.dual), dtype)


def test_host_launch_flushes_float32_denormals_as_the_gpu(host):
    # CuPy compiles with -ftz=true: float32 denormal results and operands become 0 on the GPU, float64 ones stay
    source = ("template <typename T> __global__ void product(const T* a, const T* b, T* out) {\n"
              "  out[threadIdx.x] = a[threadIdx.x] * b[threadIdx.x]; }\n")
    module = host.RawModule(code=source, name_expressions=("product<float>", "product<double>"))
    for dtype, a, b, want in (("float", [1e-20, 1e-40, 2e-19], [1e-20, 1.0, 2e-19],
                               [0.0, 0.0, np.float32(2e-19) * np.float32(2e-19)]),
                              ("double", [1e-160, 1e-310], [1e-160, 1.0], [1e-320, 1e-310])):
        t = np.float32 if dtype == "float" else np.float64
        a, b, out = np.array(a, t), np.array(b, t), np.full(len(a), np.nan, t)
        module.get_function(f"product<{dtype}>")((1,), (len(a),), (a, b, out))
        np.testing.assert_array_equal(out, np.array(want, t))   # 1e-20², 1e-40 as an operand: flushed; 4e-38 is normal
    assert np.float32(1e-20) * np.float32(1e-20) > 0             # the caller's mode is restored after the launch
    with pytest.raises(NotImplementedError, match="float32 or float64 alone"):
        module.get_function("product<float>")((1,), (1,), (np.ones(1, np.float32), np.ones(1), np.ones(1)))


def test_a_kernel_with_barriers_is_refused_not_run_wrongly(host):
    # shared memory and barriers need threads running together; the serial host launch would be silently wrong
    source = ("extern \"C\" __global__ void block_sum(const float* x, float* out) {\n"
              "  __shared__ float part[64]; part[threadIdx.x] = x[threadIdx.x]; __syncthreads();\n"
              "  if (threadIdx.x == 0) { float s = 0; for (int i = 0; i < 64; ++i) s += part[i]; out[0] = s; } }\n")
    module = host.RawModule(code=source)
    with pytest.raises(NotImplementedError, match="__shared__"):
        module.get_function("block_sum")
