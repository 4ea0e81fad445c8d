"""``infinite_width(module)``: the NNGP and NTK of a PyTorch network at infinite width, as a ``kernels.stax`` kernel.

The module is read, not run: ``nn.Sequential`` (in order) and the layers below by type, and any module that
declares its own kernel through the *stax-layer protocol*: a method ``stax_layer(self, read)`` returning a
``kernels.stax`` layer, where ``read(name, init=None)`` converts the submodule ``name`` (a dotted path below
the module) with the same rules, ``init`` stating how that subtree was initialised. lazykit's own networks
(``nets.MLP``, ``nets.CNN``, ``nets.VGG``, ``nets.ResNet`` and their blocks) declare themselves this way; kernels
never import nets.

Layers read by type, each with the initialisation it had (Jacot et al. 2018; neural-tangents' conventions):

* ``nn.Linear`` → ``Dense``, ``nn.Conv2d`` → ``Conv`` (stride, int/tuple padding as explicit zero pads, 'same',
  'valid'; groups = dilation = 1, zero padding), in the 'standard' parameterization with PyTorch's default
  init: weights kaiming-uniform with a = √5, i.e. U(±1/√fan_in) of variance 1/(3·fan_in), so W_std = √(1/3);
  biases U(±1/√fan_in), so b_std = √(1/(3·fan_in)) (fan_in = inputs, or channels × filter area). The
  'standard' NTK depends on the widths: the module's own ``out_features`` / ``out_channels`` are used. Another
  init is stated with ``init={nn.Conv2d: dict(W_std=2 ** 0.5, b_std=0.0)}`` (a dict, or a function of the
  layer returning one; keys ``W_std``, ``b_std``, ``parameterization``); a uniform or any other zero-mean i.i.d.
  init of that variance has the same infinite-width kernel (central limit theorem);
* ``nn.ReLU`` → ``Relu``, ``nn.LeakyReLU`` → ``LeakyRelu(negative_slope)``, ``nn.GELU()`` → ``Gelu`` (closed
  form), ``nn.Tanh``, ``nn.SiLU``, ``nn.Sigmoid``, ``nn.Softplus()`` → lazykit's quadrature duals, and
  ``nn.GELU('tanh')``, ``nn.Softplus(beta≠1)``, ``nn.ELU``, ``nn.SELU``, ``nn.CELU``, ``nn.Mish``,
  ``nn.Softsign``, ``nn.LogSigmoid``, ``nn.Tanhshrink`` by quadrature of the module itself;
* ``nn.AvgPool2d`` → ``AvgPool`` (PyTorch's stride default = the kernel size; ``count_include_pad=False`` →
  ``normalize_edges``), ``nn.AdaptiveAvgPool2d(1)`` → ``GlobalAvgPool``, ``nn.Flatten()`` → ``Flatten``,
  ``nn.Identity`` → ``Identity``, ``nn.Dropout*`` → ``Identity`` (the kernel of the function the network
  computes in eval mode, the one ``kernels.empirical_ntk`` differentiates).

Anything else (``nn.MaxPool2d``, ``nn.BatchNorm*``, attention, a module with its own ``forward`` and no
``stax_layer``) has no analytic kernel here: the error names its class and its path in the module tree and
points to ``kernels.monte_carlo_kernel``. ``max_pool="avg"`` replaces every ``nn.MaxPool2d`` by an average pool of
the same window, stride and padding — a different network, stated in the kernel's name.
"""
from __future__ import annotations

import functools
import math

from kernels import backend, stax
from kernels.stax import StaxKernel
from kernels.validation import check_choice

MAX_POOL_OPTIONS = (None, "avg")
INIT_KEYS = ("W_std", "b_std", "parameterization")


class NoAnalyticKernelError(ValueError):
    """A module (or one of its layers) has no closed-form infinite-width kernel."""


