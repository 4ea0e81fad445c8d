"""kernels.stax: neural-tangents' layers as lazykit kernels — the stored neural-tangents references, the pinned
diagonal, other paths (float32, x2, tiles, array-api-strict), the kernel protocol, and bad specs."""
import json
import math
import pathlib
import pickle

import numpy as np
import pytest

import kernels
from kernels import KernelRegressor, StaxKernel, gram, stax
from kernels.grams.tiles import kernel_identity

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "nt_stax_reference.npz"
with np.load(FIXTURE) as _data:
    CASES = {case["name"]: case for case in json.loads(str(_data["cases"]))}
    DATA = {key: _data[key] for key in _data.files if key not in ("cases", "versions")}


def _close_to_reference(name, same, cross):
    """Tolerances of the issue: 1e-9 relative off the same-input diagonal, 1e-6 on it.

    Off the diagonal both sides evaluate the same formulas in float64 (measured agreement: ≤ 4e-15 of the
    kernel's largest entry); atol = 1e-12 of that entry covers entries near zero. On the diagonal
    neural-tangents leaves θ = atan2(√(K11·K22 − K12²), K12) ≈ 1e-8 from rounding where lazykit pins θ = 0,
    so the two differ by up to ~2e-9 relative (measured 1.7e-9)."""
    for (nngp, ntk), key in ((same, "same"), (cross, "cross")):
        for got, part in ((nngp, "nngp"), (ntk, "ntk")):
            want = DATA[f"{name}_{part}_{key}"]
            scale = np.abs(want).max()
            got = np.array(got)
            if key == "same":
                np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=1e-6)
                np.fill_diagonal(got, 0.0)
                want = want.copy()
                np.fill_diagonal(want, 0.0)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("cpu_impl", ["reference", "auto"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_neural_tangents(name, cpu_impl):
    # neural-tangents 0.6.5 stax in float64 (compare/bench/make_stax_reference.py), through the reference rules
    # and through the engine lazykit picks ('auto': the fused loops where the network has their shape)
    case = CASES[name]
    x1, x2 = DATA[case["data"] + "_x1"], DATA[case["data"] + "_x2"]
    kernel = StaxKernel(case["spec"], cpu_impl=cpu_impl)
    _close_to_reference(name, kernel.kernels(x1), kernel.kernels(x1, x2))


def test_the_layout_is_the_one_neural_tangents_chooses():
    # NT: pixel pairs whenever pooling or GAP follows a conv, the pixel diagonal when only Flatten does
    # (nt_stax_facts §6); lazykit also keeps pixel-pair variances when an activation follows a pooling layer.
    layout = {name: StaxKernel(case["spec"]).network(*DATA[case["data"] + "_x1"].shape[1:])
              for name, case in CASES.items()}
    assert (layout["conv_strided_flatten"].full_spatial, layout["conv_strided_valid_flatten"].full_spatial) == (
        False, False)
    assert layout["conv_strided_same_gap"].full_spatial and not layout["conv_strided_same_gap"].pair_variances
    assert layout["vgg_two_avgpools"].pair_variances and layout["conv_valid_avgpool_same_flatten"].pair_variances
    assert not layout["avgpool_same_s1_edges_true"].pair_variances     # no activation after its pool


# ----------------------------------------------------------------------------------------------- the diagonal
def _net(*layers):
    return stax.serial(*layers)


def test_pinned_diagonal_gives_the_relu_closed_form_exactly(rng):
    # W_std² = 2, no bias, 'ntk': each Dense doubles K(x, x) and each Relu halves it (and Θ), and each Dense
    # adds its K to Θ = 2·Θ_in: K_out = 2·|x|²/d, Θ_out = 2·(L + 1)·|x|²/d with L = 3 hidden layers. Pinned
    # (θ = 0 exactly) this holds to rounding (1e-14); neural-tangents' unpinned formula is ~1e-9 off here.
    x = rng.standard_normal((5, 7))
    root2 = math.sqrt(2)
    kernel = _net(*[layer for _ in range(3) for layer in (stax.Dense(64, W_std=root2), stax.Relu())],
                  stax.Dense(1, W_std=root2))
    nngp, ntk = kernel.kernels(x)
    norm = np.sum(x * x, axis=1) / 7
    np.testing.assert_allclose(np.diag(nngp), 2 * norm, rtol=1e-14)
    np.testing.assert_allclose(np.diag(ntk), 8 * norm, rtol=1e-14)


@pytest.mark.parametrize("name", ["conv_strided_flatten", "conv_strided_same_gap", "vgg_two_avgpools",
                                  "resnet_preact_block"])
def test_same_image_pixel_diagonal_is_pinned_in_every_layout(name):
    # Matching pixels, pixel pairs with per-pixel variances, with pixel-pair variances, and branches: run the
    # table up to (not including) its readout on a same-input tile; K(x_i, x_i) at pixel (p, p) must equal the
    # pixel variance bitwise, so every ReLU there saw θ = 0 exactly.
    from kernels.analytic import architecture, rules
    case = CASES[name]
    x = DATA[case["data"] + "_x1"]
    network = StaxKernel(case["spec"]).network(*x.shape[1:])
    cut = [i for i, layer in enumerate(network.layers) if layer.kind == "readout"][0]
    trunk = rules.Network(network.layers[:cut], network.full_spatial, network.pair_variances)
    captured = {}
    real_run = rules.run

    def spy(net, state, xp, pin, replacements=None):   # the tile's call: run the trunk instead
        rules.run = real_run
        out = real_run(trunk, state, xp, pin, replacements)
        captured["state"] = out
        return out

    tile = architecture.reference_tiles(np, network, x, x, True, True)
    rules.run = spy
    try:
        tile(0, len(x), 0, len(x))
    finally:
        rules.run = real_run
    k12, k11, _, _ = captured["state"]
    v1, _ = rules.pixel_variances(k12, k11, captured["state"][2])
    n = len(x)
    for i in range(n):
        if k12.ndim == 4:
            np.testing.assert_array_equal(k12[i, i], v1[i, 0])
        else:
            h, w = k12.shape[2], k12.shape[3]
            block = k12[i, i].reshape(h * w, h * w)
            np.testing.assert_array_equal(np.diag(block), v1[i, 0].reshape(-1))


# ----------------------------------------------------------------------------------------------- other paths
def _vgg(hidden=16):
    return stax.serial(stax.Conv(hidden, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
                       stax.AvgPool((2, 2), strides=(2, 2)), stax.Conv(hidden, (3, 3), padding="SAME"), stax.Erf(),
                       stax.GlobalAvgPool(), stax.Dense(1, b_std=0.2))


def test_x2_none_equals_x2_given_off_the_diagonal(rng):
    x = rng.standard_normal((4, 2, 6, 6))
    kernel = _vgg()
    same = kernel.kernels(x)
    cross = kernel.kernels(x, x.copy())
    for s, c in zip(same, cross):
        np.testing.assert_array_equal(s, s.T)                   # the same-input kernel is exactly symmetric
        np.testing.assert_allclose(s, c, rtol=1e-13, atol=1e-15)   # erf has no angle: even the diagonal agrees


def test_float32_inputs_match_float64(rng):
    # float32 inputs are computed in float64 on the CPU and rounded once: the result is the float64 kernel of
    # the float32-rounded inputs, to float32 rounding (2^-24 ≈ 6e-8) and the inputs' rounding (6e-8 · depth).
    x = rng.standard_normal((3, 2, 5, 5))
    kernel = _vgg()
    got = kernel.kernels(x.astype(np.float32))
    want = kernel.kernels(x.astype(np.float32).astype(np.float64))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-7, atol=2e-7 * np.abs(w).max())
    assert kernel.set_params(dtype="float32").kernels(x)[0].dtype == np.float32


def test_tiles_of_one_input_equal_one_tile(rng):
    x1, x2 = rng.standard_normal((5, 2, 4, 4)), rng.standard_normal((3, 2, 4, 4))
    kernel = _vgg()
    for xs in ((x1,), (x1, x2)):
        whole = kernel.kernels(*xs)
        tiled = kernel.set_params(block_size=2).kernels(*xs)
        for a, b in zip(whole, tiled):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", ["fc_mixed", "conv_strided_flatten", "resnet_downsample_block",
                                  "avgpool_even_same_s2_edges_true", "fc_dropout_train"])
