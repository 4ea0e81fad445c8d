"""The structured-derivatives path (kernels/empirical/structured.py, layers.py): both contraction orders, the
per-layer Jacobian fallback, shared weights, nets' declared layers and the structured-layer protocol, each
against brute-force per-sample gradients (tests/kernels/empirical/cases.py)."""
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kernels.empirical import functional, layers, structured  # noqa: E402
from kernels.empirical import empirical_ntk  # noqa: E402
from empirical_cases import assert_close, brute_force, case, inputs, make, mean_of  # noqa: E402


@pytest.mark.parametrize("order", ["gram", "jacobian"])
def test_both_contraction_orders_of_structured(monkeypatch, order):
    """"structured" picks per layer between the position-Gram and the per-sample-gradient contraction; force
    each one (and tiny patch chunks, so the chunked and uncached patch paths run) against brute force."""
    monkeypatch.setattr(structured, "_order", lambda *args: order)
    monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 50)
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
    plan = structured.probe(net, x1, [name for name, _ in net.named_parameters()])
    assert sorted(plan.fallback) == ["a.weight", "c.weight"]  # shared / used outside: per-layer Jacobian
    assert len(plan.sites) == 3  # a (bias only), b (bias only), c (bias only) stay structured


@pytest.mark.parametrize("name,fallback", [("mlp", []), ("cnn", []), ("residual", []), ("frozen", []),
                                           ("multi_output", ["1.weight", "1.bias"])])
def test_structured_uses_the_fallback_only_for_unsupported_layers(name, fallback):
    net, shape = make(name)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    plan = structured.probe(net.eval(), inputs(shape, 3, 15), trainable)
    assert plan.fallback == fallback
    assert plan.clone == (name in ("cnn", "residual"))  # ReLU(inplace=True) / `h += x` change a layer's output


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
    plan = structured.probe(net.eval(), x1, [n for n, _ in net.named_parameters()])
    assert plan.fallback == [] and len(plan.sites) == sum(isinstance(m, (nets.models.Dense, nets.models.Conv))
                                                          for m in net.modules())
    assert_close(empirical_ntk(net, x1, x2, output="full", method="structured"), expected)
    assert_close(empirical_ntk(net, x1, x2, output="mean", method="structured"), mean_of(expected))
    assert_close(empirical_ntk(net, x1, x2, output="full", method="jacobian"), expected)

    def no_fallback(*args):
        raise AssertionError("auto fell back to the per-sample Jacobian")
    monkeypatch.setattr(functional, "jacobian", no_fallback)
    monkeypatch.setattr(functional, "ntvp_pair", no_fallback)
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
    monkeypatch.setattr(structured, "_order", lambda *args: order)
    torch.manual_seed(0)
    net = nn.Sequential(ScaledConv(2, 3, (3, 2), 2, (1, 0), (1, 2), 0.4, -1.7), nn.Tanh(),
                        ScaledConv(3, 2, (2, 2), 1, "same", 1, 1.3, None, bias=False), nn.ReLU(),
                        nn.Flatten(2), ScaledLinear(6, 3, -0.6, 2.5), nn.Tanh(), nn.Flatten(),
                        nn.Linear(6, 2)).double()
    x1, x2 = inputs((2, 4, 7), 4, 18), inputs((2, 4, 7), 3, 19)
    plan = structured.probe(net.eval(), x1, [n for n, _ in net.named_parameters()])
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
