"""Empirical NTK: every method against brute-force per-sample gradients, against each other, blocked vs
unblocked, the infinite-width limit, and bad input.

Reference: Θ(x, x')_{oo'} = Σ_w ∂f_o(x)/∂w · ∂f_{o'}(x')/∂w with the gradients taken one sample and one output
at a time by plain autograd and flattened (``brute_force``). In float64 every method only reorders sums of
O(10²) products of O(1) numbers (rounding ~1e-15 relative), so 1e-10 relative (≈ 5·10⁵ ulp) leaves room
for reordering while any missing layer, bias or cross term (≥ 1e-3 of the kernel here) would fail it.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kernels import empirical  # noqa: E402
from kernels.empirical import empirical_ntk  # noqa: E402

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


# ----------------------------------------------------------------------------------------------- exactness
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


@pytest.mark.parametrize("order", ["gram", "jacobian"])
def test_both_contraction_orders_of_structured(monkeypatch, order):
    """"structured" picks per layer between the position-Gram and the per-sample-gradient contraction; force
    each one (and tiny patch chunks, so the chunked and uncached patch paths run) against brute force."""
    monkeypatch.setattr(empirical, "_order", lambda *args: order)
    monkeypatch.setattr(empirical, "_CHUNK_ELEMENTS", 50)
    for name in ("cnn", "residual", "multi_output"):
        net, x1, x2, expected = case(name)
        assert_close(empirical_ntk(net, x1, x2, output="full", method="structured"), expected)


def test_structured_handles_shared_and_outside_uses_of_weights():
    """Tied weights (one Parameter in two Linear layers) and a layer weight also used outside its module
    (F.linear in forward) cannot be split per call; "structured" must detect both and stay exact."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.b.weight = self.a.weight

        def forward(self, x):
            h = torch.tanh(self.b(torch.tanh(self.a(x))))
            return self.c(h) + nn.functional.linear(h, self.c.weight)

    torch.manual_seed(0)
    net = Tied().double()
    x1, x2 = inputs((4,), 3, 7), inputs((4,), 2, 8)
    assert_close(empirical_ntk(net, x1, x2, output="full", method="structured"), brute_force(net, x1, x2))
    plan = empirical._probe(net, x1, [name for name, _ in net.named_parameters()])
    assert sorted(plan.fallback) == ["a.weight", "c.weight"]  # shared / used outside: per-layer Jacobian
    assert len(plan.sites) == 3  # a (bias only), b (bias only), c (bias only) stay structured


@pytest.mark.parametrize("name,fallback", [("mlp", []), ("cnn", []), ("residual", []), ("frozen", []),
                                           ("multi_output", ["1.weight", "1.bias"])])
def test_structured_uses_the_fallback_only_for_unsupported_layers(name, fallback):
    net, shape = make(name)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    plan = empirical._probe(net.eval(), inputs(shape, 3, 15), trainable)
    assert plan.fallback == fallback
    assert plan.clone == (name in ("cnn", "residual"))  # ReLU(inplace=True) / `h += x` change a layer's output


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


# ----------------------------------------------------------------------------------------------- declared layers
NETS = {  # nets' Dense / Conv declare structured_ntk(); b_std = 0.3 so that the bias terms count
    "mlp_ntk": lambda nets: (nets.MLP(5, [7, 6], 3, b_std=0.3), (5,)),
    "mlp_ntk_no_bias": lambda nets: (nets.MLP(5, [7, 6], 3, bias=False), (5,)),
    "mlp_standard": lambda nets: (nets.MLP(5, [7], 2, parameterization="standard", b_std=0.3), (5,)),
    "mlp_standard_no_bias": lambda nets: (nets.MLP(5, [7], 2, parameterization="standard", bias=False), (5,)),
    "cnn_gap": lambda nets: (nets.CNN(2, channels=3, depth=2, num_outputs=2, b_std=0.3), (2, 5, 5)),
    "cnn_flatten": lambda nets: (nets.CNN(2, channels=3, depth=1, num_outputs=3, b_std=0.3, filter_size=5,
                                          readout="flatten", image_size=(4, 5)), (2, 4, 5)),
}


@pytest.mark.parametrize("name", list(NETS))
def test_nets_layers_take_the_structured_path(monkeypatch, name):
    """nets.Dense / nets.Conv compute ws·W x + bs·b with ws = w_std/√fan_in ('ntk') or 1 ('standard') and
    declare it, so "structured" is exact for them (a missing ws² or bs² factor would change Θ by tens of per
    cent, far above RTOL) and "auto" takes it without the per-sample-Jacobian fallback."""
    import nets
    torch.manual_seed(0)
    net, shape = NETS[name](nets)
    net = net.double()
    x1, x2 = inputs(shape, 4, 16), inputs(shape, 3, 17)
    expected = brute_force(net, x1, x2)
    plan = empirical._probe(net.eval(), x1, [n for n, _ in net.named_parameters()])
    assert plan.fallback == [] and len(plan.sites) == sum(isinstance(m, (nets.models.Dense, nets.models.Conv))
                                                          for m in net.modules())
    assert_close(empirical_ntk(net, x1, x2, output="full", method="structured"), expected)
    assert_close(empirical_ntk(net, x1, x2, output="mean", method="structured"), mean_of(expected))
    assert_close(empirical_ntk(net, x1, x2, output="full", method="jacobian"), expected)

    def no_fallback(*args):
        raise AssertionError("auto fell back to the per-sample Jacobian")
    monkeypatch.setattr(empirical, "_jacobian", no_fallback)
    monkeypatch.setattr(empirical, "_ntvp_pair", no_fallback)
    assert_close(empirical_ntk(net, x1, x2, output="full", method="auto"), expected)