def test_array_api_strict_matches_neural_tangents(xp, name):
    # The reference rules written once against the array API: under array-api-strict they must still match
    # the stored neural-tangents kernels (every layout: vectors, matching pixels, pixel pairs with branches,
    # pixel-pair variances, dropout).
    case = CASES[name]
    x1, x2 = DATA[case["data"] + "_x1"], DATA[case["data"] + "_x2"]
    kernel = StaxKernel(case["spec"], cpu_impl="reference")
    same = [np.asarray(k) for k in kernel.kernels(xp.asarray(x1))]
    cross = [np.asarray(k) for k in kernel.kernels(xp.asarray(x1), xp.asarray(x2))]
    _close_to_reference(name, same, cross)


# ----------------------------------------------------------------------------------------------- the protocol
def test_kernel_protocol_get_params_pickle_repr_hash(rng):
    kernel = _vgg().set_params(dtype="float64", block_size=3)
    rebuilt = type(kernel)(**kernel.get_params())
    assert rebuilt == kernel and hash(rebuilt) == hash(kernel)
    assert pickle.loads(pickle.dumps(kernel)) == kernel
    assert eval(repr(kernel), {"stax": stax}) == kernel          # the repr is the code that builds it
    assert repr(stax.Dense(3)) == "stax.Dense(out_dim=3)"
    assert stax.Conv(4, [3, 3]) == stax.Conv(4, (3, 3))            # JSON lists are tuples, as in neural-tangents
    json.dumps(kernel_identity(kernel))                           # what a GramStore records: plain JSON
    assert kernel_identity(kernel) == kernel_identity(kernel.set_params(block_size=1, n_jobs=1))
    assert kernel_identity(kernel) != kernel_identity(_vgg(hidden=8))


