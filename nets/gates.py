"""The gates of a ReLU network — ReLU on/off signs and max-pool selections — frozen at initialisation, and how
many of them training changed (Chizat, Oyallon & Bach, NeurIPS 2019, §3, CIFAR-10 CNNs).

For a fixed input, a network of convolutions, linear layers, ReLUs and max-pools is linear in its input once each
ReLU's sign pattern and each max-pool's argmax are fixed. The authors' code (lazy-training-CNN, cnn/train.py,
`lazy_net` and `net_activation`) uses this twice:

- `FrozenGates`: the *trained* weights evaluated with every gate frozen at its value at initialisation for the
  same input, z ← z ⊙ 1[z₀ > 0] at each ReLU and z ← z[argmax z₀] at each max-pool (z₀: the initial network's
  input to that layer). The authors call the accuracy of this model "lazy"/"linearized"; it is not the
  first-order Taylor model of `nets.Linearized` (it is multilinear, not linear, in the weights). Their max-pool
  keeps a ReLU: it returns relu(z[argmax z₀]) where the initial window max was > 0 and 0 elsewhere
  (`pool="authors"`); `pool="gather"` (the default) returns z[argmax z₀], the exactly gated network.
- `unchanged_gates_per_layer`: per gated layer (input to output), the fraction of ReLU signs that are the same
  now as at initialisation, and of max-pool windows whose initial argmax still attains the window's maximum
  (ties count as unchanged). The authors' max-pool test is maxpool(r) == maxpool(r ⊙ m₀) with m₀ the mark of the
  initial argmax where the initial max was > 0; the two agree except on windows that were all zero at
  initialisation. Their ResNet list keeps only each block's output ReLU; this one has every nn.ReLU.

Gates are seen through `torch.nn.ReLU` and `torch.nn.MaxPool2d` modules (functional calls are invisible).
"""
import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from kernels import check_choice, check_scalar

from nets.lazy import Lazy, Linearized

GATE_MODULES = (nn.ReLU, nn.MaxPool2d)
POOLS = ("gather", "authors")


def _pool_indices(module, z):
    """(argmax indices into H·W, pooled output) of the max-pool `module` on z."""
    out, idx = F.max_pool2d(z, module.kernel_size, module.stride, module.padding, module.dilation,
                            ceil_mode=module.ceil_mode, return_indices=True)
    return idx, out


def _gather(z, idx):
    """z (N, C, H, W) at the pooled positions `idx` (N, C, h, w), flat indices into H·W."""
    return z.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)


@contextlib.contextmanager
def _hooks(network, hook):
    """`hook(name, module, input, output)` on every gate module of `network` for the block."""
    names = {m: name or type(m).__name__ for name, m in network.named_modules()}
    handles = [m.register_forward_hook(lambda m, i, o: hook(names[m], m, i[0], o))
               for m in network.modules() if isinstance(m, GATE_MODULES)]
    if not handles:
        raise ValueError("the network has no torch.nn.ReLU or torch.nn.MaxPool2d module: it has no gates")
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def record_gates(network, X):
    """[(name, gate), ...] in call order for one forward pass of `network` on X (no grad): a ReLU's gate is
    1[input > 0]; a max-pool's is (argmax indices, 1[window max > 0])."""
    gates = []

    def hook(name, module, z, out):
        if isinstance(module, nn.ReLU):
            gates.append((name, z > 0))
        else:
            idx, pooled = _pool_indices(module, z)
            gates.append((name, (idx, pooled > 0)))

    with torch.no_grad(), _hooks(network, hook):
        network(X)
    return gates


def _pair(module, initial):
    """(trained network, network at init, α or None) for a Lazy module or a network with its initial copy."""
    if isinstance(module, Linearized):
        raise TypeError("a Linearized module is the Taylor model: it has no gates of its own; pass the Lazy or "
                        "plain network it linearizes")
    if isinstance(module, Lazy):
        return module.model, module.model_at_init, module.scale
    if not isinstance(module, nn.Module) or not isinstance(initial, nn.Module):
        raise TypeError("pass a Lazy module, or a network together with initial= a copy of it at initialisation "
                        f"(torch.nn.Module), got {type(module).__name__} and {type(initial).__name__}")
    return module, initial, None


class FrozenGates(nn.Module):
    """The trained network with its ReLU signs and max-pool selections frozen at their initial values (module
    docstring): forward(x) runs the initial network on x to read its gates, then the trained one with them.

    For a `Lazy` module the output is α·(gated(x) − model_at_init(x)), as the authors centre it
    (FC1(lazy_net(x)) − FC2(net₀(x))); otherwise give `initial=`, the network at initialisation.
    At initialisation (trained = initial weights) it equals the network exactly. `pool`: 'gather' or 'authors'.
    """

    def __init__(self, module, initial=None, pool="gather"):
        super().__init__()
        self.network, self.initial, self.scale = _pair(module, initial)
        self.pool = check_choice(pool, "pool", POOLS)

    def gated(self, x):
        """The trained network on x with the initial gates for this x."""
        gates = iter(record_gates(self.initial, x))

        def hook(name, module, z, out):
            _, gate = next(gates)
            if isinstance(module, nn.ReLU):
                return z * gate.to(z.dtype)
            idx, positive = gate
            picked = _gather(z, idx)
            return torch.where(positive, torch.relu(picked), 0.0) if self.pool == "authors" else picked

        with _hooks(self.network, hook):
            return self.network(x)

    def forward(self, x):
        out = self.gated(x)
        if self.scale is None:
            return out
        with torch.no_grad():
            start = self.initial(x)
        return self.scale * (out - start)


def unchanged_gates_per_layer(module, X, initial=None, batch_size=500):
    """{layer name: fraction of its gates unchanged since initialisation on the inputs X}, in forward order
    (input to output; module docstring for the ReLU and max-pool tests). `module`: a `Lazy` module, or a
    network with `initial=`. Counts are summed over batches of `batch_size` inputs, then divided by the total."""
    network, init, _ = _pair(module, initial)
    batch_size = check_scalar(batch_size, "batch_size", int, min_val=1)
    if not isinstance(X, torch.Tensor) or X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty tensor of inputs, got {type(X).__name__}")
    same, total = {}, {}
    for start in range(0, X.shape[0], batch_size):
        xb = X[start:start + batch_size]
        before = record_gates(init, xb)
        now = []

        def hook(name, module, z, out):
            now.append((name, module, z, out))

        with torch.no_grad(), _hooks(network, hook):
            network(xb)
        for (name, gate), (_, layer, z, out) in zip(before, now, strict=True):
            if isinstance(layer, nn.ReLU):
                count, size = int(((z > 0) == gate).sum()), gate.numel()
            else:
                count, size = int((_gather(z, gate[0]) == out).sum()), out.numel()
            same[name] = same.get(name, 0) + count     # a module called twice pools its calls
            total[name] = total.get(name, 0) + size
    return {name: same[name] / total[name] for name in same}
