"""kernels.infinite_width: torch modules read as stax kernels — lazykit's nets equal their analytic kernels, plain
torch layers carry PyTorch's default init, shapes follow the module, and layers without a kernel are named."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nets  # noqa: E402
from kernels import Convolutional, FullyConnected, NoAnalyticKernelError, infinite_width, stax  # noqa: E402
from kernels.analytic.architecture import ArchitectureError  # noqa: E402


# ----------------------------------------------------------------------------------------------- lazykit's nets
@pytest.mark.parametrize("kwargs", [
    dict(activation="relu"), dict(activation="erf", w_std=1.3, b_std=0.2), dict(activation="tanh", b_std=0.1),
    dict(activation="relu", parameterization="standard", b_std=0.3), dict(activation="relu", b_std=None),
    dict(activation="erf", readout_w_std=0.7, readout_b_std=0.3),
])
def test_mlp_is_fully_connected(rng, kwargs):
    # The same layer table (per-layer scales, 'standard' widths): equal to rounding (1e-12).
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    width = 64
    kernel = infinite_width(nets.MLP(4, [width, width], **kwargs))
    if "b_std" in kwargs and kwargs["b_std"] is None:
        kwargs = dict(kwargs, b_std=None)
    reference = FullyConnected(2, width=width, **kwargs)
    for xs in ((x1,), (x1, x2)):
        for got, want in zip(kernel.kernels(*xs), reference.kernels(*xs)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs", [dict(readout="gap"), dict(readout="flatten", image_size=(5, 5)),
                                    dict(activation="erf", w_std=1.2, b_std=0.3, filter_size=5),
                                    dict(depth=3, b_std=0.1)])
def test_cnn_is_convolutional(rng, kwargs):
    x1, x2 = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    kernel = infinite_width(nets.CNN(2, 16, **kwargs))
    reference = Convolutional(**{k: v for k, v in kwargs.items() if k != "image_size"})
    for xs in ((x1,), (x1, x2)):
        for got, want in zip(kernel.kernels(*xs), reference.kernels(*xs)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_vgg_is_its_stax_network_with_average_pools(rng):
    # VGG11 at width_factor 1/16: Kaiming-normal convs ('standard', W_std = √2, zero biases that train), 2×2
    # max-pools replaced by 2×2/2 average pools (asked for, and said in the name), flatten, nn.Linear.
    vgg = nets.VGG(11, width_factor=1 / 16)
    kernel = infinite_width(vgg, max_pool="avg")
    assert kernel.name.startswith("infinite_width(VGG) with MaxPool2d replaced by AvgPool")
    assert "features.3, features.7" in kernel.name and "max_pool" not in repr(kernel.spec)
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    layers, pools = [], iter([m for m in vgg.features if isinstance(m, nn.MaxPool2d)])
    for m in vgg.features:
        if isinstance(m, nn.Conv2d):
            layers.append(stax.Conv(m.out_channels, (3, 3), strides=(1, 1), padding="SAME", W_std=math.sqrt(2),
                                    b_std=0.0, parameterization="standard"))
        elif isinstance(m, nn.ReLU):
            layers.append(stax.Relu())
        elif isinstance(m, nn.MaxPool2d):
            next(pools)
            layers.append(stax.AvgPool((2, 2), strides=(2, 2), padding="VALID"))
    head = stax.Dense(10, W_std=math.sqrt(1 / 3), b_std=math.sqrt(1 / (3 * convs[-1].out_channels)),
                      parameterization="standard")
    by_hand = stax.serial(*layers, stax.Flatten(), head)
    x = rng.standard_normal((2, 3, 32, 32))
    for got, want in zip(kernel.kernels(x[:1], x[1:]), by_hand.kernels(x[:1], x[1:])):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: nets.VGG(11, width_factor=1 / 8, init="xavier", gain=1.3),
                                  lambda: nets.VGG(11, width_factor=1 / 8)])
def test_vgg_declares_the_init_it_draws(make):
    # The declared W_std of every conv and of the head, against the std of the weights the net actually drew
    # (times √fan_in): n weights estimate a normal's std to ±1/√(2n) relative (≥ 4608 weights here); 5 SE.
    torch.manual_seed(1)
    vgg = make()
    kernel = infinite_width(vgg, max_pool="avg")
    declared = [node[1] for node in _leaves(kernel.spec) if node[0] in ("Conv", "Dense")]
    layers = [m for m in vgg.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(declared) == len(layers)
    for kw, layer in zip(declared, layers):
        w = layer.weight.detach().double()
        fan_in = w[0].numel()
        if isinstance(layer, nn.Linear) and vgg.init == "kaiming":     # PyTorch's default: uniform, var 1/(3 fan_in)
            assert kw["W_std"] == pytest.approx(math.sqrt(1 / 3)) and kw["b_std"] == pytest.approx(
                math.sqrt(1 / (3 * fan_in)))
            continue
        assert abs(float(w.std()) * math.sqrt(fan_in) / kw["W_std"] - 1) < 5 / math.sqrt(2 * w.numel())
        assert kw["b_std"] == 0.0 and float(layer.bias.detach().abs().max()) == 0.0


def _leaves(node):
    if not node[2]:
        yield node
    for child in node[2]:
        yield from _leaves(child)


def test_resnet_identity_shortcuts_have_no_closed_form_and_say_where():
    # relu(f(x) + x) with x a post-ReLU (non-Gaussian) activation: neural-tangents refuses such a sum, and so
    # does lazykit, naming the block (the first identity block is blocks.0) and the Monte Carlo estimator.
    with pytest.raises(ArchitectureError, match=r"stax.FanInSum\(\) \(from module 'blocks.0' \(BasicBlock\)\).*"
                                                r"branch 1 is not Gaussian.*monte_carlo_kernel"):
        infinite_width(nets.ResNet(18, width_factor=1 / 16))


def test_a_downsampling_basic_block_has_its_kernel(rng):
    # A BasicBlock with a 1×1 stride-2 shortcut after a conv (a Gaussian input): both branches end in convs.
    block = nets.models.BasicBlock(4, 8, 2, batch_norm=False)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), block, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    kernel = infinite_width(net)
    root3 = math.sqrt(1 / 3)
    conv = lambda c_in, c_out, f, s, p: stax.Conv(  # noqa: E731
        c_out, (f, f), strides=(s, s), padding=p, W_std=root3, b_std=math.sqrt(1 / (3 * c_in * f * f)),
        parameterization="standard")
    by_hand = stax.serial(
        conv(2, 4, 3, 1, "SAME"), stax.FanOut(2),
        stax.parallel(stax.serial(conv(4, 8, 3, 2, ((1, 1), (1, 1))), stax.Relu(), conv(8, 8, 3, 1, "SAME")),
                      conv(4, 8, 1, 2, "VALID")),
        stax.FanInSum(), stax.Relu(), stax.GlobalAvgPool(),
        stax.Dense(1, W_std=root3, b_std=math.sqrt(1 / 24), parameterization="standard"))
    x = rng.standard_normal((3, 2, 7, 7))
    for got, want in zip(kernel.kernels(x), by_hand.kernels(x)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


# ----------------------------------------------------------------------------------------------- plain torch layers
def test_torch_default_init_is_the_stated_standard_parameterization():
    # PyTorch draws Linear/Conv2d weights kaiming_uniform(a=√5) = U(±√(6/((1 + 5)·fan_in))) = U(±1/√fan_in) and
    # biases U(±1/√fan_in): variance 1/(3·fan_in) each, i.e. W_std = √(1/3), b_std = √(1/(3·fan_in)).
    # Sampled: 400·300 = 120k weights estimate the variance to ±0.4% (the SE of a uniform's sample variance is
    # √(0.8/n)·var); 5 SE.
    torch.manual_seed(0)
    linear = nn.Linear(300, 400)
    conv = nn.Conv2d(20, 400, 3)
    for layer, fan_in in ((linear, 300), (conv, 180)):
        for tensor, n in ((layer.weight, layer.weight.numel()), (layer.bias, layer.bias.numel())):
            var = float(tensor.detach().double().var())
            assert abs(var * 3 * fan_in - 1) < 5 * math.sqrt(0.8 / n)
    kernel = infinite_width(nn.Sequential(linear, nn.ReLU(), nn.Linear(400, 1, bias=False)))
    dense = [node for node in kernel.spec[2]]
    assert dense[0] == stax.Dense(400, W_std=math.sqrt(1 / 3), b_std=math.sqrt(1 / 900),
                                  parameterization="standard").spec
    assert dense[2] == stax.Dense(1, W_std=math.sqrt(1 / 3), b_std=None, parameterization="standard").spec


def test_a_sequential_of_plain_layers_reads_every_layer(rng):
    net = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.GELU(), nn.AvgPool2d(2), nn.Dropout(0.3),
                        nn.Conv2d(6, 6, 2, padding="same", bias=False), nn.Tanh(),
                        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Identity(), nn.Linear(6, 5), nn.LeakyReLU(0.2),
                        nn.Linear(5, 2))
    kernel = infinite_width(net, init={nn.Conv2d: dict(W_std=1.5, b_std=0.1)})
    std = dict(parameterization="standard")
    by_hand = stax.serial(
        stax.Conv(6, (3, 3), strides=(1, 1), padding="SAME", W_std=1.5, b_std=0.1, **std), stax.Gelu(),
        stax.AvgPool((2, 2), strides=(2, 2), padding="VALID", normalize_edges=False), stax.Identity(),
        stax.Conv(6, (2, 2), strides=(1, 1), padding="SAME", W_std=1.5, b_std=None, **std), stax.Tanh(),
        stax.AvgPool((3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), normalize_edges=True),
        stax.GlobalAvgPool(), stax.Flatten(), stax.Identity(),
        stax.Dense(5, W_std=math.sqrt(1 / 3), b_std=math.sqrt(1 / 18), **std), stax.LeakyRelu(0.2),
        stax.Dense(2, W_std=math.sqrt(1 / 3), b_std=math.sqrt(1 / 15), **std))
    assert kernel.spec == by_hand.spec
    x = rng.standard_normal((2, 2, 6, 6))
    np.testing.assert_array_equal(kernel.ntk(x), by_hand.ntk(x))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")   # torch's own notice
@pytest.mark.parametrize("conv", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=4, padding="same"),
                                  dict(kernel_size=3, padding="valid"), dict(kernel_size=(3, 1), padding=(1, 0)),
                                  dict(kernel_size=2, stride=2), dict(kernel_size=5, stride=3, padding=2)])
def test_conv_output_sizes_follow_the_module(conv):
    # The kernel's Flatten fan-in (a 'standard' Dense after it reads C·H·W) equals the module's own flat size.
    layer = nn.Conv2d(2, 3, **conv)
    x = torch.zeros(1, 2, 9, 8)
    flat = nn.Flatten()(layer(x)).shape[1]
    kernel = infinite_width(nn.Sequential(layer, nn.Flatten(), nn.Linear(flat, 1)))
    network = kernel.network(2, 9, 8)
    assert network.layers[-1].fan_in == flat


def test_activations_read_by_quadrature_match_their_function():
    # nn.ELU has no closed form: its dual is the quadrature of the module itself, equal to the quadrature dual
    # of the same function written with NumPy.
    from kernels.analytic.duals import get_dual
    kernel = infinite_width(nn.Sequential(nn.Linear(3, 8), nn.ELU(), nn.Linear(8, 1)))
    x = np.random.default_rng(1).standard_normal((3, 3))
    elu = lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0)))  # noqa: E731
    want = stax.serial(stax.Dense(8, W_std=math.sqrt(1 / 3), b_std=1 / 3, parameterization="standard"),
                       stax.Activation(elu),
                       stax.Dense(1, W_std=math.sqrt(1 / 3), b_std=math.sqrt(1 / 24), parameterization="standard"))
    np.testing.assert_allclose(kernel.nngp(x), want.nngp(x), rtol=1e-12)
    assert get_dual(elu).closed is False


# ----------------------------------------------------------------------------------------------- errors
class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x):
        return self.linear(x) * 2


@pytest.mark.parametrize("module, kwargs, error, match", [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2)), {}, NoAnalyticKernelError,
     r"MaxPool2d at '2' has no analytic infinite-width kernel.*max_pool='avg'.*kernels.monte_carlo_kernel"),
    (nets.VGG(11, width_factor=1 / 16, batch_norm=True), dict(max_pool="avg"), NoAnalyticKernelError,
     r"BatchNorm2d at 'features.1' has no analytic infinite-width kernel.*nets.VGG\(batch_norm=False\)"),
    (nn.Sequential(nn.Linear(3, 3), _Custom()), {}, NoAnalyticKernelError,
     r"_Custom at '1' has no analytic.*stax_layer\(read\)"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), {}, NoAnalyticKernelError, r"only groups=1, dilation=1"),
    (nn.Sequential(nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(2)), {}, NoAnalyticKernelError,
     r"only AdaptiveAvgPool2d\(1\)"),
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 1)), {}, ArchitectureError,
     r"stax.Relu\(\) \(from module '0' \(ReLU\)\) at serial\[0\]: the input to an activation must be Gaussian"),
    (nn.Linear(3, 1), dict(init={nn.Linear: dict(w_std=1.0)}), ValueError, r"unknown keys \['w_std'\]"),
    (nn.Linear(3, 1), dict(init={"Linear": {}}), TypeError, r"init keys must be torch layer classes"),
    (nn.Linear(3, 1), dict(max_pool="max"), ValueError, r"unknown max_pool 'max'; valid: None, avg"),
    ("not a module", {}, TypeError, r"module must be a torch.nn.Module, got str"),
])
def test_modules_without_a_kernel_are_named(module, kwargs, error, match):
    with pytest.raises(error, match=match):
        infinite_width(module, **kwargs)