def infinite_width(module, *, init=None, max_pool=None, device=None, dtype=None, block_size=None, n_jobs=None,
                   memory_budget=2 ** 28, cpu_impl="auto") -> StaxKernel:
    """The infinite-width NNGP and NTK of ``module`` (a ``torch.nn.Module``), as a ``kernels.stax`` kernel.

    ``init``: {layer class: dict(W_std=, b_std=, parameterization=) or f(layer) -> dict}, the initialisation
    of those layers when it is not PyTorch's default (it overrides what a lazykit net declares). ``max_pool``:
    None (a MaxPool2d is an error) or "avg" (replaced by an average pool, said in the kernel's name). The other
    arguments are the kernel's options (``kernels.stax.StaxKernel``). Structural errors (an activation on a
    non-Gaussian input, a residual sum of a post-activation input) are raised here; sizes on first use.
    """
    import torch
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_choice(max_pool, "max_pool", MAX_POOL_OPTIONS)
    user_init = _check_init(init)
    context = _Context(user_init, max_pool)
    layer = context.convert(module, "", {})
    name = f"infinite_width({type(module).__name__})"
    if context.substituted:
        name += (f" with MaxPool2d replaced by AvgPool (same window, stride and padding) at "
                 f"{', '.join(context.substituted)}")
    kernel = StaxKernel._of(layer.spec)
    kernel._set_options(name, device, dtype, block_size, n_jobs, memory_budget, cpu_impl)
    kernel._modules = context.where
    image = _first_weight_layer(layer.spec) == "Conv"
    if _first_weight_layer(layer.spec) is not None:
        kernel.check(image)
    return kernel


def _first_weight_layer(node):
    name, _, children = node
    if name in ("Dense", "Conv"):
        return name
    for child in children:
        found = _first_weight_layer(child)
        if found:
            return found
    return None


def _check_init(init) -> dict:
    import torch
    if init is None:
        return {}
    if not isinstance(init, dict):
        raise TypeError(f"init must be a dict {{layer class: dict(W_std=, b_std=) or f(layer) -> dict}}, got "
                        f"{type(init).__name__}")
    for kind, value in init.items():
        if not (isinstance(kind, type) and issubclass(kind, torch.nn.Module)):
            raise TypeError(f"init keys must be torch layer classes such as torch.nn.Conv2d, got {kind!r}")
        if not (callable(value) or isinstance(value, dict)):
            raise TypeError(f"init[{kind.__name__}] must be a dict or a function of the layer, got {value!r}")
    return dict(init)


class _Read:
    """The ``read`` handed to a module's ``stax_layer``: converts its submodules by name."""

    def __init__(self, context, module, path: str, init: dict):
        self._context, self._module, self._path, self._init = context, module, path, init

    def __call__(self, name: str, init=None):
        if not isinstance(name, str):
            raise TypeError(f"read takes the name of a submodule (a dotted path below {self._where()}), got "
                            f"{name!r}")
        try:
            sub = self._module.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{self._where()} has no submodule {name!r}") from None
        path = f"{self._path}.{name}" if self._path else name
        return self._context.convert(sub, path, {**self._init, **_check_init(init)})

    def _where(self):
        return f"'{self._path}' ({type(self._module).__name__})" if self._path else type(self._module).__name__


