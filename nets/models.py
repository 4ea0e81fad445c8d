"""Networks studied in lazykit: the paper's two-layer model, NTK-parameterized MLP and CNN, CIFAR VGG and ResNet.

`MLP(parameterization="ntk")` and `CNN` follow the conventions of `kernels.FullyConnected` and
`kernels.Convolutional` (docs/conventions.md, *Parameterizations*; the same as neural-tangents' `stax`): every
weight and bias is drawn from N(0, 1) and a layer computes  w_std / sqrt(fan_in) · W x + b_std · b,  so the
empirical NTK and the output covariance at initialisation converge to the analytic kernels as the widths grow.

`Dense` and `Conv` declare `structured_ntk()` (their forward is a plain linear map / convolution with scalar
multipliers on weight and bias), so `kernels.empirical_ntk` takes its fast "structured" path for MLP and CNN.

Every network here (and its layers) declares its infinite-width kernel with `stax_layer(read)`, the protocol of
`kernels.infinite_width`: it returns the `kernels.stax` layer of the module as initialised (`read(name, init=)`
converts a submodule). So `kernels.infinite_width(CNN(...))` is `kernels.Convolutional(...)` with the same
arguments, and VGG / ResNet (without BatchNorm) get the kernel of the init they were drawn from.

Nonlinearities are `torch.nn` modules (never functional calls), so `nets.diagnostics` can hook every ReLU.
"""
import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

import kernels
from kernels import ArgumentTypeError, check_choice, check_scalar

stax = kernels.stax   # the stax layers, a public module of the kernels package (kernels.infinite_width reads them)
ACTIVATIONS = ("relu", "erf", "tanh", "softplus", "gelu", "swish")


class Erf(nn.Module):
    """The error function as a module (the activation with a closed-form dual in `kernels.analytic.duals`)."""

    def forward(self, x):
        return torch.special.erf(x)

    def stax_layer(self, read):
        return stax.Erf()


class Softplus(nn.Module):
    """softplus(x) = log(1 + eˣ), exactly (torch's `nn.Softplus` switches to x above 20): `kernels`' 'softplus'."""

    def forward(self, x):
        return torch.logaddexp(x, torch.zeros_like(x))

    def stax_layer(self, read):
        return stax.Softplus()


def activation_module(name):
    """A fresh module for the activation `name` (one of ACTIVATIONS), the function `kernels.analytic.duals` integrates
    under the same name: 'gelu' is the exact x·Φ(x) (not the tanh approximation), 'swish' is x·sigmoid(x) (SiLU)."""
    check_choice(name, "activation", ACTIVATIONS)
    return {"relu": nn.ReLU, "erf": Erf, "tanh": nn.Tanh, "softplus": Softplus, "gelu": nn.GELU,
            "swish": nn.SiLU}[name]()


