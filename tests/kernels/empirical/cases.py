"""Shared cases for the empirical-NTK tests: small torch models, seeded inputs and the brute-force reference.

Reference: Θ(x, x')_{oo'} = Σ_w ∂f_o(x)/∂w · ∂f_{o'}(x')/∂w with the gradients taken one sample and one output
at a time by plain autograd and flattened (``brute_force``). In float64 every method only reorders sums of
O(10²) products of O(1) numbers (rounding ~1e-15 relative), so 1e-10 relative (≈ 5·10⁵ ulp) leaves room
for reordering while any missing layer, bias or cross term (≥ 1e-3 of the kernel here) would fail it.

This folder's conftest.py registers it as the module ``empirical_cases``.
"""
import numpy as np
import torch
from torch import nn

METHODS = ["jacobian", "ntvp", "structured", "auto"]
RTOL = 1e-10


def brute_force(model, x1, x2):
    """(n1, n2, O, O) Θ from per-sample, per-output autograd gradients over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x):
        rows = []
        for xi in x:
            out = model(xi[None]).reshape(-1)
            per_output = []
            for o in range(out.numel()):
                grads = torch.autograd.grad(out[o], params, retain_graph=True, allow_unused=True)
                per_output.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                             for g, p in zip(grads, params)]))
            rows.append(torch.stack(per_output))
        return torch.stack(rows)

    flags = [m.training for m in model.modules()]
    model.eval()
    try:
        theta = torch.einsum("aof,bpf->abop", jacobian(x1), jacobian(x2))
    finally:
        for m, flag in zip(model.modules(), flags):
            m.training = flag
    return theta.detach().numpy()


def mean_of(full):
    return np.einsum("abii->ab", full) / full.shape[2]


def assert_close(actual, expected, rtol=RTOL):
    """Max-norm relative error (entries near zero are judged against the kernel's scale)."""
    scale = np.abs(expected).max()
    assert scale > 0
    err = np.abs(np.asarray(actual) - expected).max() / scale
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


# ----------------------------------------------------------------------------------------------- models
class Residual(nn.Module):
    """conv → ReLU(inplace) → conv, plus the input (in place), ReLU, flatten, dense readout."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, 2)

    def forward(self, x):
        h = self.conv2(self.relu(self.conv1(x)))
        h += x
        return self.fc(torch.relu(h).flatten(1))


def mlp():
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 1)), (5,)


def cnn():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU(inplace=True),
                        nn.Conv2d(3, 4, 2, padding=2, dilation=2), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
    return net, (2, 7, 7)


def residual():
    return Residual(), (3, 6, 6)


def frozen():
    net = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    net[0].requires_grad_(False)    # a whole layer frozen
    net[2].weight.requires_grad_(False)  # weight frozen, bias trainable
    return net, (4,)


def multi_output():
    """Sequence model: a dense layer applied at 3 positions (N, 3, 4), LayerNorm (not a supported layer, so its
    parameters take the per-layer Jacobian fallback), 4 outputs."""
    net = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.GELU(), nn.Flatten(), nn.Linear(15, 4))
    return net, (3, 4)


MODELS = {"mlp": mlp, "cnn": cnn, "residual": residual, "frozen": frozen, "multi_output": multi_output}


def make(name, seed=0):
    torch.manual_seed(seed)
    net, shape = MODELS[name]()
    return net.double(), shape


def inputs(shape, n, seed):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


_EXPECTED = {}


def case(name):
    """A fresh copy of model ``name``, inputs x1 (4 samples) and x2 (3), and its brute-force Θ (computed once)."""
    net, shape = make(name)
    x1, x2 = inputs(shape, 4, 1), inputs(shape, 3, 2)
    if name not in _EXPECTED:
        _EXPECTED[name] = brute_force(net, x1, x2)
    return net, x1, x2, _EXPECTED[name]
