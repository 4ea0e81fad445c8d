"""The fused CPU image loop (``kernels.analytic._cpu.image_pairs``, compiled from the layer table by
``kernels.analytic._image_program``) against the reference rule chain and the stored neural-tangents references.

Tolerances. Fused and reference evaluate the same formulas in float64 and differ only in rounding (the order of
window sums, 1/area folded into w², the polynomial arctangent, the readout's two-level sum): a few ulps per layer,
so 1e-12 of the kernel's largest entry. Against neural-tangents: the issue's 1e-9 relative off the same-input
diagonal (tests/kernels/test_stax.py argues it). float32 inputs are computed in float64 and rounded once: 1e-6.
"""
import json
import pathlib

import numpy as np
import pytest

from kernels import StaxKernel, stax
from kernels.analytic import _cpu_drivers, _image_program, rules

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "nt_stax_reference.npz"
with np.load(FIXTURE) as _data:
    CASES = {case["name"]: case for case in json.loads(str(_data["cases"]))}
    DATA = {key: _data[key] for key in _data.files if key not in ("cases", "versions")}
IMAGE_CASES = sorted(name for name, case in CASES.items() if DATA[case["data"] + "_x1"].ndim == 4)
# the image cases the fused loop leaves to the reference rules: a GELU dual (no fused form) and CIRCULAR padding
REFERENCE_ONLY = {"conv_erf_gelu", "conv_circular_gap"}


def _agree(got, want, rtol=1e-12):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


def _paths(kernel, *xs):
    """(fused, reference) kernels of the same StaxKernel on the same inputs."""
    fused = kernel.set_params(cpu_impl="fused").kernels(*xs)
    reference = kernel.set_params(cpu_impl="reference").kernels(*xs)
    return fused, reference


def test_the_loop_covers_every_image_case_but_gelu_and_circular():
    covered = {name for name in IMAGE_CASES if _cpu_drivers.unsupported(
        StaxKernel(CASES[name]["spec"]).network(*DATA[CASES[name]["data"] + "_x1"].shape[1:]), True) is None}
    assert covered == set(IMAGE_CASES) - REFERENCE_ONLY


@pytest.mark.parametrize("name", [n for n in IMAGE_CASES if n not in REFERENCE_ONLY])
def test_fixture_cases_fused_equal_reference_and_neural_tangents(name):
    case = CASES[name]
    x1, x2 = DATA[case["data"] + "_x1"], DATA[case["data"] + "_x2"]
    kernel = StaxKernel(case["spec"], n_jobs=2)
    for xs, key in (((x1,), "same"), ((x1, x2), "cross")):
        fused, reference = _paths(kernel, *xs)
        _agree(fused, reference)
        for got, part in zip(fused, ("nngp", "ntk")):
            want = DATA[f"{name}_{part}_{key}"].copy()
            got = got.copy()
            if key == "same":   # NT leaves θ ≈ 1e-8 on the diagonal where lazykit pins θ = 0 (test_stax.py)
                np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=1e-6)
                np.fill_diagonal(got, 0.0)
                np.fill_diagonal(want, 0.0)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


def test_fused_refuses_clearly_what_it_does_not_cover(rng):
    x = rng.standard_normal((2, 1, 5, 5))
    for layers, why in (((stax.Conv(3, (3, 3), padding="CIRCULAR"), stax.Relu()), "CIRCULAR"),
                        ((stax.Conv(3, (3, 3), padding="SAME"), stax.Gelu()), "gelu_exact"),
                        ((stax.Conv(3, (3, 3), padding="SAME"), stax.Tanh()), "no closed-form dual")):
        kernel = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1)).set_params(cpu_impl="fused")
        with pytest.raises(ValueError, match=f"cpu_impl='fused' cannot run: .*{why}"):
            kernel.kernels(x)


