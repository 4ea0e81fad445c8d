"""Analytic NNGP/NTK: neural-tangents reference, closed forms, properties, other paths, Monte Carlo."""
import json
import math
import pathlib
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import Convolutional, FullyConnected

REFERENCE = pathlib.Path(__file__).parents[1] / "fixtures" / "nt_reference.npz"


# ----------------------------------------------------------------------------------------------- reference
def _reference_cases():
    with np.load(REFERENCE) as data:
        return [pytest.param(e, id=e["key"]) for e in json.loads(str(data["cases"]))]


@pytest.mark.parametrize("entry", _reference_cases())
def test_matches_neural_tangents(entry):
    # Reference: neural-tangents 0.6.5 stax in float64 (compare/bench/make_nt_reference.py). Entries agree to
    # 1e-12 relative (float64 rounding through ≤ 4 layers). Exception: the diagonal of a same-input NTK
    # through a ReLU-type layer, where stax leaves θ = atan2(√(k11k22 − k12²), k12) ≈ √(2ε) ≈ 2e-8 from
    # rounding and we pin θ = 0 exactly (docs/conventions.md, *Tiles and the diagonal*): there NT's factor
    # (π − θ)/π is low by ≈ θ/π per layer, so ours is larger by at most depth · 1e-8.
    config = dict(entry["config"])
    kind = config.pop("kind")
    with np.load(REFERENCE) as data:
        x1 = data[f"{kind}_x1"]
        x2 = None if entry["same"] else data[f"{kind}_x2"]
        want_nngp, want_ntk = data[entry["key"] + "_nngp"], data[entry["key"] + "_ntk"]
    kernel = (FullyConnected if kind == "fc" else Convolutional)(**config)
    nngp, ntk = kernel.kernels(x1, x2)
    np.testing.assert_allclose(nngp, want_nngp, rtol=1e-12, atol=1e-12 * np.abs(want_nngp).max())
    if entry["same"]:
        diag_ours, diag_nt = np.diag(ntk).copy(), np.diag(want_ntk).copy()
        assert np.all(diag_ours >= diag_nt * (1 - 1e-12))
        np.testing.assert_allclose(diag_ours, diag_nt, rtol=config.get("depth", 0) * 1e-8 + 1e-12)
        np.fill_diagonal(ntk, 0.0)
        want_ntk = want_ntk.copy()
        np.fill_diagonal(want_ntk, 0.0)
    np.testing.assert_allclose(ntk, want_ntk, rtol=1e-12, atol=1e-12 * np.abs(want_ntk).max())


# ----------------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("depth", [0, 1, 3, 5])
def test_relu_diagonal_closed_form(rng, depth):
    # ReLU, w² = 2, b = 0, 'ntk', q = ‖x‖²/d: each [Dense, ReLU] block maps (K, Θ) = (q, Θ) to
    # (2q, 2q + 2Θ) then, with θ = 0 exactly (factor ½), to (q, q + Θ); after L blocks Θ = L·q, and the
    # readout gives K = 2q, Θ = 2q + 2Lq = 2(L + 1)·q, to rounding.
    x = rng.standard_normal((6, 9))
    nngp, ntk = FullyConnected(depth=depth).kernels(x)
    sq = np.sum(x * x, axis=1) / 9
    np.testing.assert_allclose(np.diag(nngp), 2 * sq, rtol=1e-14)
    np.testing.assert_allclose(np.diag(ntk), 2 * (depth + 1) * sq, rtol=1e-14)


