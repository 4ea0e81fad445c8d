"""The α-scaled lazy model and the exact linearization of a model around its initialisation.

Chizat, Oyallon & Bach, "On Lazy Training in Differentiable Programming" (NeurIPS 2019), §1.1–2:
  lazy model   h_α(w) = α · (h(w) − h(w₀)),         trained on R(h_α)/α²  (`nets.train` applies the 1/α²),
  linearized   h̄(w)   = h(w₀) + Dh(w₀)(w − w₀).
"""
import contextlib
import copy
import math

import torch
from torch import nn
from torch.func import functional_call, jvp

from kernels import check_scalar

from nets.forward_ad import FORWARD_AD


def _frozen_copy(model):
    frozen = copy.deepcopy(model)
    frozen.requires_grad_(False)
    return frozen


class Lazy(nn.Module):
    """forward(x) = α · (model(x) − model_at_init(x)); `model` is trained, `model_at_init` is a frozen copy.

    The output is exactly zero at initialisation. The frozen forward runs under `torch.no_grad`, so it keeps
    no activations for backward: memory for backward is that of `model` alone. `scale` is the paper's α.
    """

    def __init__(self, model, scale=1.0):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        # the paper's α; training divides the loss by α², which must stay finite and non-zero in the model's dtype
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
        limit = math.sqrt(torch.finfo(dtype).max)
        self.scale = check_scalar(scale, "scale", float, min_val=1 / limit, max_val=limit,
                                  include_boundaries="neither")
        self.model = model
        self.model_at_init = _frozen_copy(model)
        self._cache = None

    def _frozen_versions(self):
        return tuple(t._version for t in (*self.model_at_init.parameters(), *self.model_at_init.buffers()))

    @contextlib.contextmanager
    def cache_initial(self, x):
        """Within the block, forward(x) for this very tensor `x` reuses one evaluation of model_at_init(x).

        For full-batch training (`nets.train` uses it when the inputs are fixed), where the frozen forward is
        otherwise repeated at every step. Exact: the cache is used only while `x` is the same tensor object
        with the same in-place version counter and the frozen copy's parameters and buffers are unmodified
        (their version counters); any other input is evaluated afresh. The frozen network must be
        deterministic (no dropout in training mode). The cache is dropped on leaving the block.
        """
        with torch.no_grad():
            initial = self.model_at_init(x)
        self._cache = (x, x._version, self._frozen_versions(), initial)
        try:
            yield self
        finally:
            self._cache = None

    def _initial(self, x):
        cache = getattr(self, "_cache", None)
        if (cache is not None and x is cache[0] and x._version == cache[1]
                and self._frozen_versions() == cache[2]):
            return cache[3]
        with torch.no_grad():
            return self.model_at_init(x)

    def forward(self, x):
        return self.scale * (self.model(x) - self._initial(x))

    def extra_repr(self):
        return f"scale={self.scale:g}"


class Linearized(nn.Module):
    """forward(x) = f(w₀)(x) + J(w₀)(w − w₀) for the module f = `model`, computed by one `torch.func.jvp`.

    Only the parameters of `model` that require grad are linearized: they become this module's trainable
    parameters `params` (initialised at w₀; the frozen copy's parameters have requires_grad=False); the
    others (e.g. the frozen copy inside a `Lazy`) stay fixed. The module keeps its own frozen copy of `model`
    at w₀, so training `model` afterwards does not move the linearization point.
    The output is affine in the parameters, exactly (forward-mode AD, no finite differences).
    Buffers (e.g. BatchNorm statistics) are used as they are in the copy; put `model` in eval mode first if it
    has any that training would update.
    """

    def __init__(self, model):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        if not self.names:
            raise ValueError("model has no parameter that requires grad: nothing to linearize")
        self.model_at_init = _frozen_copy(model)
        initial = dict(self.model_at_init.named_parameters())
        for i, name in enumerate(self.names):
            self.register_buffer(f"w0_{i}", initial[name].detach().clone())
        self.params = nn.ParameterList([nn.Parameter(initial[name].detach().clone()) for name in self.names])

    def initial_parameters(self):
        """{name: w₀ tensor} for the linearized parameters (names as in the wrapped model)."""
        return {name: getattr(self, f"w0_{i}") for i, name in enumerate(self.names)}

    def current_parameters(self):
        """{name: w tensor} for the linearized parameters (names as in the wrapped model)."""
        return dict(zip(self.names, self.params))

    def forward(self, x):
        primals = self.initial_parameters()
        tangents = {name: w - primals[name] for name, w in self.current_parameters().items()}

        def at(params):
            return functional_call(self.model_at_init, params, (x,))

        with FORWARD_AD:
            output, directional = jvp(at, (primals,), (tangents,))
        return output + directional