# ----------------------------------------------------------------------------------------------- random networks
def _random_network(rng, size: tuple):
    """A random stax stack on images of ``size`` (H, W) that the loop covers: convs with random windows (1–4 per
    axis), strides (1–2) and SAME/VALID pads, pooling of every norm, Dense on pixels, dropout, residual blocks
    (one whose shortcut pools, so the branches change resolution at different rows), and a random readout."""
    h, w = size
    layers, gaussian = [], False

    def conv_fits(f, s, pad):
        return pad == "SAME" or (h >= f[0] and w >= f[1])

    def new_size(f, s, pad):
        return tuple(rules.window_geometry(n, k, t, pad)[0] for n, k, t in zip((h, w), f, s))

    for _ in range(rng.integers(2, 5)):
        choice = rng.choice(["conv", "pool", "dense", "block", "dropout"], p=[0.45, 0.2, 0.1, 0.15, 0.1])
        if choice == "conv" or not gaussian and choice in ("dense", "block"):
            f = tuple(int(v) for v in rng.integers(1, 5, 2))
            s = tuple(int(v) for v in rng.integers(1, 3, 2))
            pad = str(rng.choice(["SAME", "VALID"]))
            if not conv_fits(f, s, pad):
                pad = "SAME"
            layers.append(stax.Conv(8, f, strides=s, padding=pad, W_std=float(rng.uniform(1.0, 1.6)),
                                    b_std=float(rng.choice([0.0, 0.2]))))
            h, w = new_size(f, s, pad)
            gaussian = True
        elif choice == "pool" and gaussian:
            win = tuple(int(v) for v in rng.integers(1, 4, 2))
            s = tuple(int(v) for v in rng.integers(1, 3, 2))
            pad = str(rng.choice(["SAME", "VALID"]))
            if not conv_fits(win, s, pad):
                pad = "SAME"
            pool = rng.choice(["avg", "edges", "sum"])
            layers.append(stax.SumPool(win, s, pad) if pool == "sum" else
                          stax.AvgPool(win, s, pad, normalize_edges=bool(pool == "edges")))
            h, w = new_size(win, s, pad)
        elif choice == "dense":
            layers.append(stax.Dense(8, W_std=1.2, b_std=0.1))
        elif choice == "block":
            main = stax.serial(stax.Relu(), stax.Conv(8, (3, 3), padding="SAME", W_std=1.3))
            short = stax.AvgPool((3, 3), strides=(1, 1), padding="SAME") if rng.random() < 0.5 else stax.Identity()
            layers.append(stax.serial(stax.FanOut(2), stax.parallel(main, short), stax.FanInSum()))
            continue
        elif choice == "dropout" and layers and not gaussian:
            layers.append(stax.Dropout(0.7))
            continue
        else:
            continue
        if gaussian and rng.random() < 0.8:
            layers.append([stax.Relu, stax.Erf, stax.Abs, lambda: stax.LeakyRelu(0.2),
                           lambda: stax.ABRelu(-0.4, 1.3)][rng.integers(5)]())
            gaussian = False
    if not layers:
        layers.append(stax.Conv(8, (2, 2), padding="SAME"))
    readout = [stax.GlobalAvgPool, stax.GlobalSumPool, stax.Flatten][rng.integers(3)]()
    return stax.serial(*layers, readout, stax.Dense(1, W_std=1.1, b_std=0.05))


@pytest.mark.parametrize("seed", range(24))
def test_random_networks_fused_equal_reference(seed):
    # odd, non-square images, 2 channels; x2 of another size; 2 threads over chunks of 4 pairs
    rng = np.random.default_rng(seed)
    size = tuple(int(v) for v in rng.integers(4, 8, 2))
    kernel = _random_network(rng, size).set_params(n_jobs=2, block_size=1)
    x1, x2 = rng.standard_normal((5, 2) + size), rng.standard_normal((3, 2) + size)
    assert _cpu_drivers.unsupported(kernel.network(2, *size), True) is None, kernel
    for xs in ((x1,), (x1, x2)):
        _agree(*_paths(kernel, *xs))


