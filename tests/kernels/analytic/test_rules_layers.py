"""The layer table's geometric rules (strides, padding, pooling, readouts, branches, dropout) against their
formulas written out entry by entry, and which networks the fused engines may take."""
import importlib

import numpy as np
import pytest

from kernels import Convolutional, FullyConnected, stax
from kernels.analytic import rules
from kernels.analytic.duals import get_dual

NP = importlib.import_module("array_api_compat.numpy")


@pytest.mark.parametrize("size, window, stride, padding, want", [
    # lax.padtype_to_pads: out = ⌈n/s⌉, total = max((out − 1)s + f − n, 0), lo = total // 2 (nt_stax_facts §2)
    (8, 3, 2, "SAME", (4, 0, 1)), (7, 4, 1, "SAME", (7, 1, 2)), (7, 2, 2, "SAME", (4, 0, 1)),
    (7, 3, 2, "SAME", (4, 1, 1)), (8, 1, 2, "SAME", (4, 0, 0)), (7, 3, 2, "VALID", (3, 0, 0)),
    (8, 2, 1, "VALID", (7, 0, 0)), (7, 2, 1, "CIRCULAR", (7, 0, 1)),
])
def test_window_geometry_is_lax_padding(size, window, stride, padding, want):
    assert rules.window_geometry(size, window, stride, padding) == want


def _padded(k, lo, hi, padding, axes):
    mode = "wrap" if padding == "CIRCULAR" else "constant"
    width = [(0, 0)] * k.ndim
    for a in axes:
        width[a] = (lo, hi)
    return np.pad(k, width, mode=mode)


def _conv_by_hand(k, f, s, padding):
    """K'(p, q) = (1/f) Σ_i K̃(p·s + i, q·s + i) on a 2-D (p, q) plane, in plain loops."""
    out, lo, hi = rules.window_geometry(k.shape[0], f, s, padding)
    kp = _padded(k, lo, hi, padding, (0, 1))
    return np.array([[sum(kp[p * s + i, q * s + i] for i in range(f)) / f for q in range(out)] for p in range(out)])


def _pool_by_hand(k, w, s, padding, norm):
    """K'(p, q) = Σ_{i,j} K̃(p·s + i, q·s + j) / norm(p, q)."""
    out, lo, hi = rules.window_geometry(k.shape[0], w, s, padding)
    kp = _padded(k, lo, hi, padding, (0, 1))
    real = _padded(np.ones(k.shape[0]), lo, hi, "SAME", (0,))
    result = np.empty((out, out))
    for p in range(out):
        for q in range(out):
            total = sum(kp[p * s + i, q * s + j] for i in range(w) for j in range(w))
            if norm == "window":
                total /= w * w
            elif norm == "edges":
                total /= real[p * s:p * s + w].sum() * real[q * s:q * s + w].sum()
            result[p, q] = total
    return result


@pytest.mark.parametrize("f, s, padding", [(3, 1, "SAME"), (3, 2, "SAME"), (4, 1, "SAME"), (2, 2, "SAME"),
                                           (3, 2, "VALID"), (2, 1, "CIRCULAR"), (3, 2, "CIRCULAR")])
def test_conv_rule_is_the_aligned_filter_mean(rng, f, s, padding):
    # One spatial axis of a (1, 1, H, 1, H, 1) pixel-pair tile (W = 1 with a 1-wide filter along it), against
    # the per-axis formula; w = 1, no bias, so the rule is the filter mean alone.
    n = 7
    k = rng.standard_normal((n, n))
    state = (k.reshape(1, 1, n, 1, n, 1).copy(), None, None, None)
    got = rules.conv_rule(state, 1.0, None, "ntk", 0, 0, True, window=(f, 1), strides=(s, 1), padding=padding)[0]
    np.testing.assert_allclose(got[0, 0, :, 0, :, 0], _conv_by_hand(k, f, s, padding), rtol=1e-14)