class ScaledConv(nn.Module):
    """A convolution declaring the protocol with stride, asymmetric padding/'same', dilation and signed scales."""

    def __init__(self, c_in, c_out, k, stride, padding, dilation, weight_scale, bias_scale, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, *k))
        self.bias = nn.Parameter(torch.randn(c_out)) if bias else None
        self.spec = ("conv2d", weight_scale, bias_scale, stride, padding, dilation)

    def structured_ntk(self):
        return self.spec

    def forward(self, x):
        _, ws, bs, stride, padding, dilation = self.spec
        bias = None if self.bias is None else bs * self.bias
        return nn.functional.conv2d(x, ws * self.weight, bias, stride, padding, dilation)


class ScaledLinear(nn.Module):
    def __init__(self, fan_in, fan_out, weight_scale, bias_scale):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(fan_out, fan_in)), nn.Parameter(torch.randn(fan_out))
        self.spec = ("linear", weight_scale, bias_scale)

    def structured_ntk(self):
        return self.spec

    def forward(self, x):
        return nn.functional.linear(x, self.spec[1] * self.weight, self.spec[2] * self.bias)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on a padded copy
@pytest.mark.parametrize("order", ["gram", "jacobian"])
def test_declared_layers_with_stride_padding_dilation(monkeypatch, order):
    """Both contraction orders on declared layers: stride 2 with padding (1, 0) and dilation (1, 2), 'same' with
    an even kernel (the odd pixel padded at the end), a bias-free layer, a negative scale, a dense layer applied
    at 2 positions. Shapes: (2, 4, 7) → (3, 2, 3) → (2, 2, 3) → 2 positions × 6 → (2, 3) → 6 → 2."""
    monkeypatch.setattr(empirical, "_order", lambda *args: order)
    torch.manual_seed(0)
    net = nn.Sequential(ScaledConv(2, 3, (3, 2), 2, (1, 0), (1, 2), 0.4, -1.7), nn.Tanh(),
                        ScaledConv(3, 2, (2, 2), 1, "same", 1, 1.3, None, bias=False), nn.ReLU(),
                        nn.Flatten(2), ScaledLinear(6, 3, -0.6, 2.5), nn.Tanh(), nn.Flatten(),
                        nn.Linear(6, 2)).double()
    x1, x2 = inputs((2, 4, 7), 4, 18), inputs((2, 4, 7), 3, 19)
    plan = empirical._probe(net.eval(), x1, [n for n, _ in net.named_parameters()])
    assert plan.fallback == [] and len(plan.sites) == 4
    assert_close(empirical_ntk(net, x1, x2, output="full", method="structured"), brute_force(net, x1, x2))


def test_malformed_declarations_are_rejected():
    x = inputs((3,), 2, 20)
    for spec, error, message in [
            (("dense", 1.0, 1.0), TypeError, r"Bad.structured_ntk\(\) must return \(\"linear\""),
            (("linear", 1.0), TypeError, "must return"),
            (("conv2d", 1.0, 1.0), TypeError, "must return"),
            (("linear", float("nan"), 1.0), ValueError, "`weight_scale` must be a finite number"),
            (("linear", 1.0, None), ValueError, "`bias_scale` must be a finite number"),
            (("linear", True, 1.0), ValueError, "weight_scale")]:
        class Bad(ScaledLinear):
            def structured_ntk(self, spec=spec):
                return spec
        with pytest.raises(error, match=message):
            empirical_ntk(Bad(3, 2, 1.0, 1.0).double(), x)
    net = ScaledConv(1, 1, (3, 3), 2, "same", 1, 1.0, 1.0).double()
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        empirical_ntk(net, inputs((1, 4, 4), 2, 21))
    net.spec = ("conv2d", 1.0, 1.0, 1, "full", 1)
    with pytest.raises(ValueError, match="padding must be an int, a pair of ints or 'same'/'valid'"):
        empirical_ntk(net, inputs((1, 4, 4), 2, 21))
    net.spec = ("linear", 1.0, 1.0)  # a linear declaration on a 4-d weight
    with pytest.raises(TypeError, match="needs a 2-d tensor attribute `weight`, got \\(1, 1, 3, 3\\)"):
        empirical_ntk(net, inputs((1, 4, 4), 2, 21))


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


# ----------------------------------------------------------------------------------------------- wide limit
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


# ----------------------------------------------------------------------------------------------- bad input
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