# ----------------------------------------------------------------------------------------------- paths and the pin
def _vgg(width=8):
    conv = lambda: stax.Conv(width, (3, 3), padding="SAME", W_std=1.4, b_std=0.1)   # noqa: E731
    return stax.serial(conv(), stax.Relu(), stax.AvgPool((2, 2), (2, 2)), conv(), stax.Relu(),
                       stax.AvgPool((2, 2), (2, 2)), conv(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))


def test_float32_inputs_x2_and_single_kernels(rng):
    kernel = _vgg().set_params(cpu_impl="fused", n_jobs=2)
    x1, x2 = rng.standard_normal((5, 3, 8, 8)), rng.standard_normal((4, 3, 8, 8))
    for xs in ((x1,), (x1, x2)):
        nngp, ntk = kernel.kernels(*xs)
        np.testing.assert_allclose(kernel.nngp(*xs), nngp, rtol=1e-15)     # the NNGP-only loop skips Θ
        np.testing.assert_allclose(kernel.ntk(*xs), ntk, rtol=1e-15)
        # float32: computed in float64, rounded once (6e-8); the reference in float64
        got = kernel.kernels(*(x.astype(np.float32) for x in xs))
        assert all(g.dtype == np.float32 for g in got)
        _agree([g.astype(np.float64) for g in got], (nngp, ntk), rtol=1e-6)
        _agree((nngp, ntk), kernel.set_params(cpu_impl="reference").kernels(*xs))
        kernel.set_params(cpu_impl="fused")


@pytest.mark.parametrize("block_size, n_jobs", [(1, 1), (1, 2), (2, 2), (3, 1)])
def test_chunk_boundaries(rng, block_size, n_jobs):
    # 7 images: 21 cross pairs and 7 same-image pairs in chunks of max(block², 4) pairs, lanes padded at the end
    kernel = _vgg().set_params(block_size=block_size, n_jobs=n_jobs)
    x1, x2 = rng.standard_normal((7, 2, 8, 8)), rng.standard_normal((5, 2, 8, 8))
    for xs in ((x1,), (x1, x2)):
        _agree(*_paths(kernel, *xs))


def test_duplicate_images_are_pinned_and_the_kernel_is_psd(rng):
    # x[4] = x[1]: the cross pair (1, 4) runs the same arithmetic as the same-image pair (1, 1) (δ = 0 takes the
    # same path in both), on variances recorded by it, so K(x1, x4) = K(x1, x1) = K(x4, x4) bitwise (θ = 0 exactly
    # at every activation, as pinned); likewise a column of x2 that repeats a row of x1. The kernel is symmetric
    # and positive semi-definite (eigenvalues ≥ −1e-13 of the largest).
    x = rng.standard_normal((6, 2, 8, 8))
    x[4] = x[1]
    x2 = np.concatenate([rng.standard_normal((2, 2, 8, 8)), x[1:2]])
    resnet = stax.serial(stax.Conv(8, (3, 3), padding="SAME"), stax.FanOut(2),
                         stax.parallel(stax.serial(stax.Relu(), stax.Conv(8, (3, 3), strides=(2, 2), padding="SAME")),
                                       stax.Conv(8, (1, 1), strides=(2, 2), padding="SAME")),
                         stax.FanInSum(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    mixed = stax.serial(stax.Conv(8, (5, 5), padding="SAME", b_std=0.2), stax.Erf(),   # (no Dropout: its masks differ)
                        stax.Conv(8, (3, 3), padding="SAME"), stax.Step(), stax.AvgPool((3, 3), (1, 1), "SAME"),
                        stax.Conv(8, (2, 2)), stax.LeakyRelu(0.1), stax.Flatten(), stax.Dense(4), stax.Relu(),
                        stax.Dense(1))
    for kernel in (_vgg(), resnet, mixed):
        kernel = kernel.set_params(cpu_impl="fused", n_jobs=2)
        for out in kernel.kernels(x):
            assert out[1, 4] == out[1, 1] == out[4, 4] == out[4, 1]
            np.testing.assert_array_equal(out, out.T)
            eig = np.linalg.eigvalsh(out)
            assert eig.min() >= -1e-13 * eig.max()
        for out, same in zip(kernel.kernels(x, x2), kernel.kernels(x)):
            assert out[1, 2] == out[4, 2] == same[1, 1]


def test_relu_pixel_diagonal_closed_form_through_pooling(rng):
    # One image, W_std² = 2, no bias, 'ntk': ReLU halves K(x, x) at every pixel pair of the same image only on the
    # diagonal, so check the whole chain against the reference at 1e-14 on the diagonal of the kernel (θ = 0
    # pinned in both) and at 1e-12 elsewhere.
    x = rng.standard_normal((3, 3, 8, 8))
    kernel = stax.serial(stax.Conv(4, (3, 3), padding="SAME", W_std=2 ** 0.5), stax.Relu(),
                         stax.AvgPool((2, 2), (2, 2)), stax.Conv(4, (3, 3), padding="SAME", W_std=2 ** 0.5),
                         stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=2 ** 0.5))
    fused, reference = _paths(kernel, x)
    for f, r in zip(fused, reference):
        np.testing.assert_allclose(np.diag(f), np.diag(r), rtol=1e-14)
    _agree(fused, reference)


def test_rows_after_the_readout_run_on_vectors(rng):
    # GAP, then Dense → Erf → Dense → Gelu (no fused dual: fine after the readout) → Dense: the tail reads the
    # same-image readouts as its variances (x2 given: they come from the same-image pairs of x1 and of x2)
    kernel = stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2), (2, 2)),
                         stax.GlobalAvgPool(), stax.Dense(8, b_std=0.1), stax.Erf(), stax.Dense(8), stax.Gelu(),
                         stax.Dropout(0.6), stax.Dense(1))
    x1, x2 = rng.standard_normal((4, 2, 6, 5)), rng.standard_normal((3, 2, 6, 5))
    for xs in ((x1,), (x1, x2)):
        _agree(*_paths(kernel, *xs))


