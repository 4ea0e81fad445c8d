"""nets.gates: the network with its gates frozen at init (the authors' "linearized" accuracy) and the per-layer
fraction of gates unchanged since init, against hand computations."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nets import VGG, FrozenGates, Lazy, Linearized, ResNet, unchanged_gates_per_layer


def _tiny():
    """conv → ReLU → 2×2 max-pool → linear: every kind of gate once."""
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 2 * 2, 2)).double()


@pytest.mark.parametrize("make", [lambda: VGG(11, width_factor=1 / 16, num_classes=3),
                                  lambda: ResNet(18, width_factor=1 / 16, num_classes=3)])
def test_frozen_gates_equal_the_network_at_init(make):
    """With the trained weights still at w₀, freezing the gates changes nothing: relu(z) = z·1[z > 0] and the
    max of a window is its entry at the argmax, exactly in floating point (torch.equal); centred (Lazy) it is 0."""
    torch.manual_seed(0)
    net = make()
    X = torch.randn(4, 3, 32, 32)
    lazy = Lazy(net, 7.0)
    with torch.no_grad():
        assert torch.equal(FrozenGates(net, initial=copy.deepcopy(net))(X), net(X))
        assert torch.equal(FrozenGates(lazy)(X), torch.zeros(4, 3))
        assert torch.equal(FrozenGates(lazy, pool="authors")(X), torch.zeros(4, 3))
    assert all(value == 1.0 for value in unchanged_gates_per_layer(lazy, X).values())


def test_frozen_gates_apply_the_initial_masks_and_argmax_to_the_trained_weights():
    """A trained copy (weights moved) evaluated with the initial net's gates, written out by hand:
    z = conv(x) with trained weights, gated by 1[z₀ > 0], pooled at argmax of relu(z₀) ('gather'), or
    relu of that entry where the initial window max was > 0 ('authors'), then the trained linear layer."""
    torch.manual_seed(1)
    initial = _tiny()
    trained = copy.deepcopy(initial)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    z0 = initial[0](x)
    z = trained[0](x) * (z0 > 0)
    pooled0, idx = F.max_pool2d(torch.relu(z0), 2, return_indices=True)
    picked = z.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
    authors = torch.where(pooled0 > 0, torch.relu(picked), 0.0)
    with torch.no_grad():
        for pool, pooled in (("gather", picked), ("authors", authors)):
            expected = trained[4](pooled.flatten(1))
            torch.testing.assert_close(FrozenGates(trained, initial=initial, pool=pool)(x), expected,
                                       rtol=1e-14, atol=1e-14)


def test_unchanged_gates_count_each_layer_as_defined():
    """Negating the conv (zero bias) flips the sign of every pre-activation: no ReLU gate is unchanged (random
    inputs hit z = 0 with probability 0). The max-pool layer: the fraction of windows whose initial argmax still
    attains the trained window max, counted by hand; the batches are pooled exactly (batch_size 2 of 5)."""
    torch.manual_seed(2)
    initial = _tiny()
    with torch.no_grad():
        initial[0].bias.zero_()
    trained = copy.deepcopy(initial)
    with torch.no_grad():
        trained[0].weight.neg_()
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    fractions = unchanged_gates_per_layer(trained, x, initial=initial, batch_size=2)
    assert list(fractions) == ["1", "2"] and fractions["1"] == 0.0
    r0, r = torch.relu(initial[0](x)), torch.relu(trained[0](x))
    _, idx = F.max_pool2d(r0, 2, return_indices=True)
    at_init_argmax = r.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
    expected = float((at_init_argmax == F.max_pool2d(r, 2)).double().mean())
    assert 0.0 < expected < 1.0 and fractions["2"] == pytest.approx(expected, abs=1e-15)


def test_vgg_gates_are_listed_input_to_output():
    """VGG-11: 8 ReLUs and 5 max-pools, in forward order (13 entries, the authors' list for the 5-pool VGG-11)."""
    net = VGG(11, width_factor=1 / 16, num_classes=2)
    names = list(unchanged_gates_per_layer(Lazy(net), torch.randn(2, 3, 32, 32)))
    kinds = [type(dict(net.named_modules())[n]).__name__ for n in names]
    assert kinds == ["ReLU", "MaxPool2d", "ReLU", "MaxPool2d", "ReLU", "ReLU", "MaxPool2d", "ReLU", "ReLU",
                     "MaxPool2d", "ReLU", "ReLU", "MaxPool2d"]


def test_gates_refuse_what_has_none():
    net = _tiny()
    with pytest.raises(TypeError, match="Taylor model"):
        FrozenGates(Linearized(Lazy(net)))
    with pytest.raises(TypeError, match="initial="):
        unchanged_gates_per_layer(net, torch.randn(1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="no torch.nn.ReLU"):
        FrozenGates(nn.Linear(2, 2), initial=nn.Linear(2, 2))(torch.randn(1, 2))
    with pytest.raises(ValueError, match="pool"):
        FrozenGates(Lazy(net), pool="max")
