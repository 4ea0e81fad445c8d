"""kernels.analytic.rules: the pure layer rules, the network defined once, and the chain that the fused GPU path reuses."""
import importlib
import math
import sys
import types

import numpy as np
import pytest

from kernels import Convolutional, FullyConnected
from kernels.analytic import rules
from kernels.analytic.duals import get_dual

NP = importlib.import_module("array_api_compat.numpy")


def _fc_state(rng, n1=5, n2=4, d=3):
    a, b = rng.standard_normal((n1, d)), rng.standard_normal((n2, d))
    return (a @ b.T / d, (np.sum(a * a, 1) / d)[:, None], (np.sum(b * b, 1) / d)[None, :],
            np.zeros((n1, n2)))


def test_dense_rule_ntk_and_standard_at_a_point():
    # One entry by hand: K = 0.3, K11 = 1, K22 = 2, Θ = 0.5, w = 1.5, b = 0.2, n_in = 7.
    state = lambda: (np.array([[0.3]]), np.array([[1.0]]), np.array([[2.0]]), np.array([[0.5]]))  # noqa: E731
    k12, k11, k22, ntk = rules.dense_rule(state(), 1.5, 0.2, "ntk", 7)
    assert k12[0, 0] == pytest.approx(2.25 * 0.3 + 0.04)                 # K ← w²K + b²
    assert ntk[0, 0] == pytest.approx(2.25 * 0.5 + 2.25 * 0.3 + 0.04)     # Θ ← w²Θ + K_new
    assert (k11[0, 0], k22[0, 0]) == pytest.approx((2.25 + 0.04, 4.5 + 0.04))
    k12, _, _, ntk = rules.dense_rule(state(), 1.5, 0.2, "standard", 7)
    assert ntk[0, 0] == pytest.approx(2.25 * 0.5 + 7 * 0.3 + 1.0)         # Θ ← w²Θ + n_in·K_old + 1 (bias)
    _, _, _, ntk = rules.dense_rule(state(), 1.5, None, "standard", 7)
    assert ntk[0, 0] == pytest.approx(2.25 * 0.5 + 7 * 0.3)               # no bias: no +1


def test_relu_activation_rule_on_orthogonal_inputs():
    # k12 = 0 (θ = π/2): E[φφ] = √(k11 k22)/2π, E[φ'φ'] = 1/4 (Cho & Saul 2009, arc-cosine kernels).
    state = (np.array([[0.0]]), np.array([[1.0]]), np.array([[4.0]]), np.array([[2.0]]))
    k12, k11, k22, ntk = rules.activation_rule(state, get_dual("relu"))
    assert k12[0, 0] == pytest.approx(2.0 / (2 * math.pi), rel=1e-14)
    assert ntk[0, 0] == pytest.approx(2.0 * 0.25, rel=1e-14)
    assert (k11[0, 0], k22[0, 0]) == pytest.approx((0.5, 2.0), rel=1e-14)  # ReLU halves the variances


def test_same_conv_of_ones_counts_the_window_inside_the_image():
    # 'SAME' zero padding: a 3×3 window holds 9 pixels inside, 6 on an edge, 4 in a corner, divided by 9.
    state = (np.ones((1, 1, 4, 5)), None, None, None)
    out = rules.conv_rule(state, 1.0, None, "ntk", 0, 3, False)[0]
    assert out[0, 0, 0, 0] == pytest.approx(4 / 9) and out[0, 0, 0, 2] == pytest.approx(6 / 9)
    assert out[0, 0, 2, 2] == pytest.approx(1.0)


def test_the_network_is_defined_once_by_the_kernel():
    net = FullyConnected(depth=2, width=16, parameterization="standard", b_std=None).network(5)
    assert [(layer.kind, layer.fan_in) for layer in net.layers] == [
        ("dense", 5), ("activation", 0), ("dense", 16), ("activation", 0), ("dense", 16)]
    assert all(layer.b_std is None for layer in net.layers if layer.kind == "dense")
    assert [d.name for d in net.duals] == ["relu", "relu"]
    conv = Convolutional(depth=1, width=8, filter_size=3, readout="flatten", parameterization="standard")
    net = conv.network(2, 4, 5)
    assert [(layer.kind, layer.fan_in) for layer in net.layers] == [
        ("conv", 2 * 9), ("activation", 0), ("readout", 0), ("dense", 8 * 4 * 5)]
    assert net.layers[0].filter_size == 3 and net.full_spatial is False


def test_run_equals_the_rules_applied_by_hand(rng):
    kernel = FullyConnected(depth=2, activation="erf", w_std=1.2, b_std=0.3)
    net = kernel.network(3)
    state = _fc_state(rng)
    by_hand = tuple(v.copy() for v in state)
    for layer in net.layers:
        by_hand = rules.apply(net, by_hand, layer)
    got = rules.run(net, state, NP, pin=False)
    np.testing.assert_allclose(got[0], by_hand[0], rtol=1e-15)
    np.testing.assert_allclose(got[3], by_hand[3], rtol=1e-15)