def test_orthogonal_inputs_one_hidden_layer():
    # x ⟂ x': K⁰ = 0 and (b = 0) the first layer keeps k12 = 0 and Θ = 0; ReLU of orthogonal inputs gives
    # √(k11·k22)/2π (θ = π/2) and Θ·¼ = 0; the readout gives K = w²·that and Θ = K + w²·0.
    x1, x2 = np.array([[3.0, 0.0, 0.0]]), np.array([[0.0, 2.0, 0.0]])
    w = 1.7
    k11, k22 = w ** 2 * 3.0, w ** 2 * 4.0 / 3.0
    nngp, ntk = FullyConnected(depth=1, w_std=w).kernels(x1, x2)
    k_hidden = math.sqrt(k11 * k22) / (2 * math.pi)
    assert nngp[0, 0] == pytest.approx(w ** 2 * k_hidden, rel=1e-14)
    assert ntk[0, 0] == pytest.approx(w ** 2 * k_hidden, rel=1e-14)


def test_standard_parameterization_depth_zero():
    # Dense readout only, 'standard': Θ = d·K⁰ + 1 (bias) = x·x' + 1 and K = w²·x·x'/d + b².
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    nngp, ntk = FullyConnected(depth=0, w_std=0.9, b_std=0.5, parameterization="standard", width=7).kernels(x1, x2)
    np.testing.assert_allclose(ntk, x1 @ x2.T + 1.0, rtol=1e-14)
    np.testing.assert_allclose(nngp, 0.81 * x1 @ x2.T / 4 + 0.25, rtol=1e-14)


def test_zero_norm_input_is_defined():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    for kernel in (FullyConnected(depth=2), FullyConnected(depth=2, activation="erf"),
                   FullyConnected(depth=1, activation="tanh")):
        nngp, ntk = kernel.kernels(x)
        assert np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk))
    images = np.zeros((2, 1, 3, 3))
    images[1] = 1.0
    nngp, ntk = Convolutional(depth=1).kernels(images)
    assert np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk))


# ----------------------------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 7), d=st.integers(2, 5), depth=st.integers(0, 3), seed=st.integers(0, 2 ** 16),
       activation=st.sampled_from(["relu", "erf", "abs", "leaky_relu", "step", "identity"]),
       parameterization=st.sampled_from(["ntk", "standard"]), b_std=st.sampled_from([None, 0.0, 0.4]))
def test_symmetric_and_positive_semidefinite(n, d, depth, seed, activation, parameterization, b_std):
    x = np.random.default_rng(seed).standard_normal((n, d))
    kernel = FullyConnected(depth, activation, 1.2, b_std, parameterization, width=5, block_size=3)
    # d >= 2: distinct random inputs are never parallel. (Parallel distinct inputs, e.g. d = 1, get
    # θ ≈ √ε ≈ 1e-8 from rounding instead of 0, and each further arc-cosine layer takes a square root of
    # that error — ε^(1/4) after two step layers — as in neural-tangents.) Rounding: 1e-10 of the scale.
    for k in kernel.kernels(x):
        assert k.shape == (n, n)
        np.testing.assert_array_equal(k, k.T)
        assert np.linalg.eigvalsh(k).min() >= -1e-10 * max(1.0, np.abs(k).max())


@pytest.mark.parametrize("readout", ["gap", "flatten"])
def test_conv_symmetric_psd(rng, readout):
    images = rng.standard_normal((5, 2, 4, 3))
    for k in Convolutional(depth=2, readout=readout, b_std=0.1).kernels(images):
        np.testing.assert_array_equal(k, k.T)
        assert np.linalg.eigvalsh(k).min() >= -1e-12 * np.abs(k).max()


