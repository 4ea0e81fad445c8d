"""The layers the structured-derivatives path of ``kernels.empirical_ntk`` handles, and the recording of their
calls in a forward pass.

A supported layer is an nn.Linear, an nn.Conv2d (groups = 1, zero padding, any stride or dilation) or any module
that declares itself a scaled linear or convolution layer through ``structured_ntk()`` (the protocol in
``kernels.empirical``'s docstring). A ``Site`` knows a layer's fan-in/fan-out and how to cut its input into
patches p_s and its output gradient into signals g_s; a ``Trace`` runs the model once with every call of the
supported layers recorded by forward hooks.
"""
from __future__ import annotations

import math
import numbers

import torch

from kernels.validation import check_scalar

CHUNK_ELEMENTS = 2 ** 22  # unfolded convolution patches held at once (per chunk of samples)


class Site:
    """A supported layer: y = ws·W ⋆ p + bs·b (``kind`` "linear" or "conv2d"; ws = bs = 1 for nn.Linear and
    nn.Conv2d). ``weight`` / ``bias`` say which of its parameters it handles (trainable, and used only through
    this layer)."""

    def __init__(self, module, kind, weight_scale, bias_scale, stride=None, padding=None, dilation=None):
        self.module, self.kind = module, kind
        self.weight_scale, self.bias_scale = weight_scale, bias_scale
        self.weight = module.weight.requires_grad
        self.bias = module.bias is not None and module.bias.requires_grad
        shape = module.weight.shape
        self.fan_out, self.fan_in = shape[0], math.prod(shape[1:])
        if kind == "conv2d":
            self.kernel_size, self.stride, self.dilation = tuple(shape[2:]), stride, dilation
            if padding == "same":  # total d·(k − 1) per axis, the odd pixel at the end (as torch)
                total = [d * (k - 1) for k, d in zip(self.kernel_size, dilation)]
                padding = [(t // 2, t - t // 2) for t in total]
            else:
                padding = [(0, 0)] * 2 if padding == "valid" else [(p, p) for p in padding]
            self.pad = (*padding[1], *padding[0])  # F.pad order: (left, right, top, bottom)

    def params(self):
        return [p for p, used in ((self.module.weight, self.weight), (self.module.bias, self.bias)) if used]

    def positions(self, y):
        """Positions per sample at which the layer was applied (spatial positions / leading extra axes)."""
        return y[0].numel() // self.fan_out

    def patches(self, a):
        """(n, K, S) input patches p_s, ordered like ``weight.reshape(C, K)``."""
        n = a.shape[0]
        if self.kind == "linear":
            return a.reshape(n, -1, self.fan_in).transpose(1, 2)
        if any(self.pad):
            a = torch.nn.functional.pad(a, self.pad)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        _, c, h, w = a.shape
        ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        sn, sc, sy, sx = a.stride()
        # patch[n, c, i, j, y, x] = a[n, c, y·sh + i·dh, x·sw + j·dw] as a strided view, copied once by reshape
        # (same layout as F.unfold, which is much slower on the CPU)
        view = a.as_strided((n, c, kh, kw, ho, wo), (sn, sc, sy * dh, sx * dw, sy * sh, sx * sw),
                            a.storage_offset())
        return view.reshape(n, c * kh * kw, ho * wo)

    def signals(self, g):
        """(n, C, S) output gradients g_s."""
        n = g.shape[0]
        if self.kind == "linear":
            return g.reshape(n, -1, self.fan_out).transpose(1, 2)
        return g.reshape(n, self.fan_out, -1)


def site_spec(module):
    """(kind, weight_scale, bias_scale[, stride, padding, dilation]) of a supported layer, else None: a module
    declaring ``structured_ntk()`` (validated), or a plain nn.Linear / nn.Conv2d (groups 1, zero padding)."""
    nn = torch.nn
    if callable(getattr(module, "structured_ntk", None)):
        return _checked_declaration(module, module.structured_ntk())
    if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return ("linear", 1.0, 1.0)
    if (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
            and type(module)._conv_forward is nn.Conv2d._conv_forward
            and module.groups == 1 and module.padding_mode == "zeros"):
        return ("conv2d", 1.0, 1.0, module.stride, module.padding, module.dilation)
    return None


def _checked_declaration(module, spec):
    """A ``structured_ntk()`` declaration with its scales as floats and stride/padding/dilation as pairs."""
    name = f"{type(module).__name__}.structured_ntk()"
    forms = ('("linear", weight_scale, bias_scale) or ("conv2d", weight_scale, bias_scale, stride, padding, '
             'dilation)')
    if not isinstance(spec, tuple) or not spec or spec[0] not in ("linear", "conv2d") \
            or len(spec) != (3 if spec[0] == "linear" else 6):
        raise TypeError(f"{name} must return {forms}, got {spec!r}")
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    ndim = 2 if spec[0] == "linear" else 4
    if not torch.is_tensor(weight) or weight.ndim != ndim:
        raise TypeError(f"{name} declares {spec[0]!r}, so the module needs a {ndim}-d tensor attribute `weight`, "
                        f"got {type(weight).__name__ if not torch.is_tensor(weight) else tuple(weight.shape)}")
    if bias is not None and (not torch.is_tensor(bias) or tuple(bias.shape) != (weight.shape[0],)):
        raise TypeError(f"{name}: `bias` must be None or a tensor of shape ({weight.shape[0]},), got "
                        f"{type(bias).__name__ if not torch.is_tensor(bias) else tuple(bias.shape)}")
    scales = []
    for value, what in ((spec[1], "weight_scale"), (spec[2], "bias_scale")):
        if value is None and what == "bias_scale" and bias is None:
            value = 0.0
        try:
            scales.append(check_scalar(value, what, float))
        except ValueError as err:
            raise type(err)(f"{name}: {err}") from None
    if spec[0] == "linear":
        return ("linear", *scales)
    stride, padding, dilation = (_pair(spec[3], name, "stride", 1), spec[4] if spec[4] in ("same", "valid")
                                 else _pair(spec[4], name, "padding", 0), _pair(spec[5], name, "dilation", 1))
    if padding == "same" and stride != (1, 1):
        raise ValueError(f"{name}: padding='same' needs stride 1 (as in torch), got stride {stride}")
    return ("conv2d", *scales, stride, padding, dilation)


def _pair(value, name, what, least):
    """An int or a pair of ints >= ``least`` as a pair."""
    if isinstance(value, numbers.Integral):
        pair = (value, value)
    else:
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least for v in pair):
        valid = "an int, a pair of ints or 'same'/'valid'" if what == "padding" else "an int or a pair of ints"
        raise ValueError(f"{name}: {what} must be {valid} (each ≥ {least}), got {value!r}")
    return tuple(int(v) for v in pair)


class Record:
    """One call of a supported layer: its input ``a`` and output ``y`` (with their versions, to detect later
    in-place changes)."""

    def __init__(self, a, y):
        self.a, self.y = a, y
        self.versions = (a._version, y._version)

    def modified(self):
        return (self.a._version, self.y._version) != self.versions


class Trace:
    """One forward pass of a block with every call of the supported layers recorded.

    With ``clone`` (needed when the model later changes a layer's input or output in place, e.g.
    ``ReLU(inplace=True)``) the input is copied and the model continues with a copy of the output.
    """

    def __init__(self, model, x, sites, clone):
        self.n, self.sites = len(x), sites
        self.records = {site: [] for site in sites}
        self._patch_cache = {}

        def hook_for(site):
            def hook(module, args, y):
                a = args[0].detach()
                self.records[site].append(Record(a.clone() if clone else a, y))
                return y.clone() if clone else None
            return hook

        handles = [site.module.register_forward_hook(hook_for(site)) for site in sites]
        try:
            with torch.enable_grad():
                self.out = out = model(x)
                valid = torch.is_tensor(out) and out.ndim in (1, 2) and out.shape[0] == self.n
                self.f = out.reshape(self.n, -1) if valid else None  # (n, O)
        finally:
            for handle in handles:
                handle.remove()

    def signals(self, outputs):
        """{site: [(n, Q, C, S) output gradients ∂f_o/∂y for o in ``outputs``, one per call]}."""
        ys = [rec.y for site in self.sites for rec in self.records[site]]
        wanted = [i for i, y in enumerate(ys) if y.requires_grad]
        per_output = []
        for o in outputs:
            grads = [None] * len(ys)
            if wanted and self.f.requires_grad:
                with torch.enable_grad():
                    found = torch.autograd.grad(self.f[:, o].sum(), [ys[i] for i in wanted],
                                                retain_graph=True, allow_unused=True)
                for i, g in zip(wanted, found):
                    grads[i] = g
            per_output.append([torch.zeros_like(y) if g is None else g for y, g in zip(ys, grads)])
        result, k = {}, 0
        for site in self.sites:
            result[site] = []
            for _ in self.records[site]:
                if len(per_output) == 1:
                    result[site].append(site.signals(per_output[0][k]).unsqueeze(1))
                else:
                    result[site].append(torch.stack([site.signals(gs[k]) for gs in per_output], dim=1))
                k += 1
        return result

    def patches(self, site, call, lo, hi):
        """Input patches (hi − lo, K, S) of samples lo:hi for one call; cached when the block's patches are small."""
        rec = self.records[site][call]
        if site.kind == "linear":
            return site.patches(rec.a[lo:hi])
        key = (site, call)
        if key not in self._patch_cache:
            size = self.n * site.fan_in * site.positions(rec.y)
            if size > CHUNK_ELEMENTS:
                return site.patches(rec.a[lo:hi])
            self._patch_cache[key] = site.patches(rec.a)
        return self._patch_cache[key][lo:hi]