def test_pinned_diagonal_gives_theta_zero_exactly(rng):
    # Same-input tile: K(x, x) pinned to the variance, so the ReLU angle is exactly 0 and the result equals
    # the variance chain: K_ii halves at each ReLU, then w² multiplies (b = 0).
    x = rng.standard_normal((4, 3))
    k12 = x @ x.T / 3
    var = np.sum(x * x, 1) / 3
    net = FullyConnected(depth=3).network(3)
    out = rules.run(net, (k12, var[:, None], var[None, :], None), NP, pin=True)
    np.testing.assert_array_equal(np.diag(out[0]), out[1][:, 0])
    np.testing.assert_allclose(np.diag(out[0]), 2.0 * (2.0 * 0.5) ** 3 * var, rtol=1e-14)


def test_unknown_layer_kind_is_refused():
    net = FullyConnected(depth=0).network(2)
    with pytest.raises(ValueError, match="unknown layer kind 'pool'; valid: dense, conv, activation, readout"):
        rules.apply(net, None, rules.Layer("pool"))


# ----------------------------------------------------------------------------------------------- fused pairs
@pytest.fixture
def cuda_module(monkeypatch):
    """kernels.analytic._cuda imported with a NumPy stand-in for CuPy, its FC and variance kernels replaced by their
    NumPy references: what is left is the orchestration (diagonals, pins, fan-ins) that the pair replacement adds
    around the kernels, which must reproduce the reference chain exactly (the image kernels run on the host, with
    their orchestration, in tests/cuda_host)."""
    fake = types.ModuleType("cupy")
    fake.zeros_like, fake.reshape, fake.ascontiguousarray = np.zeros_like, np.reshape, np.ascontiguousarray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(sys.modules, "kernels.analytic._cuda", raising=False)
    module = importlib.import_module("kernels.analytic._cuda")

    def fc_block(activation, dense, k12, ntk, k11, k22):
        state = rules.activation_rule((k12.copy(), k11, k22, ntk.copy()), activation.dual)
        k12, _, _, ntk = rules.dense_rule(state, dense.w_std, dense.b_std, dense.parameterization, dense.fan_in,
                                          dense.trained)
        return k12, ntk

    monkeypatch.setattr(module, "fc_block", fc_block)
    # the variances after an activation: a third compiled kernel, replaced by its NumPy reference too
    monkeypatch.setattr(module, "activation_variance", lambda activation, v: rules.activation_variance(
        v, activation.dual))
    yield module
    sys.modules.pop("kernels.analytic._cuda", None)


def test_replacements_need_a_closed_form_and_zero_padding(cuda_module):
    tanh = FullyConnected(activation="tanh").network(3)
    applies, _ = cuda_module.replacements(tanh)[("activation", "dense")]
    assert not applies(tanh.layers[1], tanh.layers[2])          # quadrature duals run the reference rules
    relu = FullyConnected().network(3)
    assert cuda_module.replacements(relu)[("activation", "dense")][0](relu.layers[1], relu.layers[2])
    gap = Convolutional(readout="gap").network(1, 3, 3)
    table = cuda_module.replacements(gap)
    assert table[("conv", "activation")][0](gap.layers[0], gap.layers[1])
    assert table["conv"][0](gap.layers[0]) and table["readout"][0](gap.layers[-2])
    circular = rules.conv(2, 1.0, None, "ntk", 3, padding="CIRCULAR")
    assert not table["conv"][0](circular) and not table[("conv", "activation")][0](circular, gap.layers[1])
    assert not table["avg_pool"][0](rules.avg_pool((2, 2), (1, 1), "CIRCULAR"))
    assert table["avg_pool"][0](rules.avg_pool((2, 2), (2, 2), "SAME", "edges"))
    tanh_conv = Convolutional(activation="tanh").network(1, 3, 3)
    assert not table[("conv", "activation")][0](tanh_conv.layers[0], tanh_conv.layers[1])


@pytest.mark.parametrize("parameterization, b_std", [("ntk", 0.3), ("standard", None)])
@pytest.mark.parametrize("pin", [False, True])
def test_fc_pair_replacement_reproduces_the_reference_chain(cuda_module, rng, parameterization, b_std, pin):
    net = FullyConnected(3, "erf", 1.3, b_std, parameterization, width=16).network(3)
    a = rng.standard_normal((5, 3))
    b = a if pin else rng.standard_normal((4, 3))
    state = lambda: (a @ b.T / 3, (np.sum(a * a, 1) / 3)[:, None], (np.sum(b * b, 1) / 3)[None, :],  # noqa: E731
                     np.zeros((len(a), len(b))))
    want = rules.run(net, state(), NP, pin)
    got = rules.run(net, state(), NP, pin, cuda_module.replacements(net))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