def test_call_is_neural_tangents_kernel_fn(rng):
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    kernel = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1))
    nngp, ntk = kernel.kernels(x1, x2)
    np.testing.assert_array_equal(kernel(x1, x2, "ntk"), ntk)
    np.testing.assert_array_equal(kernel(x1, x2, ("nngp", "ntk"))[0], nngp)
    np.testing.assert_array_equal(kernel(x1, x2), ntk)        # one matrix, as lazykit's kernel callables
    np.testing.assert_array_equal(kernel.nngp(x1, x2), nngp)
    with pytest.raises(ValueError, match="unknown get 'cov1'; valid: nngp, ntk"):
        kernel(x1, x2, "cov1")


def test_gram_and_estimators_take_it_unchanged(rng, tmp_path):
    x = rng.standard_normal((12, 2, 4, 4))
    kernel = _vgg(8)
    ntk = kernel.ntk(x)
    np.testing.assert_allclose(gram(kernel, x, tile=5, progress=False), ntk, rtol=1e-13, atol=1e-15)
    stored = gram(kernel, x, tile=5, store=str(tmp_path / "k.zarr"), progress=False)
    np.testing.assert_allclose(stored.to_numpy(), ntk, rtol=1e-13, atol=1e-15)
    v, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    fc = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))
    model = KernelRegressor(kernel=fc, alpha=1e-3).fit(v, y)
    np.testing.assert_allclose(model.predict(v), fc.ntk(v) @ np.linalg.solve(fc.ntk(v) + 1e-3 * np.eye(20), y),
                               rtol=1e-8, atol=1e-10)


def test_package_face():
    assert kernels.stax is stax and kernels.StaxKernel is StaxKernel