# ----------------------------------------------------------------------------------------------- other paths
@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_blocked_equals_unblocked_fc(rng, activation):
    # Same arithmetic per entry; only the diagonal pin and tiling differ, so agreement is to rounding.
    x1, x2 = rng.standard_normal((23, 6)), rng.standard_normal((11, 6))
    whole = FullyConnected(depth=2, activation=activation, b_std=0.2, block_size=100)
    tiled = FullyConnected(depth=2, activation=activation, b_std=0.2, block_size=4, n_jobs=2)
    for a, b in zip(whole.kernels(x1), tiled.kernels(x1)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    for a, b in zip(whole.kernels(x1, x2), tiled.kernels(x1, x2)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(whole.ntk(x1, x2), tiled.kernels(x1, x2)[1], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(whole.nngp(x1), tiled.kernels(x1)[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("readout", ["gap", "flatten"])
def test_blocked_equals_unblocked_conv(rng, readout):
    x1, x2 = rng.standard_normal((5, 2, 4, 4)), rng.standard_normal((3, 2, 4, 4))
    whole = Convolutional(depth=2, readout=readout, block_size=10)
    tiled = Convolutional(depth=2, readout=readout, block_size=2)
    for xs in ((x1,), (x1, x2)):
        for a, b in zip(whole.kernels(*xs), tiled.kernels(*xs)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(tiled.nngp(*xs), whole.kernels(*xs)[0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(tiled.ntk(*xs), whole.kernels(*xs)[1], rtol=1e-13, atol=1e-14)


def test_cross_kernel_matches_joint_kernel(rng):
    # K(x1, x2) must equal the off-diagonal block of K([x1; x2]).
    x1, x2 = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    kernel = FullyConnected(depth=3, activation="erf", b_std=0.3)
    joint = kernel.ntk(np.concatenate([x1, x2]))
    np.testing.assert_allclose(kernel.ntk(x1, x2), joint[:4, 4:], rtol=1e-13)


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_float32_matches_float64(rng, kind):
    # float32 rounding (6e-8) amplified through a few layers and an atan2 near θ = 0: allow 1e-4 relative.
    if kind == "fc":
        x, kernel = rng.standard_normal((30, 8)), FullyConnected(depth=3, b_std=0.1)
    else:
        x, kernel = rng.standard_normal((4, 3, 5, 5)), Convolutional(depth=2, b_std=0.1)
    for k64, k32 in zip(kernel.kernels(x), kernel.kernels(x.astype(np.float32))):
        assert k32.dtype == np.float32
        np.testing.assert_allclose(k32, k64, rtol=1e-4, atol=1e-4 * np.abs(k64).max())


@pytest.mark.parametrize("kind", ["fc", "gap", "flatten"])
def test_array_api_strict_matches_numpy(xp, rng, kind):
    if kind == "fc":
        x1, x2, kernel = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), FullyConnected(2, b_std=0.2)
    else:
        x1, x2 = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((2, 2, 4, 4))
        kernel = Convolutional(2, b_std=0.2, readout=kind, block_size=2)
    # the rule chain under the namespace (NumPy or array-api-strict) against the fused numba loops on NumPy: two
    # independent engines, agreeing to rounding (a few ulp through two layers and the atan2)
    reference = kernel.set_params(cpu_impl="reference")
    fused = type(kernel)(**{**kernel.get_params(), "cpu_impl": "fused"})
    for xs in ((x1,), (x1, x2)):
        want = fused.kernels(*xs)
        got = reference.kernels(*(xp.asarray(x) for x in xs))
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), w, rtol=1e-13, atol=1e-14)


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((5, 3))
    out = FullyConnected(depth=2).ntk(torch.from_numpy(x))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), FullyConnected(depth=2).ntk(x), rtol=1e-15)


def test_params_pickle_and_equality():
    kernel = Convolutional(depth=3, activation="erf", b_std=None, readout="flatten",
                           parameterization="standard", width=64)
    clone = pickle.loads(pickle.dumps(kernel))
    assert clone == kernel and hash(clone) == hash(kernel)
    assert clone.get_params()["readout"] == "flatten"
    assert type(kernel)(**kernel.get_params()) == kernel
    assert "Convolutional(depth=3" in repr(kernel)
    assert FullyConnected(depth=2) != FullyConnected(depth=3)
    from sklearn.base import clone
    assert clone(kernel) == kernel
    assert FullyConnected(depth=2).set_params(depth=4).depth == 4
    with pytest.raises(ValueError, match="unknown parameters"):
        FullyConnected().set_params(widht=3)


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=-1), "depth"), (dict(depth=1.5), "depth"), (dict(w_std=0.0), "w_std"),
    (dict(w_std=-1.0), "w_std"), (dict(b_std=-0.1), "b_std"), (dict(b_std=float("nan")), "b_std"),
    (dict(activation="mish"), "relu, leaky_relu, abs, identity, step, erf, tanh, gelu"),
    (dict(parameterization="mup"), "parameterization"),
    (dict(parameterization="standard"), "width"), (dict(block_size=0), "block_size"), (dict(block_size="4"), "block_size"),
    (dict(n_jobs=0), "n_jobs"),
    (dict(device="tpu"), "device"), (dict(dtype="int8"), "dtype"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FullyConnected(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(filter_size=2), "filter_size"), (dict(filter_size=0), "filter_size"), (dict(readout="max"), "readout"),
])
def test_bad_conv_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Convolutional(**kwargs)


