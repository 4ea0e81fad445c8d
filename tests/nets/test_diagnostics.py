"""nets.diagnostics: weight change, NTK drift, activation patterns, lazy–linearized distances, scale criterion."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

from nets import MLP, Lazy, Linearized, TwoLayer, train
from nets.diagnostics import (function_distance, ntk_drift, parameter_distance, relative_weight_change,
                              scale_criterion, unchanged_activation_fraction)


def _x(n=6, d=3, seed=0):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _mlp(seed=0, d_out=1, activation="tanh", width=8):
    torch.manual_seed(seed)
    return MLP(3, [width], d_out, activation=activation, b_std=0.3).double()


def test_relative_weight_change_by_hand():
    # Add c to every parameter: ‖w − w0‖ = c·sqrt(p), so the ratio is c·sqrt(p)/‖w0‖.
    net = _mlp()
    lazy = Lazy(net, 5.0)
    norm0 = math.sqrt(sum(float((p ** 2).sum()) for p in net.parameters()))
    count = sum(p.numel() for p in net.parameters())
    assert relative_weight_change(lazy) == 0.0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    assert relative_weight_change(lazy) == pytest.approx(0.01 * math.sqrt(count) / norm0, rel=1e-10)
    initial = copy.deepcopy(lazy.model_at_init)
    assert relative_weight_change(net, initial=initial) == pytest.approx(relative_weight_change(lazy), rel=1e-15)
    lin = Linearized(_mlp())
    with torch.no_grad():
        for p in lin.params:
            p.add_(0.01)
    assert relative_weight_change(lin) == pytest.approx(0.01 * math.sqrt(count) / norm0, rel=1e-10)


def test_ntk_drift_is_zero_at_init_and_shrinks_like_one_over_alpha():
    # Θ(w) − Θ(w0) is first order in w − w0 = O(1/α): going from α = 10 to α = 100 divides the drift by 10
    # (up to the second-order term, relative size O(1/α) = 10%): ratio within [8, 12].
    X, y, probe = _x(), torch.sin(_x()[:, 0]), _x(4, seed=1)
    drifts = {}
    for alpha in (10.0, 100.0):
        lazy = Lazy(_mlp(width=32), alpha)
        if alpha == 10.0:
            assert ntk_drift(lazy, probe) == 0.0
        train(lazy, X, y, lr=0.5, steps=30, quiet=True)
        drifts[alpha] = ntk_drift(lazy, probe)
    assert 8.0 < drifts[10.0] / drifts[100.0] < 12.0


def test_unchanged_activation_fraction_counts_flipped_units():
    # TwoLayer without bias: unit j is on at x iff a_j·x > 0; negating a_j flips it at every x (a_j·x ≠ 0 almost
    # surely). Negating 3 of 10 units leaves exactly 7/10 of the (unit, input) pairs unchanged.
    torch.manual_seed(0)
    net = TwoLayer(3, 10).double()
    lazy = Lazy(net, 1.0)
    X = _x(20)
    assert unchanged_activation_fraction(lazy, X) == 1.0
    with torch.no_grad():
        net.a[:3].neg_()
    assert unchanged_activation_fraction(lazy, X) == pytest.approx(0.7, abs=1e-15)
    with pytest.raises(ValueError, match="no torch.nn.ReLU"):
        unchanged_activation_fraction(Lazy(_mlp(activation="tanh"), 1.0), X)
    with pytest.raises(TypeError, match="initial="):
        unchanged_activation_fraction(net, X)


def test_distances_between_lazy_and_linearized():
    net = _mlp()
    lazy, lin = Lazy(net, 3.0), Linearized(Lazy(net, 3.0))
    X = _x()
    assert parameter_distance(lazy, lin) == 0.0 and function_distance(lazy, lin, X) == 0.0
    with torch.no_grad():
        lin.params[0].add_(0.5)          # first-layer weights, shape (8, 3): ‖Δw‖ = 0.5·sqrt(24)
    assert parameter_distance(lazy, lin) == pytest.approx(0.5 * math.sqrt(24), rel=1e-14)
    diff = (lazy(X) - lin(X)).detach()
    assert function_distance(lazy, lin, X) == pytest.approx(math.sqrt(float((diff ** 2).sum()) / 6), rel=1e-14)
    with pytest.raises(TypeError, match="Linearized"):
        parameter_distance(lazy, lazy)


def _flat(module):
    params = {k: p.detach() for k, p in module.named_parameters()}
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def unflatten(w):
        return dict(zip(names, [t.view(s) for t, s in zip(w.split(sizes), shapes)]))

    return torch.cat([p.flatten() for p in params.values()]), unflatten


def test_scale_criterion_norms_against_dense_derivatives():
    # One input, one output: F = ℝ, so ‖Dh‖ = ‖∇h‖ and ‖D²h‖ = the largest |eigenvalue| of the dense Hessian.
    # Power iteration error decays like r^(2k) in the value, r = ratio of the top two |eigenvalues| (0.74 for
    # this 41-parameter model, asserted below): 60 iterations → 0.74^120 ≈ 2e-16; tolerance 1e-9.
    net, x, y = _mlp(), _x(1), torch.tensor([0.7], dtype=torch.float64)
    w0, unflatten = _flat(net)
    h = lambda w: functional_call(net, unflatten(w), (x,)).sum()  # noqa: E731
    magnitudes = torch.linalg.eigvalsh(hessian(h)(w0)).abs().sort(descending=True).values
    assert magnitudes[1] / magnitudes[0] < 0.75
    gradient = torch.func.grad(h)(w0)
    result = scale_criterion(net, x, y, iters=60)
    assert result.hessian_norm == pytest.approx(float(magnitudes[0]), rel=1e-9)
    assert result.jacobian_norm == pytest.approx(float(gradient.norm()), rel=1e-10)
    residual = abs(float(net(x)) - 0.7)
    assert result.kappa == pytest.approx(residual * result.hessian_norm / result.jacobian_norm ** 2, rel=1e-12)
    # Several inputs and outputs: ‖Dh‖ is the top singular value of the (n·O × p) Jacobian divided by sqrt(n).
    net2, X = _mlp(d_out=2), _x(7)
    w2, unflatten2 = _flat(net2)
    jac = jacrev(lambda w: functional_call(net2, unflatten2(w), (X,)))(w2).reshape(14, -1)
    singular = torch.linalg.svdvals(jac)
    assert singular[1] / singular[0] < 0.75          # so 60 iterations reach 0.75^120 ≈ 1e-15
    assert scale_criterion(net2, X, torch.zeros(7, 2), iters=60).jacobian_norm == pytest.approx(
        float(singular[0]) / math.sqrt(7), rel=1e-9)


def test_scale_criterion_is_inversely_proportional_to_alpha():
    # h_α(w0) = 0, Dh_α = αDh, D²h_α = αD²h: κ_α = ‖y‖·α‖D²h‖/(α‖Dh‖)² = κ_1/α. The power iterations see the
    # same normalised vectors for every α, so the ratio holds to rounding.
    X, y = _x(5), torch.cos(_x(5)[:, 1])
    k1 = scale_criterion(Lazy(_mlp(), 1.0), X, y)
    k100 = scale_criterion(Lazy(_mlp(), 100.0), X, y)
    assert k1.residual_norm == pytest.approx(math.sqrt(float((y ** 2).mean())), rel=1e-14)
    assert k100.kappa == pytest.approx(k1.kappa / 100, rel=1e-9)
    assert k100.lazy and "LAZY" in str(k100)


def test_scale_criterion_of_affine_models_is_zero():
    # D²h = 0 for a linear model and for a Linearized one: κ = 0, the lazy regime exactly.
    X, y = _x(5), torch.ones(5, dtype=torch.float64)
    for module in (nn.Linear(3, 1).double(), Linearized(_mlp())):
        result = scale_criterion(module, X, y)
        assert result.hessian_norm == 0.0 and result.kappa == 0.0 and result.lazy


def test_scale_criterion_bad_input():
    net, X = _mlp(), _x(5)
    with pytest.raises(ValueError, match="iters"):
        scale_criterion(net, X, torch.zeros(5), iters=0)
    with pytest.raises(ValueError, match="same number of samples"):
        scale_criterion(net, X, torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        scale_criterion(net, X, torch.full((5,), math.nan))
    with pytest.raises(ValueError, match="output shape"):
        scale_criterion(net, X, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="threshold"):
        scale_criterion(net, X, torch.zeros(5), threshold=-1)
    with pytest.raises(ValueError, match="`seed` must be an integer ≥ 0, got True"):
        scale_criterion(net, X, torch.zeros(5), seed=True)