# ----------------------------------------------------------------------------------------------- bad specs
@pytest.mark.parametrize("make, error, match", [
    (lambda: stax.Dense(3, w_std=1.0), TypeError, r"stax.Dense\(out_dim, W_std=1.0.*unexpected keyword argument 'w_std'"),
    (lambda: stax.Dense(0), ValueError, r"stax.Dense: `out_dim` must be an integer ≥ 1, got 0"),
    (lambda: stax.Dense(3, W_std=-1.0), ValueError, r"stax.Dense: `W_std` must be a finite number"),
    (lambda: stax.Dense(3, parameterization="mup"), ValueError, r"unknown parameterization 'mup'; valid: ntk, standard"),
    (lambda: stax.Conv(3, (3, 3), padding="same"), ValueError, r"stax.Conv: unknown padding 'same'; valid: VALID, SAME"),
    (lambda: stax.Conv(3, (3,)), ValueError, r"`filter_shape` must be 2 positive integers"),
    (lambda: stax.Conv(3, (3, 3), dimension_numbers=("NCHW", "OIHW", "NCHW")), ValueError, r"dimension_numbers must be None"),
    (lambda: stax.AvgPool((2, 2), channel_axis=2), ValueError, r"channel_axis must be -1"),
    (lambda: stax.Dropout(1.5), ValueError, r"stax.Dropout: `rate` must be a finite number in \(0, 1\]"),
    (lambda: stax.LeakyRelu(), TypeError, r"missing a required argument: 'alpha'"),
    (lambda: stax.serial(stax.Dense(3), "Relu"), TypeError, r"stax.serial layer 1 must be a stax layer"),
    (lambda: StaxKernel(["MaxPool", {}]), ValueError, r"unknown stax layer 'MaxPool'; valid: ABRelu, Abs"),
    (lambda: StaxKernel(["LayerNorm", {}]), ValueError, r"stax.LayerNorm has no lazykit counterpart.*monte_carlo_kernel"),
    (lambda: stax.ConvTranspose, AttributeError, r"stax.ConvTranspose has no counterpart"),
])
def test_bad_layers_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


_IMG = np.random.default_rng(3).standard_normal((2, 3, 5, 5))
_VEC = np.random.default_rng(3).standard_normal((2, 4))


@pytest.mark.parametrize("kernel, x, match", [
    (stax.serial(stax.Relu(), stax.Dense(1)), _VEC,
     r"stax.Relu\(\) at serial\[0\]: the input to an activation must be Gaussian"),
    (stax.serial(stax.Conv(4, (3, 3)), stax.Flatten(), stax.Relu(), stax.Dense(1)), _IMG,
     r"stax.Relu\(\) at serial\[2\]: the input to an activation must be Gaussian"),
    (stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.FanOut(2),
                 stax.parallel(stax.Conv(4, (3, 3), padding="SAME"), stax.Identity()), stax.FanInSum(),
                 stax.GlobalAvgPool(), stax.Dense(1)), _IMG,
     r"FanInSum\(\) at serial\[4\]: branch 1 is not Gaussian .*monte_carlo_kernel"),
    (stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.FanOut(2),
                 stax.parallel(stax.Conv(4, (3, 3), strides=(2, 2), padding="SAME"), stax.Identity()),
                 stax.FanInSum(), stax.GlobalAvgPool(), stax.Dense(1)), _IMG,
     r"FanInSum needs branches of one shape: branch 0 gives images of 4 channels × 3 × 3 pixels, branch 1 gives "
     r"images of 4 channels × 5 × 5"),
    (stax.serial(stax.Dense(4), stax.parallel(stax.Relu(), stax.Relu())), _VEC,
     r"parallel applies one layer per input but receives 1 input for 2 layers; put FanOut\(2\) before it"),
    (stax.serial(stax.Dense(4), stax.FanOut(2)), _VEC, r"the network ends in 2 branches: merge them with FanInSum"),
    (stax.serial(stax.Dense(4), stax.FanInSum()), _VEC, r"there is no FanOut open here"),
    (stax.serial(stax.Dense(4), stax.FanOut(2), stax.Relu()), _VEC,
     r"receives 2 branches; apply it per branch inside parallel"),
    (stax.serial(stax.Conv(4, (3, 3))), _IMG, r"the network's output is images of 4 channels × 3 × 3 pixels: end "
                                              r"it with Flatten\(\) or GlobalAvgPool\(\)"),
    (stax.serial(stax.Conv(4, (7, 7)), stax.Flatten()), _IMG, r"a 'VALID' window of 7 does not fit the 5 pixels"),
    (stax.serial(stax.Conv(4, (3, 3)), stax.Flatten()), _VEC, r"Conv needs images \(N, C, H, W\), but its input is "
                                                              r"vectors of width 4"),
    (stax.serial(stax.Dense(4), stax.GlobalAvgPool()), _VEC, r"GlobalAvgPool averages over pixels and needs images"),
    (stax.serial(stax.Dropout(0.5), stax.Dense(1)), _VEC, r"Dropout cannot be applied to the input"),
])
def test_invalid_networks_are_named_with_their_place(kernel, x, match):
    with pytest.raises(ValueError, match=match):
        kernel.kernels(x)


