"""neural-tangents' ``stax`` layers, as lazykit kernels: the same names, arguments and defaults (0.6.5).

    from kernels import stax
    kernel = stax.serial(stax.Conv(64, (3, 3), padding="SAME"), stax.Relu(),
                         stax.AvgPool((2, 2), strides=(2, 2)), stax.Conv(64, (3, 3), padding="SAME"), stax.Relu(),
                         stax.GlobalAvgPool(), stax.Dense(1))
    nngp, ntk = kernel.kernels(x1, x2)          # or kernel(x1, x2, "ntk"), as neural-tangents' kernel_fn

Every layer and every composition is a ``StaxKernel``: an analytic kernel with lazykit's protocol (``.nngp``,
``.ntk``, ``.kernels``, ``device=``, ``dtype=``, tiles bounded by ``memory_budget``), so ``kernels.gram``,
``GramStore``, ``KernelRegressor(kernel=...)``, dask and the GPU take it unchanged. neural-tangents returns
``(init_fn, apply_fn, kernel_fn)``; lazykit returns only the kernel, because lazykit's finite networks are
PyTorch modules (``kernels.infinite_width(module)`` reads their kernel) and the kernel object is what the
rest of lazykit consumes: it prints, compares, hashes and pickles by its layers and options.

Differences from neural-tangents, by design:

* images are (N, C, H, W), PyTorch's layout (neural-tangents: NHWC); ``filter_shape``, ``window_shape`` and
  ``strides`` are (along H, along W) in both. ``batch_axis``/``channel_axis``/``dimension_numbers`` are
  accepted with their default values only (the layout is fixed);
* the kernel of the network's output is an (n1, n2) matrix: a network on images ends in ``Flatten`` or
  ``GlobalAvgPool`` (or ``GlobalSumPool``);
* on a same-input kernel (``x2=None``) the diagonal is pinned to the variances, so θ = 0 there exactly;
  neural-tangents' general arccos formulas leave ~1e-9 relative there;
* ``ElementwiseNumerical(fn, deg, df)`` integrates with lazykit's split polar Gauss–Legendre rule
  (``kernels.analytic.duals``), not Gauss–Hermite of degree ``deg`` (accepted, unused): more accurate for kinks;
* ``Conv``/``AvgPool``/``SumPool`` also take explicit zero pads ``padding=((lo, hi), (lo, hi))`` (lax's form;
  PyTorch's symmetric ``padding=p`` is ((p, p), (p, p))), which neural-tangents' stax does not;
* ``Gelu(approximate=True)``: as in neural-tangents, the kernel is the exact GELU's (approximate changes only
  the finite network's forward pass there).

Beyond neural-tangents (lazykit's activations): ``Tanh``, ``Softplus``, ``Sigmoid`` (the logistic function, not
``Sigmoid_like``), ``Swish`` (x·sigmoid(x), PyTorch's SiLU), ``Step``, and ``Activation(name_or_callable)`` for
any activation ``kernels.FullyConnected`` knows (quadrature where there is no closed form).

Kernel rules: ``kernels.analytic.rules`` (the layer table), the compiler ``kernels.analytic.architecture``.
"""
from __future__ import annotations

import functools
import inspect
import math

from kernels import backend
from kernels.analytic import architecture, duals, rules
from kernels.analytic.base import AnalyticKernel, CPU_IMPLS, PARAMETERIZATIONS, cuda_replacements
from kernels.validation import check_choice, check_scalar

PADDINGS = ("VALID", "SAME", "CIRCULAR")
DROPOUT_MODES = ("train", "test")
# neural-tangents layers with no counterpart here (each has a kernel in neural-tangents, not yet in lazykit)
NOT_PORTED = ("ConvTranspose", "ConvLocal", "LayerNorm", "GlobalSelfAttention", "FanInConcat", "FanInProd",
              "Aggregate", "DotGeneral", "ImageResize", "Index", "Elementwise", "Sign", "Gabor", "ExpNormalized",
              "Hermite", "Monomial", "RectifiedMonomial", "Polynomial", "repeat", "shape_as_kernel")


