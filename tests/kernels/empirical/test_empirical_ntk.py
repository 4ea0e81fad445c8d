"""kernels.empirical_ntk: every method against brute-force per-sample gradients (tests/kernels/empirical/cases.py),
against each other, blocked vs unblocked, eval mode, dtypes, the infinite-width limit, and bad input."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kernels import empirical  # noqa: E402
from kernels.empirical import empirical_ntk  # noqa: E402
from empirical_cases import assert_close, brute_force, case, inputs, make, mean_of, METHODS, MODELS  # noqa: E402


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_matches_brute_force(name, method):
    net, x1, x2, expected = case(name)
    assert_close(empirical_ntk(net, x1, x2, output="full", method=method), expected)
    assert_close(empirical_ntk(net, x1, x2, output="mean", method=method), mean_of(expected))


@pytest.mark.parametrize("method", METHODS)
def test_blocked_equals_unblocked_and_symmetric(method):
    net, shape = make("frozen")  # two outputs, a frozen layer and a bias-only layer
    x1, x2 = inputs(shape, 5, 3), inputs(shape, 4, 4)
    for output in ("mean", "full"):
        whole = empirical_ntk(net, x1, x2, output=output, method=method)
        assert_close(empirical_ntk(net, x1, x2, output=output, method=method, block_size=2), whole, 1e-13)
        same = empirical_ntk(net, x1, output=output, method=method)
        assert_close(empirical_ntk(net, x1, output=output, method=method, block_size=2), same, 1e-13)
        assert_close(same, empirical_ntk(net, x1, x1, output=output, method=method), 1e-13)
        swapped = same.T if output == "mean" else same.transpose(1, 0, 3, 2)
        np.testing.assert_array_equal(same, swapped)  # x2=None mirrors blocks: exactly symmetric


def test_auto_rule():
    """auto = jacobian when 3·F·O·(b1+b2) + 2·b1·b2·O·P <= 3·F·O·b2·(b1+b2), else ntvp (module docstring)."""
    from types import SimpleNamespace
    net = nn.Linear(1000, 1000)  # P ≈ 10⁶
    mlp_like = SimpleNamespace(fallback=["weight"], forward_flops=2e6, outputs=1)
    assert empirical._resolve_method("auto", net, mlp_like, 8, 8, "mean") == "jacobian"
    # forward FLOPs tiny next to P (an embedding-like layer): forming J costs more than n2 forward passes
    lookup_like = SimpleNamespace(fallback=["weight"], forward_flops=1e3, outputs=1)
    assert empirical._resolve_method("auto", net, lookup_like, 8, 8, "mean") == "ntvp"
    assert empirical._resolve_method("auto", net, SimpleNamespace(fallback=[]), 8, 8, "mean") == "structured"


def test_layer_called_twice_and_same_padding():
    """A module applied twice (weight sharing across calls) and a Conv2d with padding='same'."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding="same")
            self.fc = nn.Linear(2 * 5 * 5, 1)

        def forward(self, x):
            return self.fc(torch.tanh(self.conv(torch.tanh(self.conv(x)))).flatten(1)).squeeze(1)

    torch.manual_seed(0)
    net = Twice().double()
    x1, x2 = inputs((2, 5, 5), 3, 9), inputs((2, 5, 5), 2, 10)
    expected = brute_force(net, x1, x2)
    for method in METHODS:
        assert_close(empirical_ntk(net, x1, x2, output="full", method=method), expected)