def test_bad_inputs_are_named(rng):
    kernel = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
    with pytest.raises(ValueError, match=r"x1 must be vectors \(n, d\) or images \(n, C, H, W\), got shape \(2, 3, 4\)"):
        kernel.kernels(rng.standard_normal((2, 3, 4)))
    with pytest.raises(ValueError, match="x2 must have the same feature shape as x1"):
        kernel.kernels(rng.standard_normal((2, 4)), rng.standard_normal((2, 5)))
    with pytest.raises(ValueError, match="x1 contains NaN or inf"):
        kernel.kernels(np.full((2, 4), np.nan))


# neural-tangents 0.6.5 signatures (neural_tangents/_src/stax/{linear,elementwise,branching}.py, read from the
# installed 0.6.5 in the peer venv): a port changes only the import
NT_SIGNATURES = {
    "Dense": "(out_dim, W_std=1.0, b_std=None, batch_axis=0, channel_axis=-1, parameterization='ntk', s=(1, 1))",
    "Conv": "(out_chan, filter_shape, strides=None, padding='VALID', W_std=1.0, b_std=None, dimension_numbers=None, "
            "parameterization='ntk', s=(1, 1))",
    "AvgPool": "(window_shape, strides=None, padding='VALID', normalize_edges=False, batch_axis=0, channel_axis=-1)",
    "SumPool": "(window_shape, strides=None, padding='VALID', batch_axis=0, channel_axis=-1)",
    "GlobalAvgPool": "(batch_axis=0, channel_axis=-1)", "GlobalSumPool": "(batch_axis=0, channel_axis=-1)",
    "Flatten": "(batch_axis=0, batch_axis_out=0)", "Identity": "()", "FanOut": "(num)", "FanInSum": "()",
    "Dropout": "(rate, mode='train')", "Relu": "(do_stabilize=False)", "LeakyRelu": "(alpha, do_stabilize=False)",
    "Abs": "(do_stabilize=False)", "ABRelu": "(a, b, do_stabilize=False)", "Erf": "(a=1.0, b=1.0, c=0.0)",
    "Sigmoid_like": "()", "Gelu": "(approximate=False)", "Sin": "(a=1.0, b=1.0, c=0.0)", "Cos": "(a=1.0, b=1.0, c=0.0)",
    "Rbf": "(gamma=1.0)", "Exp": "(a=1, b=1)", "Gaussian": "(a=1, b=-1)", "ElementwiseNumerical": "(fn, deg, df=None)",
    "serial": "(*layers)", "parallel": "(*layers)",
}


@pytest.mark.parametrize("name", sorted(NT_SIGNATURES))
def test_signatures_are_neural_tangents(name):
    import inspect
    assert str(inspect.signature(getattr(stax, name))) == NT_SIGNATURES[name]