class TwoLayer(nn.Module):
    """The paper's two-layer model  h(w)(x) = (1/m) · Σ_j b_j · σ(a_j·x + c_j),  w = (a_j, b_j[, c_j])_{j≤m}.

    Source: Chizat, Oyallon & Bach, "On Lazy Training in Differentiable Programming" (NeurIPS 2019,
    arXiv:1812.07956), §3. Two initialisations of scale τ (`init_scale`):

    - init='sphere' (lazykit's, the default): input weights uniform on the sphere of radius τ, output weights
      +τ for the first half of the units and −τ for the second half. With `bias`, (a_j, c_j) is drawn jointly
      on the sphere of radius τ in ℝ^{d+1} (the paper appends a constant 1 to x instead).
    - init='gaussian' (the authors' code: `GDfor2NN` in their notebook lazy.ipynb, called by
      shallow-nn/test_vs_scale.jl): every entry of a_j, b_j (and c_j) drawn from N(0, τ²).

    `normalize=False` drops the 1/m, as `GDfor2NN` does (its output is Σ_j b_j·relu(a_j·x)).
    `symmetric=True` is the paper's symmetrised initialisation: for j > m/2, a_j = a_{j−m/2}, c_j = c_{j−m/2}
    and b_j = −b_{j−m/2} (with 'gaussian', b_j = |b_j| for j ≤ m/2 first, as the authors do), so h(w₀) = 0 up to
    rounding (m must be even); the units move apart in training.
    For a ReLU, scaling w₀ by τ scales h(w₀) by τ² (positive homogeneity of degree 2), so τ plays the role of
    the lazy scale α = τ² of the paper's §3. Output shape (N, 1).
    """

    def __init__(self, d, m, activation="relu", bias=False, init_scale=1.0, symmetric=False, init="sphere",
                 normalize=True):
        super().__init__()
        self.d, self.m = check_scalar(d, "d", int, min_val=1), check_scalar(m, "m", int, min_val=1)
        if symmetric and m % 2:
            raise ValueError(f"symmetric=True pairs units, so m must be even, got m={m}")
        # τ ≤ 1e15: the output scales as τ², which must stay far inside float32 (3.4e38) for training
        check_scalar(init_scale, "init_scale", float, min_val=0, max_val=1e15, include_boundaries="right")
        check_choice(init, "init", ("sphere", "gaussian"))
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True (the 1/m of the paper's model) or False, got {normalize!r}")
        self.init_scale, self.symmetric, self.activation = float(init_scale), bool(symmetric), activation
        self.init, self.normalize = init, normalize
        self.a = nn.Parameter(torch.empty(m, d))
        self.b = nn.Parameter(torch.empty(m))
        self.c = nn.Parameter(torch.empty(m)) if bias else None
        self.sigma = activation_module(activation)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Draw w₀ from torch's global generator (seed it with `torch.manual_seed`)."""
        tau, m = self.init_scale, self.m
        drawn = m // 2 if self.symmetric else m
        inner = torch.randn(drawn, self.d + (self.c is not None), dtype=self.a.dtype)
        if self.init == "sphere":
            inner *= tau / inner.norm(dim=1, keepdim=True)
            outer = torch.full((drawn,), tau, dtype=self.b.dtype)
            if not self.symmetric:
                outer[(m + 1) // 2:] = -tau
        else:
            inner *= tau
            outer = tau * torch.randn(drawn, dtype=self.b.dtype)
            if self.symmetric:
                outer = outer.abs()
        if self.symmetric:
            inner, outer = torch.cat([inner, inner]), torch.cat([outer, -outer])
        self.a.copy_(inner[:, :self.d])
        if self.c is not None:
            self.c.copy_(inner[:, self.d])
        self.b.copy_(outer)

    def forward(self, x):
        out = self.sigma(F.linear(x, self.a, self.c)) @ self.b
        return (out / self.m if self.normalize else out).unsqueeze(-1)


class Dense(nn.Module):
    """Fully connected layer in the 'ntk' or 'standard' parameterization (docs/conventions.md, *Parameterizations*).

    'ntk':      y = w_std/√fan_in · W x + b_std · b,  W, b ~ N(0, 1).
    'standard': y = W x + b,  W ~ N(0, w_std²/fan_in), b ~ N(0, b_std²).
    Both give the same output distribution at initialisation; they differ in the NTK (gradient scale).
    `b_std=None` means no bias parameter; so does `b_std=0` in the 'ntk' parameterization, where the bias
    b_std·b would be an inert parameter (zero output, zero gradient) that still counted in ‖w₀‖. In the
    'standard' parameterization `b_std=0` is a zero-initialised bias that trains (it adds 1 to each layer's NTK).
    """

    def __init__(self, fan_in, fan_out, w_std, b_std, parameterization):
        super().__init__()
        check_choice(parameterization, "parameterization", ("ntk", "standard"))
        if parameterization == "ntk" and b_std == 0:
            b_std = None
        self.fan_in, self.parameterization = fan_in, parameterization
        self.w_std, self.b_std = w_std, b_std
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(fan_out)) if b_std is not None else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        ntk = self.parameterization == "ntk"
        self.weight.normal_(0.0, 1.0 if ntk else self.w_std / math.sqrt(self.fan_in))
        if self.bias is not None:
            self.bias.normal_(0.0, 1.0 if ntk else self.b_std)

    def structured_ntk(self):
        """forward(x) == F.linear(x, ws·W, bs·b): the structured-layer protocol of `kernels.empirical_ntk`."""
        if self.parameterization == "standard":
            return ("linear", 1.0, 1.0)
        return ("linear", self.w_std / math.sqrt(self.fan_in), self.b_std)

    def stax_layer(self, read):
        """The layer's kernel (`kernels.infinite_width`): Dense with this layer's scales and parameterization."""
        return stax.Dense(self.weight.shape[0], W_std=self.w_std, b_std=self.b_std,
                          parameterization=self.parameterization)

    def forward(self, x):
        if self.parameterization == "standard":
            return F.linear(x, self.weight, self.bias)
        bias = None if self.bias is None else self.b_std * self.bias
        return F.linear(x, self.weight * (self.w_std / math.sqrt(self.fan_in)), bias)


class MLP(nn.Module):
    """`len(widths)` hidden [Dense, activation] blocks and a Dense readout to `d_out` outputs.

    With parameterization='ntk' this is the finite-width network of `kernels.FullyConnected(depth=len(widths),
    activation, w_std, b_std)`: its output covariance at init converges to the NNGP and its empirical NTK to the
    analytic NTK as min(widths) → ∞ (Jacot et al. 2018; neural-tangents' stax.Dense). `bias=False` or
    `b_std=None` removes the biases; in the 'ntk' parameterization so does `b_std=0` (the default: see `Dense`).
    `readout_w_std` and `readout_b_std` set the readout layer's scales when they differ from the hidden layers'
    (None and "same": as `w_std` and `b_std`; `readout_b_std=None` drops the readout bias), as
    `kernels.FullyConnected` accepts them.
    """

    def __init__(self, d_in, widths, d_out=1, activation="relu", bias=True, parameterization="ntk",
                 w_std=2 ** 0.5, b_std=0.0, readout_w_std=None, readout_b_std="same"):
        super().__init__()
        check_scalar(d_in, "d_in", int, min_val=1)
        check_scalar(d_out, "d_out", int, min_val=1)
        if isinstance(widths, bool) or not isinstance(widths, (numbers.Integral, list, tuple, range)):
            raise ArgumentTypeError(f"widths must be a positive integer or a list of them (the hidden widths), "
                                    f"got {widths!r}")
        widths = [widths] if isinstance(widths, numbers.Integral) else list(widths)
        if not widths:
            raise ValueError("widths must list at least one hidden width")
        for i, width in enumerate(widths):
            check_scalar(width, f"widths[{i}]", int, min_val=1)
        w_std = check_scalar(w_std, "w_std", float, min_val=0)
        b_std = None if not bias else check_scalar(b_std, "b_std", float, min_val=0, allow_none="no bias")
        layers, fan_in = [], d_in
        for width in widths:
            layers += [Dense(fan_in, width, w_std, b_std, parameterization), activation_module(activation)]
            fan_in = width
        if readout_w_std is not None:
            w_std = check_scalar(readout_w_std, "readout_w_std", float, min_val=0)
        if not (isinstance(readout_b_std, str) and readout_b_std == "same"):
            b_std = None if not bias else check_scalar(readout_b_std, "readout_b_std", float, min_val=0,
                                                       allow_none="no readout bias")
        layers.append(Dense(fan_in, d_out, w_std, b_std, parameterization))
        self.layers = nn.Sequential(*layers)
        self.activation = activation

    def stax_layer(self, read):
        """The kernel of `kernels.FullyConnected` with the same arguments (the activation by its lazykit name,
        so the dual is the very one `FullyConnected` uses)."""
        return stax.serial(*[read(f"layers.{i}") if isinstance(layer, Dense) else stax.Activation(self.activation)
                             for i, layer in enumerate(self.layers)])

    def forward(self, x):
        return self.layers(x)


class Conv(nn.Module):
    """filter_size × filter_size convolution with 'SAME' zero padding in the ntk parameterization:
    y = w_std/√(C_in·filter_size²) · W ⋆ x + b_std · b with W, b ~ N(0, 1) (fan-in = channels × filter area)."""

    def __init__(self, c_in, c_out, filter_size, w_std, b_std):
        super().__init__()
        self.w_std, self.filter_size = w_std, filter_size
        self.scale = w_std / math.sqrt(c_in * filter_size ** 2)
        self.b_std, self.padding = (None if b_std == 0 else b_std), filter_size // 2   # b_std = 0: inert, dropped
        self.weight = nn.Parameter(torch.randn(c_out, c_in, filter_size, filter_size))
        self.bias = nn.Parameter(torch.randn(c_out)) if self.b_std is not None else None

    def structured_ntk(self):
        """forward(x) == F.conv2d(x, ws·W, bs·b, stride 1, SAME padding, dilation 1): the structured-layer
        protocol of `kernels.empirical_ntk`."""
        return ("conv2d", self.scale, self.b_std, 1, self.padding, 1)

    def stax_layer(self, read):
        """The layer's kernel (`kernels.infinite_width`): a 'SAME' convolution in the ntk parameterization."""
        f = self.filter_size
        return stax.Conv(self.weight.shape[0], (f, f), padding="SAME", W_std=self.w_std, b_std=self.b_std)

    def forward(self, x):
        bias = None if self.bias is None else self.b_std * self.bias
        return F.conv2d(x, self.weight * self.scale, bias, padding=self.padding)


class CNN(nn.Module):
    """`depth` [Conv, activation] blocks with `channels` channels, a readout, then a Dense layer to `num_outputs`.

    The finite-width network of `kernels.Convolutional(depth, activation, w_std, b_std, filter_size, readout)`
    (docs/conventions.md, *Convolutions*): readout 'gap' averages each channel over all pixels (Dense fan-in =
    channels); 'flatten' keeps every pixel (Dense fan-in = channels·H·W, so `image_size=(H, W)` is required).
    Inputs are (N, C, H, W); `filter_size` must be odd so that 'SAME' padding keeps H and W.
    """

    def __init__(self, in_channels, channels=64, depth=2, num_outputs=1, activation="relu", w_std=2 ** 0.5,
                 b_std=0.0, filter_size=3, readout="gap", image_size=None):
        super().__init__()
        for value, name in ((in_channels, "in_channels"), (channels, "channels"), (depth, "depth"),
                            (num_outputs, "num_outputs"), (filter_size, "filter_size")):
            check_scalar(value, name, int, min_val=1)
        if filter_size % 2 == 0:
            raise ValueError(f"filter_size must be odd for 'SAME' padding, got {filter_size}")
        check_choice(readout, "readout", ("gap", "flatten"))
        if readout == "flatten" and (image_size is None or len(image_size) != 2):
            raise ValueError(f"readout='flatten' needs image_size=(H, W), got {image_size!r}")
        w_std = check_scalar(w_std, "w_std", float, min_val=0)
        b_std = check_scalar(b_std, "b_std", float, min_val=0, allow_none="no bias")
        blocks, c_in = [], in_channels
        for _ in range(depth):
            blocks += [Conv(c_in, channels, filter_size, w_std, b_std), activation_module(activation)]
            c_in = channels
        self.features = nn.Sequential(*blocks)
        self.readout = readout
        fan_in = channels if readout == "gap" else channels * image_size[0] * image_size[1]
        self.head = Dense(fan_in, num_outputs, w_std, b_std, "ntk")
        self.activation = activation

    def stax_layer(self, read):
        """The kernel of `kernels.Convolutional` with the same arguments."""
        blocks = [read(f"features.{i}") if isinstance(layer, Conv) else stax.Activation(self.activation)
                  for i, layer in enumerate(self.features)]
        pool = stax.GlobalAvgPool() if self.readout == "gap" else stax.Flatten()
        return stax.serial(*blocks, pool, read("head"))

    def forward(self, x):
        z = self.features(x)
        z = z.mean(dim=(2, 3)) if self.readout == "gap" else z.flatten(1)
        return self.head(z)


def _norm(batch_norm, channels):
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def _scaled(channels, width_factor):
    return max(1, int(round(channels * width_factor)))


def _declared_init(init, gain) -> dict:
    """What `_initialize` draws, as `kernels.infinite_width` reads an init ('standard' parameterization, W_std =
    weight std · √fan_in; zero biases that train, b_std = 0, not None: the 'standard' NTK counts them):
    'kaiming' N(0, 2/fan_in) conv weights, W_std = √2 (the head keeps PyTorch's default, which infinite_width
    knows); 'xavier' N(0, gain²·2/(fan_in + fan_out)) on convs and head, W_std = gain·√(2·fan_in/(fan_in + fan_out))
    at the layer's own fans."""
    def declared(layer):
        shape = layer.weight.shape                       # (out, in[, kh, kw]): fans as torch.nn.init counts them
        field = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * field, shape[0] * field
        w_std = math.sqrt(2) if init == "kaiming" else gain * math.sqrt(2 * fan_in / (fan_in + fan_out))
        return {"W_std": w_std, "b_std": None if layer.bias is None else 0.0, "parameterization": "standard"}
    return {nn.Conv2d: declared, nn.Linear: declared} if init == "xavier" else {nn.Conv2d: declared}


INITS = ("kaiming", "xavier")


def _initialize(network, init, gain):
    """Initialise every nn.Conv2d (and, for 'xavier', the nn.Linear head) of `network`; biases zero.

    'kaiming': Kaiming-normal conv weights, std = √2/√fan_in (He et al. 2015; fan_in = C_in·k²), the head left at
    PyTorch's nn.Linear default. 'xavier': the authors' init (lazy-training-CNN, cnn/train.py; the paper's §3:
    "biases are initialized with 0 and all other weights with normal Xavier initialization"): Xavier-normal
    std = gain·√(2/(fan_in + fan_out)) on every conv and on the head (Glorot & Bengio 2010), gain 1 as their
    script.sh runs it. The NTK at init is much smaller under 'xavier': λ_max 145× smaller for VGG-11 and 408× for
    ResNet-18 at width 1/8 on 128 CIFAR-10 images.
    """
    check_choice(init, "init", INITS)
    gain = check_scalar(gain, "gain", float, min_val=0, include_boundaries="neither")
    for module in network.modules():
        if isinstance(module, nn.Conv2d) or (init == "xavier" and isinstance(module, nn.Linear)):
            if init == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


_VGG_CONFIGS = {  # channels of 3×3 convs; "M" = 2×2 max-pool (Simonyan & Zisserman 2015, configs A, B, D, E)
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _check_cifar_args(depth, valid, width_factor, num_classes, in_channels, name):
    check_choice(depth, f"{name} depth", sorted(valid))
    check_scalar(width_factor, "width_factor", float, min_val=0, include_boundaries="neither")
    check_scalar(num_classes, "num_classes", int, min_val=1)
    check_scalar(in_channels, "in_channels", int, min_val=1)


class VGG(nn.Module):
    """CIFAR-size VGG (32×32 inputs): 3×3 convs + ReLU, five max-pools, then one linear layer to the classes.

    As in the paper's CIFAR-10 experiments (Chizat, Oyallon & Bach 2019, §3): optional BatchNorm
    (`batch_norm=False` removes it), channel counts multiplied by `width_factor`, a final linear layer to
    `num_classes`. Standard PyTorch parameterization; `init` 'kaiming' (Kaiming-normal conv weights, the default)
    or 'xavier' (Xavier-normal with `gain` on convs and head, the authors' choice), zero biases (`_initialize`).
    """

    def __init__(self, depth=11, width_factor=1, batch_norm=False, num_classes=10, in_channels=3, init="kaiming",
                 gain=1.0):
        super().__init__()
        _check_cifar_args(depth, _VGG_CONFIGS, width_factor, num_classes, in_channels, "VGG")
        layers, c_in = [], in_channels
        for item in _VGG_CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c_out = _scaled(item, width_factor)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _norm(batch_norm, c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)
        _initialize(self, init, gain)
        self.init, self.gain = init, gain

    def stax_layer(self, read):
        """features, flatten, the linear classifier, with the init they were drawn from (`_declared_init`).
        Max-pools have no closed-form kernel: `kernels.infinite_width(vgg, max_pool="avg")` replaces them by 2×2
        average pools, and says so in the kernel's name."""
        init = _declared_init(self.init, self.gain)
        return stax.serial(read("features", init=init), stax.Flatten(), read("classifier", init=init))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """Two 3×3 convs with a skip connection (He et al. 2016); a 1×1 conv on the skip when the shape changes."""

    def __init__(self, c_in, c_out, stride, batch_norm):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)
        self.norm1, self.relu1 = _norm(batch_norm, c_out), nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batch_norm)
        self.norm2, self.relu2 = _norm(batch_norm, c_out), nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not batch_norm),
                                          _norm(batch_norm, c_out))

    def stax_layer(self, read):
        """relu2(conv2 ∘ relu1 ∘ conv1 (x) + shortcut(x)) as FanOut / parallel / FanInSum. The sum of an identity
        shortcut adds the block's post-ReLU (non-Gaussian) input, which has no closed-form kernel after relu2
        (neural-tangents refuses it too): only downsampling blocks, whose shortcut is a convolution, have one."""
        main = stax.serial(read("conv1"), read("norm1"), read("relu1"), read("conv2"), read("norm2"))
        return stax.serial(stax.FanOut(2), stax.parallel(main, read("shortcut")), stax.FanInSum(), read("relu2"))

    def forward(self, x):
        out = self.relu1(self.norm1(self.conv1(x)))
        return self.relu2(self.norm2(self.conv2(out)) + self.shortcut(x))


_RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class ResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, the 32×32 variant: 3×3 stem, no stem max-pool, four stages of BasicBlocks
    with 64·k, 128·k, 256·k, 512·k channels, k = `width_factor`, global average pool, linear layer to
    `num_classes`), with optional BatchNorm as in the paper's CIFAR-10 experiments (§3); `init` and `gain` as
    in `VGG`."""

    def __init__(self, depth=18, width_factor=1, batch_norm=False, num_classes=10, in_channels=3, init="kaiming",
                 gain=1.0):
        super().__init__()
        _check_cifar_args(depth, _RESNET_BLOCKS, width_factor, num_classes, in_channels, "ResNet")
        c = _scaled(64, width_factor)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=not batch_norm),
                                  _norm(batch_norm, c), nn.ReLU())
        blocks, c_in = [], c
        for stage, n_blocks in enumerate(_RESNET_BLOCKS[depth]):
            c_out = _scaled(64 * 2 ** stage, width_factor)
            for i in range(n_blocks):
                blocks.append(BasicBlock(c_in, c_out, 2 if (i == 0 and stage > 0) else 1, batch_norm))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c_in, num_classes)
        _initialize(self, init, gain)
        self.init, self.gain = init, gain

    def stax_layer(self, read):
        """stem, blocks, global average pool, the linear classifier, with the init they were drawn from."""
        init = _declared_init(self.init, self.gain)
        return stax.serial(read("stem", init=init), read("blocks", init=init), stax.GlobalAvgPool(),
                           read("classifier", init=init))

    def forward(self, x):
        return self.classifier(self.blocks(self.stem(x)).mean(dim=(2, 3)))