def test_eval_mode_buffers_fixed_and_flags_restored():
    """BatchNorm: Θ is the eval-mode kernel (running statistics), running stats are not updated, and each
    submodule's training flag comes back as it was."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                        nn.Linear(27, 2)).double()
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    net.train()
    net[3].eval()
    stats = [b.clone() for b in net.buffers()]
    x1, x2 = inputs((2, 5, 5), 4, 11), inputs((2, 5, 5), 3, 12)
    expected = brute_force(net, x1, x2)  # computed in eval mode
    for method in METHODS:
        assert_close(empirical_ntk(net, x1, x2, output="full", method=method), expected)
    assert [m.training for m in net] == [True, True, True, False, True, True]
    for before, after in zip(stats, net.buffers()):
        assert torch.equal(before, after)


def test_output_types_dtypes_and_conversions():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))  # (N,) output: O = 1
    x = np.random.default_rng(0).standard_normal((4, 3))
    full = empirical_ntk(net, x, output="full")
    assert isinstance(full, np.ndarray) and full.dtype == np.float32 and full.shape == (4, 4, 1, 1)
    mean = empirical_ntk(net, torch.as_tensor(x, dtype=torch.float32))
    assert mean.shape == (4, 4)
    np.testing.assert_allclose(mean, full[:, :, 0, 0], rtol=1e-6)  # float32: same sums, reordered
    net64 = net.double()
    assert empirical_ntk(net64, x.astype(np.float32)).dtype == np.float64
    assert (np.linalg.eigvalsh(empirical_ntk(net64, x)) > -1e-12).all()  # a Gram matrix: PSD


def test_under_no_grad_and_inference_inputs():
    net, shape = make("mlp")
    x = inputs(shape, 3, 13)
    expected = empirical_ntk(net, x)
    with torch.no_grad():
        for method in METHODS:
            assert_close(empirical_ntk(net, x, method=method), expected)


def ntk_mlp(width, depth, d, w_std, b_std, seed):
    """MLP in the 'ntk' parameterization with W, b ~ N(0, 1): layer output = w_std/√fan_in·W x + b_std·b,
    written as b_std·Linear((w_std/(b_std·√fan_in))·x) so that ∂/∂W and ∂/∂b carry the right scales."""
    torch.manual_seed(seed)

    class Dense(nn.Module):
        def __init__(self, fan_in, fan_out):
            super().__init__()
            self.linear = nn.Linear(fan_in, fan_out)
            nn.init.normal_(self.linear.weight)
            nn.init.normal_(self.linear.bias)
            self.scale_in, self.scale_out = w_std / (b_std * math.sqrt(fan_in)), b_std

        def forward(self, x):
            return self.scale_out * self.linear(self.scale_in * x)

    layers, fan_in = [], d
    for _ in range(depth):
        layers += [Dense(fan_in, width), nn.ReLU()]
        fan_in = width
    return nn.Sequential(*layers, Dense(fan_in, 1)).double()


def test_wide_mlp_approaches_analytic_ntk():
    """Θ_emp = Θ_∞ + O(1/√width) at initialisation (Jacot et al. 2018; Hanin & Nica 2019). Measured on these
    8 inputs (depth 2, ReLU, 4 seeds): mean max-relative error 0.27 at width 128, 0.18 at 512, 0.08 at 2048,
    0.024 at 8192, i.e. ≈ c/√width with c ≈ 2–4. Tolerances: error(2048) < 0.15 (about twice c/√2048) and a
    drop by at least 2× from width 128 to 2048 (the 1/√n law predicts 4×); a wrong scale in any layer (e.g. a
    missing bias term, b_std² = 0.09 of a layer's kernel) leaves a bias that does not shrink with width."""
    from kernels import FullyConnected
    d, depth, w_std, b_std = 6, 2, math.sqrt(2.0), 0.3
    x = np.random.default_rng(1).standard_normal((8, d))
    analytic = np.asarray(FullyConnected(depth=depth, activation="relu", w_std=w_std, b_std=b_std,
                                         parameterization="ntk").ntk(x))

    def error(width, seeds):
        errs = [np.abs(empirical_ntk(ntk_mlp(width, depth, d, w_std, b_std, s), x) - analytic).max()
                / np.abs(analytic).max() for s in seeds]
        return float(np.mean(errs))

    wide, narrow = error(2048, range(3)), error(128, range(3))
    assert wide < 0.15, (wide, narrow)
    assert wide < narrow / 2, (wide, narrow)


def test_bad_input():
    net, shape = make("mlp")
    x = inputs(shape, 3, 14)
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        empirical_ntk(net, torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="same trailing shape"):
        empirical_ntk(net, x, torch.randn(2, 6, dtype=torch.float64))
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x2 contains NaN"):
        empirical_ntk(net, x, bad)
    with pytest.raises(ValueError, match="x1 is on device meta"):
        empirical_ntk(net, torch.empty(3, 5, device="meta"))
    with pytest.raises(ValueError, match="unknown method 'exact'; valid: auto, jacobian, ntvp, structured"):
        empirical_ntk(net, x, method="exact")
    with pytest.raises(ValueError, match="unknown output 'trace'; valid: mean, full"):
        empirical_ntk(net, x, output="trace")
    with pytest.raises(ValueError, match="block_size"):
        empirical_ntk(net, x, block_size=0)
    with pytest.raises(TypeError, match="x1 must have a real floating dtype"):
        empirical_ntk(net, torch.ones(3, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match="x1 must be a torch tensor or a NumPy/CuPy array"):
        empirical_ntk(net, [[1.0] * 5])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        empirical_ntk(lambda x: x, x)
    with pytest.raises(ValueError, match=r"\(N, O\) or \(N,\); inputs of shape \(2, 5\) gave \(2, 7, 1\)"):
        empirical_ntk(nn.Sequential(nn.Linear(5, 7), nn.Unflatten(1, (7, 1))).double(), x)
    with pytest.raises(ValueError, match=r"gave tuple"):
        empirical_ntk(nn.Sequential(nn.Linear(5, 7), nn.LSTM(7, 2)).double(), x)
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(net, x)