def test_bad_inputs(rng):
    fc, conv = FullyConnected(), Convolutional()
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="x2 must have the same feature shape"):
        fc.nngp(x, rng.standard_normal((2, 5)))
    with pytest.raises(ValueError, match="x1 must be 2-dimensional"):
        fc.nngp(x[0])
    with pytest.raises(ValueError, match="x1 must be 4-dimensional"):
        conv.nngp(x)
    with pytest.raises(ValueError, match="x2 must have the same feature shape"):
        conv.nngp(rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((2, 1, 4, 3)))
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="x1 contains NaN or inf"):
        fc.ntk(bad)
    with pytest.raises(ValueError, match="x2 contains NaN or inf"):
        fc.ntk(x, np.full((1, 3), np.inf))
    with pytest.raises(ValueError, match="x1 is empty"):
        fc.ntk(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="x1 must be an array"):
        fc.ntk([[1.0, 2.0]])
    with pytest.raises(TypeError, match="floating"):
        fc.ntk(np.ones((2, 2), dtype=np.int64))


# ----------------------------------------------------------------------------------------------- Monte Carlo
def _torch_layers(torch, sizes, parameterization, w_std, b_std, gen, conv=None, readout_pixels=1):
    """Weights for a chain of layers: 'ntk' draws N(0, 1) (scaled in the forward pass), 'standard' draws
    N(0, w²/fan_in) and N(0, b²) directly. ``conv`` = filter size for the hidden layers, else Dense;
    the readout sees ``readout_pixels`` values per channel (H·W after 'flatten')."""
    params = []
    for i, (fan, out) in enumerate(zip(sizes[:-1], sizes[1:])):
        is_conv = conv is not None and i < len(sizes) - 2
        fan = fan if i < len(sizes) - 2 else fan * readout_pixels
        shape = (out, fan, conv, conv) if is_conv else (out, fan)
        fan_in = fan * (conv * conv if is_conv else 1)
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        b = torch.randn(out, generator=gen, dtype=torch.float64) if b_std is not None else None
        if parameterization == "standard":
            w = w * (w_std / math.sqrt(fan_in))
            b = None if b is None else b * b_std
        params.append((w.requires_grad_(), None if b is None else b.requires_grad_(), fan_in, is_conv))
    return params


