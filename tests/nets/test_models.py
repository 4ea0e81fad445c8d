"""nets.models: the paper's two-layer model, NTK-parameterized MLP/CNN against the analytic kernels, VGG, ResNet."""

import numpy as np
import pytest
import torch
from torch import nn

from nets import CNN, MLP, ResNet, TwoLayer, VGG
from nets.models import Conv, Dense


def test_two_layer_forward_is_the_papers_formula():
    # h(w)(x) = (1/m) Σ_j b_j relu(a_j·x + c_j), written out unit by unit in NumPy.
    torch.manual_seed(0)
    net = TwoLayer(4, 6, bias=True, init_scale=2.0).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    a, b, c = (p.detach().numpy() for p in (net.a, net.b, net.c))
    expected = [sum(b[j] * max(a[j] @ xi + c[j], 0.0) for j in range(6)) / 6 for xi in x.numpy()]
    np.testing.assert_allclose(net(x).detach().numpy()[:, 0], expected, rtol=1e-13)


def test_two_layer_symmetric_init_gives_zero_output():
    # Units j and j + m/2 share a_j, c_j and carry b_j and −b_j, so the two halves of the sum cancel: the
    # output is 0 up to rounding of a sum of m terms of size ~ τ²·|x|/m ≈ 1 (float64 eps 2.2e-16): < 1e-13.
    torch.manual_seed(1)
    net = TwoLayer(3, 50, bias=True, symmetric=True, init_scale=3.0).double()
    torch.testing.assert_close(net.a[:25], net.a[25:], rtol=0, atol=0)
    torch.testing.assert_close(net.b[:25], -net.b[25:], rtol=0, atol=0)
    out = net(torch.randn(20, 3, dtype=torch.float64))
    assert out.abs().max() < 1e-13


def test_two_layer_init_follows_the_paper():
    # Input weights uniform on the sphere of radius τ (with a bias: (a_j, c_j) on the sphere in ℝ^{d+1}),
    # output weights +τ on the first half of the units and −τ on the second. Directions are uniform: the mean
    # of 4000 unit vectors in ℝ^4 has norm ≈ sqrt(1/4000) = 0.016 (Monte Carlo), we allow 0.06.
    torch.manual_seed(2)
    tau = 3.0
    net = TwoLayer(4, 4000, init_scale=tau).double()       # drawn in float32: norms exact to ~4 float32 eps
    torch.testing.assert_close(net.a.norm(dim=1), torch.full((4000,), tau, dtype=torch.float64), rtol=5e-7, atol=0)
    assert float((net.a / tau).mean(0).norm()) < 0.06
    assert torch.equal(net.b, torch.cat([torch.full((2000,), tau), torch.full((2000,), -tau)]).double())
    biased = TwoLayer(3, 7, bias=True, init_scale=tau)
    torch.testing.assert_close(torch.cat([biased.a, biased.c[:, None]], 1).norm(dim=1), torch.full((7,), tau))
    assert (biased.b > 0).sum() == 4


def _arccos_nngp(x, w_std):
    """One hidden ReLU layer, ntk parameterization, no bias: K⁰ = x·x'/d, pre-activations ~ N(0, w²K⁰),
    E[relu(u)relu(u')] = (s + (π − θ)k12)/2π, readout multiplies by w² (docs/conventions.md, *Dual activations*)."""
    k = w_std ** 2 * (x @ x.T) / x.shape[1]
    diag = np.sqrt(np.diag(k))
    cos = np.clip(k / np.outer(diag, diag), -1, 1)
    theta = np.arccos(cos)
    s = np.outer(diag, diag) * np.sin(theta)
    return w_std ** 2 * (s + (np.pi - theta) * k) / (2 * np.pi)


def test_mlp_ntk_forward_covariance_matches_nngp():
    # For one hidden layer the NNGP is exact at any width: given the hidden layer, the readout outputs are
    # i.i.d. N(0, (w²/n) Σ_i relu(u_i)relu(u_i')), whose mean over the hidden weights is the arc-cosine
    # formula. 20 networks × 512 readout outputs = 10240 samples of f(x)f(x'): standard error ≈ sqrt(2/10240)
    # = 1.4% of K(x,x), plus the hidden layer's fluctuation (1/sqrt(20·2048) ≈ 0.5%); tolerance 6% of the diagonal.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6))
    torch.manual_seed(3)
    xt = torch.as_tensor(x)
    outs = []
    with torch.no_grad():
        for _ in range(20):
            net = MLP(6, [2048], 512, parameterization="ntk").double()
            outs.append(net(xt).numpy())
    f = np.concatenate(outs, axis=1)            # (3 inputs, 10240 samples)
    empirical = f @ f.T / f.shape[1]
    expected = _arccos_nngp(x, 2 ** 0.5)
    # The diagonal equals 2|x|²/d exactly: E relu(u)² = E u²/2 for symmetric u.
    np.testing.assert_allclose(np.diag(expected), 2 * (x ** 2).sum(1) / 6, rtol=1e-12)
    np.testing.assert_allclose(empirical, expected, atol=0.06 * np.diag(expected).max())
    from kernels import FullyConnected
    np.testing.assert_allclose(np.asarray(FullyConnected(depth=1).nngp(x)), expected, rtol=1e-10)