def test_dropout_on_images_scales_only_same_image_same_pixel_entries(rng):
    kernel = stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.Dropout(0.5),
                         stax.Conv(4, (2, 2), padding="VALID"), stax.Relu(), stax.AvgPool((2, 2)),
                         stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.Flatten(), stax.Dense(1))
    x1, x2 = rng.standard_normal((4, 2, 7, 6)), rng.standard_normal((3, 2, 7, 6))
    for xs in ((x1,), (x1, x2)):
        _agree(*_paths(kernel, *xs))


def test_program_needs_only_the_displacements_it_reads():
    # VGG on 8 × 8: the readout ('gap') needs every δ; the variances of the same-image pairs need δ = 0 at the
    # last phase, |δ| ≤ 1 before the second pool (2·0 + j − i, i, j < 2) and |δ| ≤ 3 before the first
    program = _image_program.compile_program(_vgg().network(3, 8, 8), (3, 8, 8))
    need_y, need_x = program.need["variances"]
    centre = need_y.shape[1] // 2
    for phase, radius in enumerate((3, 1, 0)):
        for need in (need_y, need_x):
            assert np.flatnonzero(need[phase]).tolist() == list(range(centre - radius, centre + radius + 1))
    out_y, _ = program.need["output"]
    assert out_y[0].all() and out_y[1][centre - 3:centre + 4].all() and out_y[2][centre - 1:centre + 2].all()
    # a strided first conv reads only even displacements of the input
    strided = stax.serial(stax.Conv(4, (3, 3), strides=(2, 2), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(),
                          stax.Dense(1))
    need_y, _ = _image_program.compile_program(strided.network(1, 8, 8), (1, 8, 8)).need["output"]
    assert (np.flatnonzero(need_y[0]) - 7).tolist() == [-6, -4, -2, 0, 2, 4, 6]


def test_explicit_zero_pads_equal_valid_on_padded_images(rng):
    # PyTorch's padding as the table holds it, ((lo, hi), (lo, hi)): a first conv with explicit pads is a VALID conv
    # of the zero-padded images (K⁰ of a padded pixel is 0), so both tables must give the same kernels — with
    # pads that keep the size (((1, 1), (1, 1)) = SAME for 3×3), asymmetric ones, and ones that grow the image
    # (lo + hi > f − 1: the loop's scatter path)
    base = stax.serial(stax.Conv(4, (3, 3), padding="VALID", b_std=0.1), stax.Relu(), stax.AvgPool((2, 2), (2, 2)),
                       stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    x = rng.standard_normal((4, 2, 7, 6))
    for pads in (((1, 1), (1, 1)), ((0, 2), (1, 0)), ((2, 2), (3, 1))):
        valid = base.network(2, 7 + sum(pads[0]), 6 + sum(pads[1]))
        padded = rules.Network((rules.conv(valid.layers[0].fan_in, 1.0, 0.1, "ntk", window=(3, 3), padding=pads),)
                               + valid.layers[1:], valid.full_spatial, valid.pair_variances)
        want = _cpu_drivers.image_kernels(valid, np.pad(x, ((0, 0), (0, 0)) + pads), None, (True, True), 2)
        got = _cpu_drivers.image_kernels(padded, x, None, (True, True), 2)
        _agree(got, want)


def test_nested_and_triple_branches(rng):
    inner = stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.AvgPool((3, 3), (1, 1), "SAME")),
                        stax.FanInSum())
    block = stax.serial(stax.FanOut(3), stax.parallel(stax.serial(stax.Relu(), stax.Conv(4, (3, 3), padding="SAME"),
                                                                  inner),
                                                      stax.Identity(), stax.Conv(4, (1, 1), padding="SAME")),
                        stax.FanInSum())
    kernel = stax.serial(stax.Conv(4, (3, 3), padding="SAME"), block, stax.Relu(), stax.AvgPool((2, 2)),
                         stax.Conv(4, (2, 2), strides=(2, 2), padding="SAME"), stax.Erf(), stax.GlobalAvgPool(),
                         stax.Dense(1)).set_params(n_jobs=2)
    x1, x2 = rng.standard_normal((4, 2, 7, 6)), rng.standard_normal((3, 2, 7, 6))
    for xs in ((x1,), (x1, x2)):
        _agree(*_paths(kernel, *xs))