def _forward(torch, x, params, parameterization, w_std, b_std, act, readout=None):
    import torch.nn.functional as F
    h = x
    for i, (w, b, fan_in, is_conv) in enumerate(params):
        if i == len(params) - 1 and readout is not None:
            h = h.mean(dim=(2, 3)) if readout == "gap" else h.reshape(h.shape[0], -1)
        scale, bias_scale = (w_std / math.sqrt(fan_in), b_std) if parameterization == "ntk" else (1.0, 1.0)
        h = F.conv2d(h, w, padding=w.shape[-1] // 2) * scale if is_conv else (h @ w.T) * scale
        if b is not None:
            h = h + bias_scale * (b[:, None, None] if is_conv else b)
        if i < len(params) - 1:
            h = act(h)
    return h


def _monte_carlo(x, sizes, parameterization, w_std, b_std, act, n_nets, conv=None, readout=None, seed=0,
                 ntk_outputs=1, trained=None):
    """Per net: the NNGP estimate f fᵀ/O over O readout outputs, and the empirical NTK J Jᵀ averaged over
    the first ``ntk_outputs`` outputs (each has the same limit; averaging damps the readout weights' noise).
    ``trained``: the layers (1-based) whose weights and biases require grad; None = all."""
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)
    nngps, ntks = [], []
    for _ in range(n_nets):
        pixels = x.shape[2] * x.shape[3] if readout == "flatten" else 1
        params = _torch_layers(torch, sizes, parameterization, w_std, b_std, gen, conv, pixels)
        for layer, (w, b, _, _) in enumerate(params, start=1):
            for p in (w, b):
                if p is not None:
                    p.requires_grad_(trained is None or layer in trained)
        out = _forward(torch, xt, params, parameterization, w_std, b_std, act, readout)
        nngps.append((out @ out.T / out.shape[1]).detach().numpy())
        flat = [p for w, b, _, _ in params for p in (w, b) if p is not None and p.requires_grad]
        ntk = 0.0
        for o in range(ntk_outputs):
            rows = []
            for i in range(x.shape[0]):
                grads = torch.autograd.grad(out[i, o], flat, retain_graph=True)
                rows.append(torch.cat([g.reshape(-1) for g in grads]))
            jac = torch.stack(rows)
            ntk = ntk + (jac @ jac.T).detach().numpy() / ntk_outputs
        ntks.append(ntk)
    return np.array(nngps), np.array(ntks)


def _assert_close_to_mean(samples, analytic, width):
    # Mean of independent nets: standard error SE = std/√S. Finite width adds a bias O(1/width)
    # (Hanin & Nica 2019) — allow 5 SE plus 4/width of the kernel's scale.
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    scale = np.abs(analytic).max()
    assert np.all(np.abs(mean - analytic) <= 5 * se + 4 / width * scale), (mean, analytic, se)


def _check_monte_carlo(kernel, x, sizes, act, **mc):
    """The kernel's (NNGP, NTK) against the mean over finite nets built with its own parameters."""
    nngp, ntk = kernel.kernels(x)
    samples = _monte_carlo(x, sizes, kernel.parameterization, kernel.w_std, kernel.b_std, act, **mc)
    _assert_close_to_mean(samples[0], nngp, kernel.width)
    _assert_close_to_mean(samples[1], ntk, kernel.width)


@pytest.mark.parametrize("parameterization, b_std", [("ntk", 0.2), ("standard", None)])
def test_monte_carlo_fc(rng, parameterization, b_std):
    torch = pytest.importorskip("torch")
    # One hidden layer keeps each net cheap. The per-net estimate fluctuates by ~√(2/O) ≈ 4% (O = 1024
    # readout samples) plus ~1/√width from the hidden layer, so with 12 nets 5 SE ≈ 8% of the kernel's
    # scale (measured): loose, but a 'standard' NTK computed for width 900 instead of 1024 is 18% off.
    width, depth, d = 1024, 1, 8
    x = rng.standard_normal((4, d))
    kernel = FullyConnected(depth, "relu", 1.3, b_std, parameterization, width=width)
    sizes = [d] + [width] * depth + [width]   # wide readout: 1024 outputs sample the NNGP per net
    _check_monte_carlo(kernel, x, sizes, torch.relu, n_nets=12, ntk_outputs=2)