def test_mlp_standard_parameterization_has_the_same_output_scale():
    # Same output distribution as 'ntk' at init; the diagonal 2|x|²/d is exact in expectation at any width
    # (see above); 200 nets × 64 outputs → standard error sqrt(2/12800) = 1.25%, tolerance 6%.
    x = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(4)
    with torch.no_grad():
        f = torch.cat([MLP(5, [64, 64], 64, parameterization="standard").double()(x) for _ in range(200)], dim=1)
    expected = 2 * (x ** 2).sum(1) / 5
    np.testing.assert_allclose((f ** 2).mean(1).numpy(), expected.numpy(), rtol=0.06)


def test_mlp_empirical_ntk_converges_to_analytic():
    # Depth 2, width 1024: the empirical NTK fluctuates around the analytic one by O(1/sqrt(width)) ≈ 3%
    # (Jacot et al. 2018); averaging 3 networks, we allow 10% of the largest entry.
    from kernels import FullyConnected, empirical_ntk
    x = np.random.default_rng(1).standard_normal((4, 5))
    torch.manual_seed(5)
    thetas = [empirical_ntk(MLP(5, [1024, 1024], 1, b_std=0.1).double(), x) for _ in range(3)]
    expected = np.asarray(FullyConnected(depth=2, b_std=0.1).ntk(x))
    np.testing.assert_allclose(np.mean(thetas, axis=0), expected, atol=0.1 * np.abs(expected).max())


@pytest.mark.parametrize("layer", [
    lambda: Dense(6, 4, 2 ** 0.5, 0.3, "ntk"), lambda: Dense(6, 4, 1.5, None, "ntk"),
    lambda: Dense(6, 4, 2 ** 0.5, 0.3, "standard"), lambda: Conv(2, 3, 3, 1.2, 0.4), lambda: Conv(2, 3, 5, 1.2, None)])
def test_layers_keep_their_structured_ntk_promise(layer):
    # kernels.empirical_ntk trusts structured_ntk(): forward(x) must equal the declared plain map with the
    # scaled weight and bias. Same operations up to where the scalar multiplies: float64 rounding, 1e-13.
    from torch.nn import functional as F
    torch.manual_seed(7)
    layer = layer().double()
    kind, ws, bs, *conv = layer.structured_ntk()
    bias = None if layer.bias is None else bs * layer.bias
    if kind == "linear":
        x = torch.randn(3, 6, dtype=torch.float64)
        declared = F.linear(x, ws * layer.weight, bias)
    else:
        assert kind == "conv2d"
        x = torch.randn(3, 2, 6, 5, dtype=torch.float64)
        declared = F.conv2d(x, ws * layer.weight, bias, *conv)
        assert declared.shape[2:] == x.shape[2:]  # SAME padding
    torch.testing.assert_close(layer(x), declared, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("readout", ["gap", "flatten"])
def test_cnn_forward_covariance_matches_convolutional_nngp(readout):
    # One conv layer: as for the MLP, the NNGP is exact in expectation at any channel count. 30 networks ×
    # 256 outputs = 7680 samples: standard error ≈ 1.6% of the diagonal; tolerance 8% of the largest entry.
    from kernels import Convolutional
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 5))
    torch.manual_seed(6)
    with torch.no_grad():
        f = np.concatenate([CNN(2, 128, 1, num_outputs=256, readout=readout, image_size=(5, 5)).double()(
            torch.as_tensor(x)).numpy() for _ in range(30)], axis=1)
    expected = np.asarray(Convolutional(depth=1, readout=readout).nngp(x))
    np.testing.assert_allclose(f @ f.T / f.shape[1], expected, atol=0.08 * np.abs(expected).max())


def test_cifar_networks_shapes_and_options():
    x = torch.randn(2, 3, 32, 32)
    assert VGG(11, width_factor=0.25)(x).shape == (2, 10)
    assert ResNet(18, width_factor=0.25, num_classes=7)(x).shape == (2, 7)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in VGG(11, 0.25).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in ResNet(18, 0.25, batch_norm=True).modules())
    # width_factor multiplies every channel count: VGG-11 ends with 512·k channels, ResNet-18 with 512·k.
    assert VGG(11, width_factor=0.5).classifier.in_features == 256
    assert ResNet(18, width_factor=2).classifier.in_features == 1024
    convs = [m for m in ResNet(18, 0.25).modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # 1 stem + 8 blocks × 2: with the linear layer, the 18 weight layers of ResNet-18


@pytest.mark.parametrize("make, message", [
    (lambda: TwoLayer(3, 5, symmetric=True), "m must be even"),
    (lambda: TwoLayer(3, 4, init_scale=0.0), "init_scale"),
    (lambda: TwoLayer(3, 4, init_scale=float("nan")), "init_scale"),
    (lambda: TwoLayer(3, 4, activation="rellu"), "unknown activation 'rellu'; valid: relu, erf, tanh, softplus"),
    (lambda: MLP(3, [], 1), "widths"),
    (lambda: MLP(3, [4, 0], 1), "widths"),
    (lambda: MLP(3, [4], 1, parameterization="mup"), "parameterization"),
    (lambda: MLP(3, [4], 1, w_std=-1.0), "w_std"),
    (lambda: CNN(3, readout="pool"), "readout"),
    (lambda: CNN(3, readout="flatten"), "image_size"),
    (lambda: CNN(3, filter_size=2), "odd"),
    (lambda: VGG(12), "11, 13, 16, 19"),
    (lambda: ResNet(50), "18, 34"),
    (lambda: ResNet(18, width_factor=0), "width_factor"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