def test_operation_counts_count_each_row_at_its_resolution():
    # VGG-like on 3 × 8 × 8: input 2·3 add/mul on 64² pixel pairs; conv 3×3 (stride 1: 2·(2 + 2) + 4 = 12
    # add/mul) and its ReLU (13 add/mul, 2 sqrt, 1 atan2) at 64², 16², 4² pixel pairs; two 2×2 pools
    # (2·4² + 2 = 34 add/mul per output pixel pair: 16², 4²); the GAP readout (2 per pixel pair, 4²)
    from kernels import cpu_operation_counts
    conv = lambda: stax.Conv(4, (3, 3), padding="SAME")   # noqa: E731
    net = stax.serial(conv(), stax.Relu(), stax.AvgPool((2, 2), (2, 2)), conv(), stax.Relu(),
                      stax.AvgPool((2, 2), (2, 2)), conv(), stax.Relu(), stax.GlobalAvgPool(),
                      stax.Dense(1))
    counts = cpu_operation_counts(net, (3, 8, 8))
    pairs = [64 ** 2, 16 ** 2, 4 ** 2]
    assert counts["add/mul"] == 6 * pairs[0] + 25 * sum(pairs) + 34 * (pairs[1] + pairs[2]) + 2 * pairs[2]
    assert counts["sqrt"] == 2 * sum(pairs) and counts["atan2"] == sum(pairs)
    # matching pixels (Flatten, no pooling): H·W numbers per layer; a strided conv sums its 9 aligned pairs
    flat = stax.serial(stax.Conv(4, (3, 3), strides=(2, 2), padding="SAME"), stax.Relu(), stax.Flatten(),
                       stax.Dense(1))
    assert cpu_operation_counts(flat, (2, 8, 8))["add/mul"] == 4 * 64 + (2 * 8 + 4 + 13 + 2) * 16