class _Context:
    def __init__(self, user_init: dict, max_pool):
        self.user_init, self.max_pool = user_init, max_pool
        self.substituted = []
        self.where = {}          # id(node) -> (node, "path (Class)"): the module each spec node came from

    def convert(self, module, path: str, declared_init: dict) -> StaxKernel:
        import torch
        protocol = getattr(module, "stax_layer", None)
        if callable(protocol):
            layer = protocol(_Read(self, module, path, declared_init))
            if not isinstance(layer, StaxKernel):
                raise TypeError(f"{type(module).__name__}.stax_layer must return a kernels.stax layer, got "
                                f"{type(layer).__name__}")
        elif isinstance(module, torch.nn.Sequential) and type(module).forward is torch.nn.Sequential.forward:
            layer = stax.serial(*[self.convert(child, f"{path}.{name}" if path else name, declared_init)
                                  for name, child in module.named_children()])
        else:
            layer = self.by_type(module, path, declared_init)
        self.where[id(layer.spec)] = (layer.spec, f"module '{path}' ({type(module).__name__})" if path
                                      else f"the root module ({type(module).__name__})")
        return layer

    # ------------------------------------------------------------------------------------------- by type
    def init_of(self, module, declared: dict, fan_in: int) -> dict:
        """W_std, b_std, parameterization of a Linear/Conv2d: the user's init, else the declared one, else
        PyTorch's default."""
        for table in (self.user_init, declared):
            for kind, value in table.items():
                if isinstance(module, kind):
                    values = dict(value(module) if callable(value) else value)
                    unknown = set(values) - set(INIT_KEYS)
                    if unknown:
                        raise ValueError(f"init for {kind.__name__}: unknown keys {sorted(unknown)}; valid: "
                                         f"{', '.join(INIT_KEYS)}")
                    values.setdefault("parameterization", "standard")
                    values.setdefault("b_std", None if module.bias is None else 0.0)
                    if "W_std" not in values:
                        raise ValueError(f"init for {kind.__name__} must give W_std")
                    if module.bias is None:
                        values["b_std"] = None
                    return values
        return {"W_std": math.sqrt(1 / 3), "parameterization": "standard",
                "b_std": None if module.bias is None else math.sqrt(1 / (3 * fan_in))}

    def by_type(self, module, path, declared):
        from torch import nn
        where = f"{type(module).__name__} at '{path}'" if path else f"{type(module).__name__} (the root module)"
        if isinstance(module, nn.Linear):
            return stax.Dense(module.out_features, **self.init_of(module, declared, module.in_features))
        if isinstance(module, nn.Conv2d):
            return self.conv(module, where, declared)
        table, quadrature = _activation_tables()
        if type(module) in table:
            return table[type(module)](module)
        if type(module) in quadrature:
            return stax.Activation(TorchElementwise(module))
        if isinstance(module, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
            return stax.Identity()
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise NoAnalyticKernelError(f"{where}: only Flatten(start_dim=1, end_dim=-1) has a kernel here, got "
                                            f"start_dim={module.start_dim}, end_dim={module.end_dim}")
            return stax.Flatten()
        if isinstance(module, nn.AvgPool2d):
            return self.avg_pool(module, where)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            size = module.output_size
            if size not in (1, (1, 1)):
                raise NoAnalyticKernelError(f"{where}: only AdaptiveAvgPool2d(1) (global average pooling) has a "
                                            f"kernel here, got output_size={size!r}; "
                                            "use AvgPool2d or kernels.monte_carlo_kernel")
            return stax.GlobalAvgPool()
        if isinstance(module, nn.MaxPool2d) and self.max_pool == "avg":
            self.substituted.append(path or "the root module")
            return self.avg_pool(module, where)
        raise NoAnalyticKernelError(f"{where} has no analytic infinite-width kernel{_why(module)}. Estimate its "
                                    "kernel by Monte Carlo with kernels.monte_carlo_kernel(make_module, n_samples)")

    def conv(self, module, where, declared):
        if module.groups != 1 or tuple(module.dilation) != (1, 1):
            raise NoAnalyticKernelError(f"{where}: only groups=1, dilation=1 convolutions have a kernel here, got "
                                        f"groups={module.groups}, dilation={tuple(module.dilation)}; use "
                                        "kernels.monte_carlo_kernel")
        if module.padding_mode != "zeros":
            raise NoAnalyticKernelError(f"{where}: only zero padding (padding_mode='zeros') has a kernel here, got "
                                        f"{module.padding_mode!r}")
        window, strides = tuple(module.kernel_size), tuple(module.stride)
        padding = _padding(module.padding, window, strides)
        fan_in = module.in_channels * window[0] * window[1]
        return stax.Conv(module.out_channels, window, strides=strides, padding=padding,
                         **self.init_of(module, declared, fan_in))

    def avg_pool(self, module, where):
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)   # noqa: E731
        window = pair(module.kernel_size)
        strides = pair(module.stride if module.stride is not None else module.kernel_size)
        if getattr(module, "ceil_mode", False):
            raise NoAnalyticKernelError(f"{where}: ceil_mode=True has no kernel here (windows past the edge)")
        if getattr(module, "divisor_override", None) is not None:
            raise NoAnalyticKernelError(f"{where}: divisor_override has no kernel here")
        if tuple(pair(getattr(module, "dilation", 1))) != (1, 1):
            raise NoAnalyticKernelError(f"{where}: dilation has no kernel here")
        padding = _padding(pair(module.padding), window, strides, pool=True)
        edges = not getattr(module, "count_include_pad", True)
        return stax.AvgPool(window, strides=strides, padding=padding, normalize_edges=edges)