def test_legacy_patch_conv_equals_the_general_rule(rng):
    # Convolutional's f × f 'SAME' stride-1 row (filter_size only) is the general rule with those arguments.
    k = rng.standard_normal((2, 3, 5, 4, 5, 4))
    a = rules.conv_rule((k.copy(), None, None, None), 1.3, 0.2, "ntk", 0, 3, True)[0]
    b = rules.conv_rule((k.copy(), None, None, None), 1.3, 0.2, "ntk", 0, 0, True, window=(3, 3), strides=(1, 1),
                        padding="SAME")[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("w, s, padding, norm", [(2, 2, "VALID", "window"), (3, 1, "SAME", "window"),
                                                 (3, 1, "SAME", "edges"), (2, 2, "SAME", "edges"),
                                                 (2, 2, "VALID", "none"), (2, 1, "CIRCULAR", "window")])
def test_avg_pool_rule_sums_every_pixel_pair_of_the_windows(rng, w, s, padding, norm):
    n = 7
    k = rng.standard_normal((n, n))
    state = (k.reshape(1, 1, n, 1, n, 1).copy(), None, None, k.reshape(1, 1, n, 1, n, 1).copy())
    out = rules.avg_pool_rule(state, (w, 1), (s, 1), padding, norm)
    for got in (out[0], out[3]):
        np.testing.assert_allclose(got[0, 0, :, 0, :, 0], _pool_by_hand(k, w, s, padding, norm), rtol=1e-14)
    assert out[1] is None and out[2] is None       # per-pixel variances cannot be pooled


def test_edge_normalised_pool_keeps_a_constant_kernel_constant():
    # normalize_edges divides by the real pixels in each window: a constant K stays constant, borders included;
    # the window-size division lowers it at the borders (the zeros of the padding count).
    k = np.full((1, 1, 6, 6, 6, 6), 2.5)
    edges = rules.avg_pool_rule((k.copy(), None, None, None), (3, 3), (1, 1), "SAME", "edges")[0]
    window = rules.avg_pool_rule((k.copy(), None, None, None), (3, 3), (1, 1), "SAME", "window")[0]
    np.testing.assert_allclose(edges, 2.5, rtol=1e-15)
    assert window[0, 0, 0, 0, 0, 0] == pytest.approx(2.5 * (4 / 9) ** 2)   # a corner window holds 4 of 9 pixels


def test_readouts_average_or_sum_the_right_pixel_pairs(rng):
    k = rng.standard_normal((2, 3, 2, 3, 2, 3))
    pairs = k.reshape(2, 3, 6, 6)
    gap = rules.readout_rule((k.copy(), None, None, None), True, "gap")[0]
    gsp = rules.readout_rule((k.copy(), None, None, None), True, "gsp")[0]
    flat = rules.readout_rule((k.copy(), None, None, None), True, "flatten")[0]
    np.testing.assert_allclose(gap, pairs.mean(axis=(2, 3)), rtol=1e-14)
    np.testing.assert_allclose(gsp, pairs.sum(axis=(2, 3)), rtol=1e-14)
    np.testing.assert_allclose(flat, np.einsum("abpp->ab", pairs) / 6, rtol=1e-14)
    diag = rng.standard_normal((2, 3, 2, 3))
    np.testing.assert_allclose(rules.readout_rule((diag, None, None, None), False, "flatten")[0],
                               diag.mean(axis=(2, 3)), rtol=1e-14)
    with pytest.raises(ValueError, match="readout 'gap' needs a pixel-pair tile"):
        rules.readout_rule((diag, None, None, None), False, "gap")


def test_dropout_scales_only_same_input_entries(rng):
    k12, k11, k22 = rng.uniform(0.1, 1, (3, 3)), rng.uniform(1, 2, (3, 1)), rng.uniform(1, 2, (1, 3))
    ntk = rng.uniform(0.1, 1, (3, 3))
    out = rules.dropout_rule((k12.copy(), k11.copy(), k22.copy(), ntk.copy()), 0.8, same_inputs=True)
    for got, want in ((out[0], k12), (out[3], ntk)):
        np.testing.assert_allclose(np.diag(got), np.diag(want) / 0.8, rtol=1e-15)
        off = ~np.eye(3, dtype=bool)
        np.testing.assert_array_equal(got[off], want[off])
    np.testing.assert_allclose(out[1], k11 / 0.8, rtol=1e-15)
    cross = rules.dropout_rule((k12.copy(), k11.copy(), k22.copy(), ntk.copy()), 0.8, same_inputs=False)
    np.testing.assert_array_equal(cross[0], k12)                  # independent masks on different inputs


def test_branches_sum_the_branch_terms(rng):
    # FanOut → parallel(Relu → Dense, Identity) → FanInSum: K = K_f + K, Θ = Θ_f + Θ (no cross terms).
    relu, dense = rules.activation(get_dual("relu")), rules.dense(0, 1.3, 0.1, "ntk")
    net = rules.Network((rules.branches((relu, dense), ()),))
    a = rng.standard_normal((4, 3))
    state = lambda: (a @ a.T / 3, (np.sum(a * a, 1) / 3)[:, None], (np.sum(a * a, 1) / 3)[None, :],  # noqa: E731
                     np.full((4, 4), 0.5))
    got = rules.run(net, state(), NP, pin=False)
    s = state()
    f = rules.dense_rule(rules.activation_rule(tuple(np.copy(v) for v in s), relu.dual), 1.3, 0.1, "ntk", 0)
    for g, fx, x in zip(got, f, s):
        np.testing.assert_allclose(g, fx + x, rtol=1e-15)


def test_pixel_variances_are_the_pixel_diagonal_of_pair_variances(rng):
    v = rng.standard_normal((2, 1, 3, 2, 3, 2))
    k12 = np.zeros((2, 4, 3, 2, 3, 2))
    v1, _ = rules.pixel_variances(k12, v, v.reshape(1, 2, 3, 2, 3, 2))
    assert v1.shape == (2, 1, 3, 2, 1, 1)
    np.testing.assert_array_equal(v1[:, 0, :, :, 0, 0], np.einsum("apqpq->apq", v[:, 0]))


def test_the_fused_engines_take_the_rows_they_cover():
    # 'fc': Dense, [activation, Dense]...; 'conv': images whose rows up to the one top-level readout are Conv/pooling
    # (not 'CIRCULAR'), Dense, activations, Dropout or branches of those; anything after the readout is vectors
    assert rules.fused_shape(FullyConnected(depth=2).network(3)) == "fc"
    assert rules.fused_shape(Convolutional(depth=2, readout="gap").network(1, 4, 4)) == "conv"
    assert rules.fused_shape(Convolutional(depth=2, readout="flatten").network(1, 4, 4)) == "conv"

    def shape(*layers, feature=(2, 6, 6)):
        return rules.fused_shape(stax.serial(*layers).network(*feature))

    for conv in (stax.Conv(4, (3, 3), padding="SAME"), stax.Conv(4, (4, 4), padding="SAME"),
                 stax.Conv(4, (3, 3), strides=(2, 2), padding="SAME"), stax.Conv(4, (3, 3)),
                 stax.Conv(4, (3, 1), padding="SAME")):
        assert shape(conv, stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)) == "conv"
        assert shape(conv, stax.Relu(), stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(1)) == "conv"
    same3 = stax.Conv(4, (3, 3), padding="SAME")
    block = stax.serial(stax.FanOut(2), stax.parallel(stax.serial(stax.Relu(), same3), stax.Identity()),
                        stax.FanInSum())
    assert shape(same3, block, stax.Relu(), stax.GlobalSumPool(), stax.Dense(1)) == "conv"
    assert shape(same3, stax.Relu(), stax.Dropout(0.5), stax.GlobalAvgPool(), stax.Dense(1), stax.Gelu(),
                 stax.Dense(1)) == "conv"
    assert shape(stax.Conv(4, (3, 3), padding="CIRCULAR"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)) is None
    assert shape(same3, stax.Relu(), stax.AvgPool((2, 2), padding="CIRCULAR"), stax.GlobalAvgPool(),
                 stax.Dense(1)) is None
    assert shape(stax.Dense(4), stax.Relu(), stax.Dense(1), feature=(3,)) == "fc"
    assert shape(stax.Dense(4), stax.Relu(), stax.Dropout(0.5), stax.Dense(1), feature=(3,)) is None
