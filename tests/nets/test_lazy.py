"""nets.lazy: the centred α-scaled model and the exact linearization."""
import math

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from nets import CNN, MLP, Lazy, Linearized, TwoLayer


def _mlp(seed=0, activation="tanh"):
    torch.manual_seed(seed)
    return MLP(3, [16, 16], 2, activation=activation, b_std=0.5).double()


def _x(n=7, d=3, seed=1):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_lazy_output_is_exactly_zero_at_init():
    # model and model_at_init hold bitwise-equal parameters and run the same operations: the difference is 0.0.
    x = _x()
    for net in (_mlp(), TwoLayer(3, 10).double(), CNN(2, 4, 2, num_outputs=3).double()):
        inputs = x if not isinstance(net, CNN) else torch.randn(2, 2, 6, 6, dtype=torch.float64)
        assert torch.count_nonzero(Lazy(net, scale=7.0)(inputs)) == 0


def test_lazy_is_alpha_times_the_centred_model_and_trains_only_the_model():
    net, x = _mlp(), _x()
    lazy = Lazy(net, scale=3.0)
    f0 = net(x).detach()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    torch.testing.assert_close(lazy(x), 3.0 * (net(x) - f0), rtol=1e-14, atol=0)
    assert all(not p.requires_grad for p in lazy.model_at_init.parameters())
    lazy(x).sum().backward()
    assert all(p.grad is None for p in lazy.model_at_init.parameters())
    assert all(p.grad is not None for p in lazy.model.parameters())


def test_lazy_saves_no_activations_for_the_frozen_copy():
    # Tensors saved for backward by Lazy's forward = those of the trained network alone (+1 for nothing else):
    # the frozen forward runs under no_grad and the final α·(a − b) saves no tensor (multiplication by a
    # Python scalar, subtraction).
    net, x = _mlp(), _x()

    def saved(module):
        count = [0]

        def pack(t):
            count[0] += 1
            return t

        with saved_tensors_hooks(pack, lambda t: t):
            module(x)
        return count[0]

    assert saved(Lazy(net, 5.0)) == saved(net)


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf, True, "2"])
def test_lazy_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        Lazy(_mlp(), scale=scale)


def test_lazy_needs_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Lazy(lambda x: x, 1.0)


def _perturb(lin, direction, step):
    with torch.no_grad():
        for p, w0, v in zip(lin.params, lin.initial_parameters().values(), direction):
            p.copy_(w0 + step * v)


def test_linearized_equals_finite_difference_taylor_expansion():
    # h̄(w0 + v) = h(w0) + Dh(w0)v. Central differences (h(w0+εv) − h(w0−εv))/2ε have error ε²·|D³h|/6 ≈ 1e-10
    # at ε = 1e-5 plus rounding 1e-16/ε ≈ 1e-11 (float64): tolerance 1e-8.
    net, x = _mlp(), _x()
    lin = Linearized(net)
    gen = torch.Generator().manual_seed(2)
    direction = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in lin.params]
    eps = 1e-5

    def shifted(step):
        with torch.no_grad():
            moved = _mlp()
            for p, v in zip(moved.parameters(), direction):
                p.add_(step * v)
            return moved(x)

    taylor = net(x).detach() + (shifted(eps) - shifted(-eps)) / (2 * eps)
    _perturb(lin, direction, 1.0)
    torch.testing.assert_close(lin(x).detach(), taylor, rtol=0, atol=1e-8)


def test_linearized_is_affine_in_its_parameters():
    # h̄(w0 + s·v) is affine in s: h̄(w0 + 2v) − 2h̄(w0 + v) + h̄(w0) = 0 up to float64 rounding of O(1) values.
    net, x = _mlp(activation="relu"), _x()
    lin = Linearized(net)
    gen = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in lin.params]
    outputs = []
    for s in (0.0, 1.0, 2.0):
        _perturb(lin, direction, s)
        outputs.append(lin(x).detach())
    torch.testing.assert_close(outputs[0], net(x).detach(), rtol=0, atol=0)
    second_difference = outputs[2] - 2 * outputs[1] + outputs[0]
    assert second_difference.abs().max() < 1e-12 * outputs[2].abs().max()


def test_linearized_of_lazy_linearizes_only_the_trained_parameters():
    net, x = _mlp(), _x()
    lin = Linearized(Lazy(net, scale=10.0))
    assert lin.names == [f"model.{name}" for name, _ in net.named_parameters()]
    trainable = [p for p in lin.parameters() if p.requires_grad]
    assert [p.shape for p in trainable] == [p.shape for p in net.parameters()]
    assert all(a is b for a, b in zip(trainable, lin.params))
    assert torch.count_nonzero(lin(x)) == 0
    # A step along v changes the output by exactly α·J(w0)v (the frozen copy is a constant).
    gen = torch.Generator().manual_seed(4)
    direction = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in lin.params]
    _perturb(lin, direction, 1.0)
    _, jv = torch.func.jvp(lambda *ws: torch.func.functional_call(net, dict(zip(
        [n for n, _ in net.named_parameters()], ws)), (x,)), tuple(p.detach() for p in net.parameters()),
        tuple(direction))
    torch.testing.assert_close(lin(x).detach(), 10.0 * jv, rtol=1e-12, atol=1e-14)


def test_linearized_keeps_its_own_linearization_point_and_backpropagates():
    net, x = _mlp(), _x()
    lin = Linearized(net)
    before = lin(x).detach()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    torch.testing.assert_close(lin(x).detach(), before, rtol=0, atol=0)
    lin(x).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lin.params)


def test_linearized_bad_input():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Linearized("net")
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="requires grad"):
        Linearized(frozen)