# ----------------------------------------------------------------------------------------------- the kernel object
def _freeze(value):
    """A hashable copy of a spec (dicts as sorted item tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _code(node) -> str:
    """The stax expression that builds ``node``."""
    name, kwargs, children = node
    args = [_code(c) for c in children] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"stax.{name}({', '.join(args)})"


class StaxKernel(AnalyticKernel):
    """The NNGP and NTK of a stax network (built by the functions of ``kernels.stax``).

    ``spec``: the network as nested nodes ``(name, kwargs, children)`` (a ``StaxKernel``, or the JSON form
    ``[name, kwargs]`` / ``[name, kwargs, [children...]]`` with neural-tangents' layer and argument names).
    ``name``: a label shown in the repr (``kernels.infinite_width`` says there what it substituted).
    ``device``, ``dtype``, ``block_size`` (inputs per tile side; None: from ``memory_budget`` bytes per tile),
    ``n_jobs``, ``cpu_impl`` as for ``kernels.Convolutional``: the fused CPU loops and CUDA kernels run where the
    network has their shape (``kernels.analytic.rules.fused_shape``), the reference rule chain everywhere else.
    Change options with ``set_params``; the options of layers inside a composition are ignored.
    """

    _ndim = None   # vectors (N, d) or images (N, C, H, W): the network says which it accepts
    _param_names = ("spec", "name", "device", "dtype", "block_size", "n_jobs", "memory_budget", "cpu_impl")

    def __init__(self, spec, *, name=None, device=None, dtype=None, block_size=None, n_jobs=None,
                 memory_budget=2 ** 28, cpu_impl="auto"):
        self.spec = _node_of(spec, "spec")
        self._set_options(name, device, dtype, block_size, n_jobs, memory_budget, cpu_impl)

    @classmethod
    def _of(cls, node):
        """A kernel for an already validated node, with the default options."""
        kernel = cls.__new__(cls)
        kernel.spec = node
        kernel._set_options(None, None, None, None, None, 2 ** 28, "auto")
        return kernel

    def _set_options(self, name, device, dtype, block_size, n_jobs, memory_budget, cpu_impl):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be None or a string, got {type(name).__name__}")
        self.name, self.device, self.dtype, self.block_size = name, device, dtype, block_size
        self.n_jobs, self.memory_budget, self.cpu_impl = n_jobs, memory_budget, cpu_impl
        check_scalar(block_size, "block_size", int, min_val=1, allow_none="automatic")
        check_scalar(n_jobs, "n_jobs", int, min_val=1, allow_none="all cores")
        check_scalar(memory_budget, "memory_budget", int, min_val=1)
        if device is not None:
            backend.resolve_device(device)
        if dtype is not None:
            backend.resolve_dtype(dtype, "cpu")
        check_choice(cpu_impl, "cpu_impl", CPU_IMPLS)

    def __repr__(self):
        options = {k: v for k, v in self.get_params().items() if k != "spec"
                   and v != inspect.signature(StaxKernel.__init__).parameters[k].default}
        text = _code(self.spec)
        if options:
            text += f".set_params({', '.join(f'{k}={v!r}' for k, v in options.items())})"
        return text

    def __hash__(self):
        return hash((type(self).__name__, _freeze(self.get_params())))

    def __call__(self, x1, x2=None, get="ntk"):
        """neural-tangents' ``kernel_fn(x1, x2, get)``: "nngp" or "ntk" gives one array, a tuple of names a
        tuple. The default is the NTK (a kernel callable returns one matrix in lazykit, as
        ``KernelRegressor(kernel=...)`` expects; neural-tangents' ``get=None`` returns its Kernel record)."""
        names = (get,) if isinstance(get, str) else tuple(get)
        for n in names:
            check_choice(n, "get", ("nngp", "ntk"))
        nngp, ntk = self.kernels(x1, x2)
        outs = tuple({"nngp": nngp, "ntk": ntk}[n] for n in names)
        return outs[0] if isinstance(get, str) else outs

    # what AnalyticKernel asks of a kernel
    def network(self, *feature_shape):
        """The layer table (``kernels.analytic.rules.Network``) for inputs of this feature shape."""
        return architecture.compile_network(_complete(self.spec), tuple(feature_shape), _dual_of, self._describe)

    def check(self, image: bool):
        """Raise now what any input would raise (an activation on a non-Gaussian input, branches that cannot be
        summed, a layer on the wrong kind of input); sizes are checked on use. Returns self."""
        architecture.check_structure(_complete(self.spec), image, _dual_of, self._describe)
        return self

    def _describe(self, stack) -> str:
        """A failing node as errors name it: the code written, and the innermost module it came from (for
        ``kernels.infinite_width``)."""
        name, _, children, written = stack[-1]
        text = f"stax.{name}" if children else _code(written)
        where = getattr(self, "_modules", {})   # id(node) -> (node, description), set by kernels.infinite_width
        for node in reversed(stack):
            if id(node[3]) in where:
                return f"{text} (from {where[id(node[3])][1]})"
        return text

    def _inputs(self, x1, x2):
        x1, x2, was_torch = super()._inputs(x1, x2)
        if x1.ndim not in (2, 4):
            raise ValueError(f"x1 must be vectors (n, d) or images (n, C, H, W), got shape {tuple(x1.shape)}")
        return x1, x2, was_torch

    def _block(self, x1):
        if self.block_size is not None:
            return self.block_size
        if x1.ndim == 2:
            return 4096 if backend.device_of(x1) == "cuda" else 256
        network = self.network(*x1.shape[1:])
        itemsize = 4 if "32" in str(x1.dtype) else 8    # array-api-strict dtypes have no .itemsize
        per_pair = architecture.bytes_per_pair(network, tuple(x1.shape[1:]), itemsize)
        return max(1, int(math.sqrt(self.memory_budget / per_pair)))

    def _reference_tiles(self, xp, network, x1, x2, symmetric, want_ntk):
        return architecture.reference_tiles(xp, network, x1, x2, symmetric, want_ntk, cuda_replacements(xp, network))

    def _owner(self) -> str:
        return self.name or repr(self)

    def _depth_and_scale(self, network) -> tuple:
        weights = [layer for layer in rules.walk(network.layers) if layer.kind in ("dense", "conv")]
        return len(weights), max([layer.w_std for layer in weights], default=1.0)


# ----------------------------------------------------------------------------------------------- specs
_FUNCTIONS: dict = {}      # layer name -> the public function
_SIGNATURES: dict = {}     # layer name -> its signature (the defaults, stated once: in the function's def)
_DUALS: dict = {}          # activation name -> f(complete kwargs) -> Dual


def _normal(value):
    """Lists as tuples (JSON specs carry lists; neural-tangents turns them into tuples too)."""
    if isinstance(value, (list, tuple)):
        return tuple(_normal(v) for v in value)
    return value


def _node_of(layer, what: str):
    """The validated node of a StaxKernel or of a JSON-style spec ``[name, kwargs(, children)]``."""
    if isinstance(layer, StaxKernel):
        return layer.spec
    if not isinstance(layer, (list, tuple)) or len(layer) not in (2, 3) or not isinstance(layer[0], str) \
            or not isinstance(layer[1], dict):
        raise TypeError(f"{what} must be a stax layer (a StaxKernel from kernels.stax) or a spec [name, kwargs] / "
                        f"[name, kwargs, [children...]], got {layer!r}")
    name, kwargs = layer[0], layer[1]
    children = layer[2] if len(layer) == 3 else ()
    if name not in _FUNCTIONS:
        if name in NOT_PORTED:
            raise ValueError(f"{what}: neural-tangents' stax.{name} has no lazykit counterpart; for a network "
                             "with such layers, estimate its kernel with kernels.monte_carlo_kernel")
        raise ValueError(f"{what}: unknown stax layer {name!r}; valid: {', '.join(sorted(_FUNCTIONS))}")
    return _FUNCTIONS[name](*children, **kwargs).spec


def _complete(node):
    """The node with every argument bound (defaults from the layer function's signature), and the node as
    written (errors quote it): (name, kwargs, children, node)."""
    name, kwargs, children = node
    bound = _SIGNATURES[name].bind_partial(**kwargs)
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k != "layers"}
    return name, args, tuple(_complete(c) for c in children), node


def _dual_of(node):
    name, kwargs = node[0], node[1]
    make = _DUALS.get(name)
    return None if make is None else make(kwargs)


def _layer(fn=None, *, dual=None):
    """Register a stax layer function: calling it checks the arguments (``fn``'s body raises, naming the layer)
    and returns a StaxKernel of the node (name, the arguments given, children)."""
    if fn is None:
        return functools.partial(_layer, dual=dual)
    name, signature = fn.__name__, inspect.signature(fn)

    @functools.wraps(fn)
    def build(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"stax.{name}{signature}: {err}") from None
        given = dict(bound.arguments)
        children = tuple(_node_of(layer, f"stax.{name} layer {i}") for i, layer in enumerate(given.pop("layers", ())))
        given = {k: _normal(v) for k, v in given.items()}
        bound.apply_defaults()
        try:
            fn(*bound.args, **bound.kwargs)
        except (TypeError, ValueError) as err:
            raise type(err)(f"stax.{name}: {err}") from None
        return StaxKernel._of((name, given, children))

    _FUNCTIONS[name], _SIGNATURES[name] = build, signature
    if dual is not None:
        _DUALS[name] = dual
    return build


def __dir__():
    return sorted(set(globals()) | set(NOT_PORTED))


def __getattr__(name):
    if name in NOT_PORTED:
        raise AttributeError(f"neural-tangents' stax.{name} has no counterpart in kernels.stax; estimate the kernel "
                             "of such a network with kernels.monte_carlo_kernel")
    raise AttributeError(f"module 'kernels.stax' has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------- checks
def _std(value, name, none=None):
    # below 1e150: squares must be finite
    return check_scalar(value, name, float, min_val=0, max_val=1e150, allow_none=none)


def _positive_ints(value, name, count=2):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != count:
        raise ValueError(f"`{name}` must be {count} positive integers (along H, W), got {value!r}")
    for v in value:
        check_scalar(v, name + " entry", int, min_val=1)


def _axes(batch_axis=0, channel_axis=-1):
    if batch_axis != 0:
        raise ValueError(f"batch_axis must be 0 (lazykit's inputs are (N, ...)), got {batch_axis!r}")
    if channel_axis not in (-1, 1):
        raise ValueError("channel_axis must be -1 (neural-tangents' default, NHWC) or 1: both mean the channel "
                         f"axis, which lazykit's images (N, C, H, W) keep at 1; got {channel_axis!r}")


def _check_padding(padding):
    """A padding name, or explicit zero pads ((lo, hi), (lo, hi)) along (H, W) (lax's form, PyTorch's padding)."""
    if isinstance(padding, str):
        check_choice(padding, "padding", PADDINGS)
        return
    ok = isinstance(padding, tuple) and len(padding) == 2 and all(
        isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                     for v in p) for p in padding)
    if not ok:
        raise ValueError(f"`padding` must be one of {', '.join(PADDINGS)} or explicit zero pads ((lo, hi), (lo, hi)) "
                         f"along (H, W), got {padding!r}")


def _affine(W_std, b_std, parameterization, s):
    _std(W_std, "W_std")
    _std(b_std, "b_std", "no bias")
    check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    _positive_ints(s, "s")


def _scalars(**values):
    for name, value in values.items():
        check_scalar(value, name, float, min_val=-1e150, max_val=1e150, include_boundaries="neither")


# ----------------------------------------------------------------------------------------------- combinators
@_layer
def serial(*layers):
    """Layers applied one after the other."""


@_layer
def parallel(*layers):
    """One layer per branch (after ``FanOut``): branch i goes through ``layers[i]``."""


@_layer
def FanOut(num):
    """``num`` copies of the input, one per branch."""
    check_scalar(num, "num", int, min_val=1)


@_layer
def FanInSum():
    """The sum of the branches: K = Σ K_b, Θ = Σ Θ_b (independent weights, no cross terms); the branches must
    be Gaussian (end in Dense, Conv or pooling) and of one shape."""


@_layer
def Identity():
    """The input unchanged."""


# ----------------------------------------------------------------------------------------------- linear layers
@_layer
def Dense(out_dim, W_std=1., b_std=None, batch_axis=0, channel_axis=-1, parameterization='ntk', s=(1, 1)):
    """Fully connected layer (on images: per pixel, over channels). 'ntk': K ← W²K + b², Θ ← K_new + W²Θ;
    'standard': Θ ← n_in·K + W²Θ (+1 with a bias), n_in = input width / s[0]; output width out_dim·s[1].
    ``b_std=None``: no bias (in 'standard' ``b_std=0.`` still adds the +1 of a trained zero bias)."""
    check_scalar(out_dim, "out_dim", int, min_val=1)
    _affine(W_std, b_std, parameterization, s)
    _axes(batch_axis, channel_axis)


@_layer
def Conv(out_chan, filter_shape, strides=None, padding='VALID', W_std=1.0, b_std=None, dimension_numbers=None,
         parameterization='ntk', s=(1, 1)):
    """2-D convolution on (N, C, H, W) images: ``filter_shape`` (fh, fw), ``strides`` (None: 1), ``padding``
    'VALID', 'SAME' (lax's pads, the extra one at the end), 'CIRCULAR', or (lazykit, as lax and PyTorch)
    explicit zero pads ((lo, hi), (lo, hi)) along (H, W). Kernel: the aligned mean over the
    filter of every pixel pair, then the affine rule of ``Dense`` (fan-in = channels × fh × fw)."""
    check_scalar(out_chan, "out_chan", int, min_val=1)
    _positive_ints(filter_shape, "filter_shape")
    if strides is not None:
        _positive_ints(strides, "strides")
    _check_padding(_normal(padding))
    _affine(W_std, b_std, parameterization, s)
    if dimension_numbers is not None:
        raise ValueError("dimension_numbers must be None: lazykit's images are always (N, C, H, W) with filters "
                         f"(out, in, fh, fw); got {dimension_numbers!r}")


def _pool_checks(window_shape, strides, padding, batch_axis, channel_axis):
    _positive_ints(window_shape, "window_shape")
    if strides is not None:
        _positive_ints(strides, "strides")
    _check_padding(_normal(padding))
    _axes(batch_axis, channel_axis)


@_layer
def AvgPool(window_shape, strides=None, padding='VALID', normalize_edges=False, batch_axis=0, channel_axis=-1):
    """Average pooling. ``strides=None`` means 1 (neural-tangents' default, unlike PyTorch's kernel size).
    Divides by the window size, or with ``normalize_edges`` and 'SAME' (or explicit pads) by the real pixels in
    each window (PyTorch's ``count_include_pad=False``). ``padding`` as for ``Conv``."""
    _pool_checks(window_shape, strides, padding, batch_axis, channel_axis)
    if not isinstance(normalize_edges, bool):
        raise TypeError(f"normalize_edges must be a bool, got {normalize_edges!r}")


@_layer
def SumPool(window_shape, strides=None, padding='VALID', batch_axis=0, channel_axis=-1):
    """Sum pooling (AvgPool without the division)."""
    _pool_checks(window_shape, strides, padding, batch_axis, channel_axis)


@_layer
def GlobalAvgPool(batch_axis=0, channel_axis=-1):
    """Mean over all pixels: the kernel is the mean over all pixel pairs; (N, C, H, W) → (N, C)."""
    _axes(batch_axis, channel_axis)


@_layer
def GlobalSumPool(batch_axis=0, channel_axis=-1):
    """Sum over all pixels: the kernel is the sum over all pixel pairs."""
    _axes(batch_axis, channel_axis)


@_layer
def Flatten(batch_axis=0, batch_axis_out=0):
    """(N, C, H, W) → (N, C·H·W): the kernel is the mean over matching pixels (a following 'standard' Dense has
    fan-in C·H·W). Its output is not Gaussian: no activation directly after it."""
    if batch_axis != 0 or batch_axis_out != 0:
        raise ValueError(f"batch_axis and batch_axis_out must be 0, got {batch_axis!r}, {batch_axis_out!r}")


@_layer
def Dropout(rate, mode='train'):
    """Dropout with KEEP rate ``rate`` (neural-tangents' naming: rate=1 keeps everything; PyTorch's p is the
    drop rate, p = 1 − rate). 'train': the same-input, same-pixel entries of K and Θ grow by 1/rate on a
    same-input kernel (x2=None); 'test': the identity."""
    check_scalar(rate, "rate", float, min_val=0, max_val=1, include_boundaries="right")
    check_choice(mode, "mode", DROPOUT_MODES)


# ----------------------------------------------------------------------------------------------- activations
@_layer(dual=lambda kw: duals.abrelu(0.0, 1.0))
def Relu(do_stabilize=False):
    """max(x, 0) (arc-cosine kernel of order 1). ``do_stabilize`` is accepted (no effect in exact arithmetic)."""


@_layer(dual=lambda kw: duals.abrelu(kw["alpha"], 1.0))
def LeakyRelu(alpha, do_stabilize=False):
    """alpha·min(x, 0) + max(x, 0); ``alpha`` is required, as in neural-tangents."""
    _scalars(alpha=alpha)


@_layer(dual=lambda kw: duals.abrelu(-1.0, 1.0))
def Abs(do_stabilize=False):
    """|x|."""


@_layer(dual=lambda kw: duals.abrelu(kw["a"], kw["b"]))
def ABRelu(a, b, do_stabilize=False):
    """a·min(x, 0) + b·max(x, 0)."""
    _scalars(a=a, b=b)


@_layer(dual=lambda kw: duals.scaled_erf(kw["a"], kw["b"], kw["c"]))
def Erf(a=1., b=1., c=0.):
    """a·erf(b·x) + c."""
    _scalars(a=a, b=b, c=c)


@_layer(dual=lambda kw: duals.scaled_erf(0.5, 1 / 2.4020563531719796, 0.5))
def Sigmoid_like():   # noqa: N802 - neural-tangents' name
    """The logistic-like 0.5·erf(x/2.4020563531719796) + 0.5 (neural-tangents' Sigmoid_like)."""


@_layer(dual=lambda kw: duals.gelu_exact())
def Gelu(approximate=False):
    """x·Φ(x), the exact GELU kernel (neural-tangents: ``approximate`` only changes the finite forward pass)."""
    if not isinstance(approximate, bool):
        raise TypeError(f"approximate must be a bool, got {approximate!r}")


@_layer(dual=lambda kw: duals.sine(kw["a"], kw["b"], kw["c"]))
def Sin(a=1., b=1., c=0.):
    """a·sin(b·x + c)."""
    _scalars(a=a, b=b, c=c)


@_layer(dual=lambda kw: duals.sine(kw["a"], kw["b"], kw["c"] + math.pi / 2))
def Cos(a=1., b=1., c=0.):
    """a·cos(b·x + c)."""
    _scalars(a=a, b=b, c=c)


@_layer(dual=lambda kw: duals.rbf(kw["gamma"]))
def Rbf(gamma=1.0):
    """√2·sin(√(2γ)·x + π/4): its NNGP is the RBF kernel e^{−γ‖x − x'‖²} of the pre-activations."""
    check_scalar(gamma, "gamma", float, min_val=0, max_val=1e150, include_boundaries="neither")


@_layer(dual=lambda kw: duals.exponential(kw["a"], kw["b"]))
def Exp(a=1, b=1):
    """a·e^{b·x}."""
    _scalars(a=a, b=b)


@_layer(dual=lambda kw: duals.gaussian(kw["a"], kw["b"]))
def Gaussian(a=1, b=-1):
    """a·e^{b·x²}."""
    _scalars(a=a, b=b)


@_layer(dual=lambda kw: duals.numerical(kw["fn"], kw["df"]))
def ElementwiseNumerical(fn, deg, df=None):
    """Any elementwise ``fn`` (on arrays) by quadrature, its derivative ``df`` given or a 5-point difference;
    ``deg`` is accepted for neural-tangents' signature (lazykit's quadrature rule is fixed)."""
    if not callable(fn) or (df is not None and not callable(df)):
        raise TypeError(f"fn (and df, when given) must be callables on arrays, got {fn!r}, {df!r}")
    check_scalar(deg, "deg", int, min_val=1)


# lazykit's activations (not in neural-tangents)
@_layer(dual=lambda kw: duals.get_dual("tanh"))
def Tanh():
    """tanh(x) (quadrature)."""


@_layer(dual=lambda kw: duals.get_dual("softplus"))
def Softplus():
    """log(1 + eˣ) (quadrature)."""


@_layer(dual=lambda kw: duals.get_dual("sigmoid"))
def Sigmoid():
    """The logistic function 1/(1 + e⁻ˣ) (quadrature; neural-tangents' Sigmoid_like is an erf)."""


@_layer(dual=lambda kw: duals.get_dual("swish"))
def Swish():
    """x·sigmoid(x), PyTorch's SiLU (quadrature)."""


@_layer(dual=lambda kw: duals.get_dual("step"))
def Step():
    """The Heaviside step 1[x > 0] (arc-cosine kernel of order 0; its derivative is 0 almost everywhere)."""


@_layer(dual=lambda kw: duals.get_dual(kw["activation"], kw["negative_slope"]))
def Activation(activation, negative_slope=0.01):
    """Any activation of ``kernels.FullyConnected``: a name in ``kernels.ACTIVATIONS`` (closed form or
    quadrature, exactly as there) or an elementwise callable on arrays (quadrature)."""
    duals.get_dual(activation, negative_slope)


__all__ = ["StaxKernel", "PADDINGS", "DROPOUT_MODES", "NOT_PORTED"] + sorted(_FUNCTIONS)