@pytest.mark.parametrize("readout, parameterization", [("gap", "ntk"), ("flatten", "standard")])
def test_monte_carlo_conv(rng, readout, parameterization):
    torch = pytest.importorskip("torch")
    channels = 1024
    x = rng.standard_normal((3, 2, 4, 4))
    kernel = Convolutional(1, "relu", 1.4, 0.1, 3, readout, parameterization, width=channels)
    sizes = [2, channels, 256]   # 256 readout outputs: the flatten readout alone has 1024·16·256 weights
    _check_monte_carlo(kernel, x, sizes, torch.relu, n_nets=6, conv=3, readout=readout, ntk_outputs=2)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["erf", "tanh"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_monte_carlo_deep(rng, activation, parameterization):
    torch = pytest.importorskip("torch")
    act = {"erf": torch.erf, "tanh": torch.tanh}[activation]
    x = rng.standard_normal((4, 5))
    width = 2048
    kernel = FullyConnected(3, activation, 1.5, 0.3, parameterization, width=width)
    _check_monte_carlo(kernel, x, [5, width, width, width, width], act, n_nets=10, ntk_outputs=1)


@pytest.mark.slow
@pytest.mark.parametrize("readout, parameterization", [("gap", "standard"), ("flatten", "ntk")])
def test_monte_carlo_deep_conv(rng, readout, parameterization):
    torch = pytest.importorskip("torch")
    channels = 1024
    x = rng.standard_normal((3, 3, 4, 4))
    kernel = Convolutional(2, "relu", 1.4, 0.1, 3, readout, parameterization, width=channels)
    _check_monte_carlo(kernel, x, [3, channels, channels, 512], torch.relu, n_nets=8, conv=3, readout=readout,
                       ntk_outputs=1)


# ----------------------------------------------------------------------------------------------- frozen layers
@pytest.mark.parametrize("trained", [{1, 2}, {1}, {2}, set()])
def test_trained_layers_closed_form_depth_one(trained):
    # One hidden ReLU layer, 'ntk', b = 0, w² = σ²: with n = |x||x'|/d and cos γ = x·x'/(|x||x'|),
    # K₁ = σ²·x·x'/d, the ReLU gives K₁' = σ²·n·(sin γ + (π − γ)cos γ)/2π and E[φ'φ'] = (π − γ)/2π,
    # and the readout K₂ = σ²K₁'. Layer 1's NTK term is K₁ carried through: σ²·K₁·(π − γ)/2π;
    # the readout's term is K₂. The NNGP is K₂ whatever is trained.
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    sigma2 = 1.7
    norms = np.linalg.norm(x1, axis=1)[:, None] * np.linalg.norm(x2, axis=1)[None, :]
    gamma = np.arccos(np.clip(x1 @ x2.T / norms, -1, 1))
    k1 = sigma2 * x1 @ x2.T / 4
    k2 = sigma2 * sigma2 * norms / 4 * (np.sin(gamma) + (np.pi - gamma) * np.cos(gamma)) / (2 * np.pi)
    want = (1 in trained) * sigma2 * k1 * (np.pi - gamma) / (2 * np.pi) + (2 in trained) * k2
    for impl in ("fused", "reference"):
        nngp, ntk = FullyConnected(1, "relu", sigma2 ** 0.5, trained_layers=trained, cpu_impl=impl).kernels(x1, x2)
        np.testing.assert_allclose(nngp, k2, rtol=1e-13)
        np.testing.assert_allclose(ntk, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ["fc", "gap", "flatten"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_trained_layers_sum_to_the_full_ntk(rng, kind, parameterization):
    # Θ = Σ_l ∂f/∂θ_l·∂f/∂θ_l is a sum over layers, so the per-layer kernels add up to the full NTK (to
    # rounding, 1e-13), the readout alone gives Θ = K in the 'ntk' parameterization, and none gives Θ = 0.
    depth = 2
    if kind == "fc":
        x, make = rng.standard_normal((5, 3)), FullyConnected
    else:
        x = rng.standard_normal((3, 2, 4, 4))
        make = lambda *a, **kw: Convolutional(*a, readout=kind, **kw)   # noqa: E731
    args = (depth, "relu", 1.3, 0.2, parameterization) if kind == "fc" else (depth, "relu", 1.3, 0.2)
    kw = dict(width=16) if kind == "fc" else dict(parameterization=parameterization, width=16)
    nngp, full = make(*args, **kw).kernels(x)
    parts = [make(*args, **kw, trained_layers=[layer]).kernels(x) for layer in range(1, depth + 2)]
    np.testing.assert_allclose(sum(p[1] for p in parts), full, rtol=1e-13)
    for p in parts:
        np.testing.assert_array_equal(p[0], nngp)
    if parameterization == "ntk":
        np.testing.assert_allclose(parts[-1][1], nngp, rtol=1e-14)
    np.testing.assert_array_equal(make(*args, **kw, trained_layers=()).ntk(x), 0.0)


@pytest.mark.parametrize("trained_layers, match", [
    ([0], r"entry` must be an integer in \[1, 4\], got 0"), ([5], r"\[1, 4\], got 5"), ([1.0], "got 1.0"),
    ([True], "got True"),
    ([2, 2], "names a layer twice"), ("12", "collection of layer indices"), (3, "collection of layer indices"),
])
def test_bad_trained_layers(trained_layers, match):
    for make in (FullyConnected, Convolutional):
        with pytest.raises((ValueError, TypeError), match=match):
            make(depth=3, trained_layers=trained_layers)


def test_trained_layers_is_a_parameter():
    kernel = Convolutional(depth=2, trained_layers=[1, 3])
    assert kernel.get_params()["trained_layers"] == [1, 3]
    assert pickle.loads(pickle.dumps(kernel)) == kernel and hash(kernel) == hash(Convolutional(depth=2,
                                                                                             trained_layers=[1, 3]))
    from sklearn.base import clone
    assert clone(kernel) == kernel


def _check_frozen_monte_carlo(kernel, x, sizes, act, **mc):
    """The analytic NTK of a net with frozen layers against the mean empirical NTK of finite nets whose
    frozen layers have requires_grad=False (tolerance as in ``_assert_close_to_mean``)."""
    samples = _monte_carlo(x, sizes, kernel.parameterization, kernel.w_std, kernel.b_std, act,
                           trained=kernel._trained, **mc)
    _assert_close_to_mean(samples[1], kernel.ntk(x), kernel.width)


@pytest.mark.parametrize("trained", [{2}, {1, 3}])
def test_monte_carlo_frozen_fc(rng, trained):
    # depth 2, width 512: 8 nets, NTK averaged over 4 readout outputs. Leaving out the frozen layers' terms
    # changes the NTK here by 67% ({2}) and 23–33% ({1, 3}) of its scale (measured), far beyond the tolerance
    # (5 SE + 4/width ≈ a few %), so a kernel that ignored trained_layers would fail.
    torch = pytest.importorskip("torch")
    width, d = 512, 6
    x = rng.standard_normal((4, d))
    kernel = FullyConnected(2, "relu", 1.3, 0.2, "ntk", width=width, trained_layers=trained)
    _check_frozen_monte_carlo(kernel, x, [d, width, width, 4], torch.relu, n_nets=8, ntk_outputs=4)


@pytest.mark.parametrize("readout, trained, parameterization", [("gap", {1}, "standard"), ("flatten", {2}, "ntk")])
def test_monte_carlo_frozen_conv(rng, readout, trained, parameterization):
    # One conv layer (256 channels) and the readout, one of them frozen ({1}: Arora et al.'s fixed last
    # layer). Freezing changes the NTK by 98% (gap) and up to 50% (flatten) of its scale here (measured).
    torch = pytest.importorskip("torch")
    channels = 256
    x = rng.standard_normal((3, 2, 4, 4))
    kernel = Convolutional(1, "relu", 1.4, 0.1, 3, readout, parameterization, width=channels,
                           trained_layers=trained)
    _check_frozen_monte_carlo(kernel, x, [2, channels, 4], torch.relu, n_nets=8, conv=3, readout=readout,
                              ntk_outputs=4)