def _padding(padding, window, strides, pool=False):
    """PyTorch's padding as the kernel's: 'valid' → 'VALID', 'same' → 'SAME' (stride 1: the same lo/hi as lax),
    symmetric ints → 'SAME' where they are lax's SAME pads at stride 1, 'VALID' when 0, else explicit pads."""
    if isinstance(padding, str):
        return {"valid": "VALID", "same": "SAME"}[padding]
    pads = tuple(int(p) for p in padding)
    if all(p == 0 for p in pads):
        return "VALID"
    if not pool and all(s == 1 and f % 2 == 1 and p == f // 2 for p, f, s in zip(pads, window, strides)):
        return "SAME"
    return tuple((p, p) for p in pads)


def _why(module) -> str:
    from torch import nn
    name = type(module).__name__
    if isinstance(module, nn.MaxPool2d):
        return (" (a max over a window is not Gaussian-closed; pass max_pool='avg' to replace every MaxPool2d by an "
                "average pool of the same window and stride — a different network, named in the kernel)")
    if name.startswith("BatchNorm") or name.startswith("LayerNorm") or name.startswith("GroupNorm"):
        return (" (normalisation layers have no kernel here; build the network without them, e.g. "
                "nets.VGG(batch_norm=False))")
    if "Attention" in name:
        return " (attention has no kernel here)"
    if list(module.children()) or type(module).forward is not nn.Module.forward:
        return (" (a module with its own forward is read only through a stax_layer(read) method returning its "
                "kernels.stax layer; nn.Sequential and the layers listed in kernels.infinite_width are read by type)")
    return ""


class TorchElementwise:
    """An elementwise torch module as a function on arrays (for quadrature duals); compares by its repr."""

    def __init__(self, module):
        self.module = module
        self.__name__ = f"torch.nn.{module!r}"

    def __call__(self, x):
        import torch
        with torch.no_grad():
            return backend.from_torch(self.module(backend.to_torch(x)))

    def get_params(self, deep: bool = True) -> dict:
        return {"module": repr(self.module)}

    def __repr__(self):
        return self.__name__

    def __eq__(self, other):
        return type(other) is type(self) and repr(other.module) == repr(self.module)

    def __hash__(self):
        return hash(repr(self.module))


@functools.lru_cache(maxsize=1)
def _activation_tables():
    """({module class: f(module) -> stax layer}, module classes read by quadrature of the module itself)."""
    from torch import nn

    def gelu(m):
        if m.approximate == "none":
            return stax.Gelu()
        return stax.Activation(TorchElementwise(m))

    def softplus(m):
        return stax.Softplus() if m.beta == 1 else stax.Activation(TorchElementwise(m))

    table = {nn.ReLU: lambda m: stax.Relu(), nn.LeakyReLU: lambda m: stax.LeakyRelu(m.negative_slope),
             nn.Tanh: lambda m: stax.Tanh(), nn.SiLU: lambda m: stax.Swish(), nn.Sigmoid: lambda m: stax.Sigmoid(),
             nn.GELU: gelu, nn.Softplus: softplus}
    quadrature = (nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink)
    return table, quadrature
