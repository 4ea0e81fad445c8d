"""Empirical neural tangent kernel of any ``torch.nn.Module`` with a batch-first output (N, O) or (N,).

    Θ(x, x')_{oo'} = Σ_w ∂f_o(x)/∂w · ∂f_{o'}(x')/∂w        (sum over the trainable parameters w)

``output="full"`` returns Θ as (n1, n2, O, O); ``output="mean"`` returns (1/O)·Σ_o Θ_oo, shape (n1, n2)
(neural-tangents' ``trace_axes`` convention, GUIDE §2). Methods (Novak et al. 2022, "Fast Finite Width Neural
Tangent Kernel", ICML):

- "jacobian": per-sample Jacobians (``torch.func.vmap(jacrev)``), then Θ = J₁ J₂ᵀ.
- "ntvp": NTK-vector products; column (x'_m, o') of Θ is the ``jvp`` on x₁ of the ``vjp`` of the one-hot
  cotangent e_{m,o'} on x₂. Never forms J₁.
- "structured": structured derivatives for nn.Linear, nn.Conv2d (groups = 1, zero padding, any stride or
  dilation) and any module that declares itself a scaled linear or convolution layer (the protocol below). A
  layer y = W·p + b, applied at positions s to input patches p_s (one position for a dense layer on
  (N, K) inputs, the unfolded patches for a convolution), has ∂f_o/∂W = Σ_s g_{o,s} p_sᵀ with g = ∂f_o/∂y, so
  its contribution is Σ_{s,s'} (g_{o,s}·g'_{o',s'}) (p_s·p'_{s'} + [bias]). For a dense layer on (N, K) inputs
  this is the elementwise product of the Gram matrices (P P'ᵀ + 1)⊙(G G'ᵀ) ("gram" order); for a convolution
  with many positions the per-sample weight gradients G_o P are formed one layer and one output at a time and
  contracted ("jacobian" order) — whichever costs fewer FLOPs. Layer inputs are recorded by forward hooks and
  the output-gradients g come from one backward pass per output, so anything between the layers (activations,
  pooling, flatten, residual additions, normalisation) is handled by autograd. Parameters of any other layer
  go through "jacobian", restricted to those parameters.
- "auto": "structured" when every trainable parameter sits in a supported layer (plain or declared); otherwise
  whichever of "jacobian" and "ntvp" has the smaller estimated cost, with F = forward FLOPs per sample
  (``torch.utils.flop_counter``), P = trainable parameters, b₁, b₂ = block sizes, k = 1 ("mean") or 2 ("full"):
  jacobian ≈ 3·F·O·(b₁ + b₂) + 2·b₁·b₂·O^k·P,  ntvp ≈ 3·F·O·b₂·(b₁ + b₂).

Train vs eval: Θ is the kernel of the per-sample function x ↦ f(x), which BatchNorm in training mode (batch
statistics) and Dropout (randomness) do not define. The model is therefore evaluated in eval mode: ``model.eval()``
is applied for the computation and every submodule's ``training`` flag is restored afterwards. Buffers
(BatchNorm running statistics) are read, never updated or differentiated.

Structured-layer protocol: a module with parameters ``weight`` and ``bias`` (a Parameter or None) and a method
``structured_ntk(self)`` returning

    ("linear", weight_scale, bias_scale)                               promises forward(x) == F.linear(x, ws·W, bs·b)
    ("conv2d", weight_scale, bias_scale, stride, padding, dilation)    promises forward(x) == F.conv2d(x, ws·W, bs·b,
                                                                           stride, padding, dilation)   (groups = 1)

(ws = weight_scale, bs = bias_scale: real numbers, bs may be None when there is no bias; stride, dilation: int or
pair; padding: int, pair, "same" or "valid") is handled like nn.Linear / nn.Conv2d. Since ∂y/∂W = ws·(∂y/∂W of
the plain layer) and ∂y/∂b = bs·(∂y/∂b of the plain layer), its contribution is the plain one with the weight
term multiplied by ws² and the bias term by bs² (the 'ntk' parameterization: ws = w_std/√fan_in, bs = b_std; see
``nets.models.Dense`` and ``nets.models.Conv``). The declaration is a promise that is not verified: a module
whose forward differs from the declared map gets a wrong kernel. A malformed declaration raises TypeError or
ValueError.

Assumptions of "structured" (checked where possible, else the layer falls back to "jacobian"): samples do not
interact (true in eval mode for standard architectures); a supported layer sees the batch as its leading
dimension; its parameters are used only through its own forward (checked by counting the parameter's uses in
the autograd graph) and are not shared with another module; it has no forward hooks or parametrizations.
"""
from __future__ import annotations

import math
import numbers

from kernels import backend
from kernels.validation import KernelOverflowError, check_choice, check_finite, check_scalar

METHODS = ("auto", "jacobian", "ntvp", "structured")
OUTPUTS = ("mean", "full")
_CHUNK_ELEMENTS = 2 ** 22  # unfolded convolution patches held at once (per chunk of samples)
_GRAM_ELEMENTS = 2 ** 26   # largest position-pair Gram tensor the "gram" order may form for a layer


def empirical_ntk(model, x1, x2=None, output="mean", method="auto", block_size=None):
    """Empirical NTK Θ(x1, x2) of ``model`` at its current parameters (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module mapping (N, ...) to (N, O) or (N,) (O = 1). Parameters with ``requires_grad=False``
        are excluded; the model is evaluated in eval mode, its training flags restored afterwards.
    x1, x2 : torch tensors or NumPy/CuPy arrays of shape (n, ...) with equal trailing shapes, converted to the
        model's device and dtype (a torch tensor on another device than the model is an error). ``x2=None``
        means x2 = x1 and the symmetric kernel is computed once per pair of blocks.
    output : "mean" → (n1, n2) array (1/O)·Σ_o Θ_oo;  "full" → (n1, n2, O, O) array.
    method : "auto" | "jacobian" | "ntvp" | "structured". "structured" covers nn.Linear, nn.Conv2d and modules
        that declare ``structured_ntk()`` (the module docstring's protocol; the declaration is a promise about
        their forward, not checked); "auto" uses it when every trainable parameter lies in such a layer.
    block_size : None (all inputs at once) or the largest number of inputs per block; memory then scales with
        the block, not with n1·n2, and the result equals the unblocked one up to rounding.

    Returns a NumPy array for a CPU model, a CuPy array (zero-copy through DLPack) for a CUDA model, in the
    model's parameter dtype.
    """
    torch = _torch()
    check_choice(output, "output", OUTPUTS)
    check_choice(method, "method", METHODS)
    check_scalar(block_size, "block_size", int, min_val=1, allow_none="all inputs at once")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no trainable parameters (every parameter has requires_grad=False); "
                         "the empirical NTK sums over trainable parameters, so it would be identically zero")
    device, dtype = _model_device_dtype(model)
    x1 = _as_input(x1, "x1", device, dtype)
    if x2 is not None:
        x2 = _as_input(x2, "x2", device, dtype)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(f"x1 and x2 must have the same trailing shape (all but the first axis), got "
                             f"x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}")
    training = {module: module.training for module in model.modules()}
    model.eval()
    try:
        plan = _probe(model, x1, trainable)
        n1, n2 = len(x1), len(x1 if x2 is None else x2)
        b1, b2 = min(block_size or n1, n1), min(block_size or n2, n2)
        method = _resolve_method(method, model, plan, b1, b2, output)
        full = output == "full"
        if method == "structured":
            def pair(xa, xb):
                return _structured_pair(model, plan, xa, xb, full)
        elif method == "jacobian":
            def pair(xa, xb):
                ja = _jacobian(model, xa, trainable)
                return _contract(ja, ja if xb is None else _jacobian(model, xb, trainable), full)
        else:
            def pair(xa, xb):
                return _ntvp_pair(model, xa, xa if xb is None else xb, trainable, plan.outputs, full, b2)
        with torch.no_grad():
            kernel = _blocked(pair, x1, x2, block_size, full, plan.outputs)
    finally:
        for module, flag in training.items():
            module.training = flag
    if not full and plan.outputs > 1:
        kernel = kernel / plan.outputs
    if not bool(torch.isfinite(kernel).all()):
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise ValueError(f"model has NaN or inf parameters ({', '.join(bad[:3])}); the NTK is undefined")
        top = max(float(x.abs().max()) for x in ((x1,) if x2 is None else (x1, x2)))
        raise KernelOverflowError(
            f"the empirical NTK overflowed {str(dtype).replace('torch.', '')} on x1/x2 (largest |x| = {top:.3g}): "
            "the model's outputs or gradients left the dtype's range; rescale x1/x2 (e.g. standardise them)"
            + (" or use a float64 model" if dtype == torch.float32 else ""))
    return backend.from_torch(kernel)


# ----------------------------------------------------------------------------------------------- validation
def _torch():
    import torch
    return torch


def _model_device_dtype(model):
    """The single device and floating dtype of the model's parameters."""
    params = list(model.parameters())
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise ValueError(f"model parameters live on several devices {sorted(map(str, devices))}; "
                         f"move the model to one device")
    dtypes = {p.dtype for p in params if p.requires_grad}
    torch = _torch()
    if len(dtypes) > 1 or not dtypes <= {torch.float32, torch.float64}:
        raise TypeError(f"trainable parameters must all be float32 or all float64, got {sorted(map(str, dtypes))}")
    return devices.pop(), dtypes.pop()


def _as_input(x, name, device, dtype):
    """``x`` as a finite floating torch tensor on the model's device and dtype (torch inputs must already be
    on that device; NumPy and CuPy arrays are moved)."""
    if backend.is_torch(x):
        if x.device != device:
            raise ValueError(f"{name} is on device {x.device} but the model's parameters are on {device}; "
                             f"move one of them (e.g. {name}.to('{device}'))")
    elif backend.is_array(x):
        kind = getattr(getattr(x, "dtype", None), "kind", "f")
        if kind not in "biuf":
            raise TypeError(f"{name} must be a numeric array (float, int), got dtype {x.dtype}")
        if kind == "f" and x.dtype.itemsize < 4:
            x = x.astype("float32")   # float16: DLPack carries it, but compute in the model's dtype anyway
        x = backend.to_torch(x)
    else:
        raise TypeError(f"{name} must be a torch tensor or a NumPy/CuPy array, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, ...) with n >= 1, got {tuple(x.shape)}")
    return check_finite(x.detach().to(device=device, dtype=dtype), name)


# ----------------------------------------------------------------------------------------------- plan
class _Site:
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
            a = _torch().nn.functional.pad(a, self.pad)
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


def _site_spec(module):
    """(kind, weight_scale, bias_scale[, stride, padding, dilation]) of a supported layer, else None: a module
    declaring ``structured_ntk()`` (validated), or a plain nn.Linear / nn.Conv2d (groups 1, zero padding)."""
    nn = _torch().nn
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
    torch = _torch()
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
    pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < least for v in pair):
        valid = "an int, a pair of ints or 'same'/'valid'" if what == "padding" else "an int or a pair of ints"
        raise ValueError(f"{name}: {what} must be {valid} (each >= {least}), got {value!r}")
    return pair


class _Plan:
    def __init__(self, sites, fallback, clone, outputs, forward_flops):
        self.sites, self.fallback, self.clone = sites, fallback, clone
        self.outputs, self.forward_flops = outputs, forward_flops


def _probe(model, x1, trainable):
    """Run the model on two rows of x1 to learn O and which trainable parameters "structured" can handle."""
    torch = _torch()
    nn = torch.nn
    from torch.nn.utils import parametrize
    owners = {}
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None:
                owners[p] = owners.get(p, 0) + 1
    candidates = []
    for module in model.modules():
        spec = _site_spec(module)
        if (spec is None or module._forward_hooks or parametrize.is_parametrized(module)
                or not isinstance(module._parameters.get("weight"), nn.Parameter)):
            continue
        site = _Site(module, *spec)  # a parameter shared with another module is left to the fallback
        site.weight = site.weight and owners.get(module.weight) == 1
        site.bias = site.bias and owners.get(module.bias) == 1
        if site.params():
            candidates.append(site)
    probe = x1[:2] if len(x1) >= 2 else torch.cat([x1[:1], x1[:1]])
    try:
        trace = _Trace(model, probe, candidates, clone=False)
    except Exception as err:
        raise ValueError(f"the model could not be applied to x1 of shape {tuple(x1.shape)} (probed with "
                         f"shape {tuple(probe.shape)}): {type(err).__name__}: {err}") from err
    if trace.f is None:
        got = tuple(trace.out.shape) if torch.is_tensor(trace.out) else type(trace.out).__name__
        raise ValueError(f"the model must map (N, ...) inputs to a tensor of shape (N, O) or (N,); inputs of "
                         f"shape {tuple(probe.shape)} gave {got}")
    clone = any(rec.modified() for recs in trace.records.values() for rec in recs)
    uses = _graph_uses(trace.f)
    sites = []
    for site in candidates:
        calls = trace.records[site]
        batch_first = all(rec.a.shape[0] == 2 and rec.y.shape[0] == 2
                          and (site.kind == "linear" or rec.a.ndim == 4) for rec in calls)
        if not (calls and batch_first):
            continue
        # a parameter with more uses in the graph than the layer has calls is also used elsewhere
        site.weight = site.weight and uses.get(site.module.weight, 0) <= len(calls)
        site.bias = site.bias and uses.get(site.module.bias, 0) <= len(calls)
        if site.params():
            sites.append(site)
    handled = {p for site in sites for p in site.params()}
    named = dict(model.named_parameters())
    fallback = [name for name in trainable if named[name] not in handled]
    flops = None
    if fallback:
        from torch.utils.flop_counter import FlopCounterMode
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(probe)
        flops = counter.get_total_flops() / 2
    return _Plan(sites, fallback, clone, trace.f.shape[1], flops)


def _graph_uses(f):
    """How many autograd-graph edges reach each leaf parameter from ``f`` (one per use in the forward)."""
    uses, seen = {}, set()
    stack = [f.grad_fn] if f.grad_fn is not None else []
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            variable = getattr(child, "variable", None)
            if variable is not None:
                uses[variable] = uses.get(variable, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return uses


def _resolve_method(method, model, plan, b1, b2, output):
    if method != "auto":
        return method
    if not plan.fallback:
        return "structured"
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    F, O = plan.forward_flops, plan.outputs
    jacobian = 3 * F * O * (b1 + b2) + 2 * b1 * b2 * O ** (2 if output == "full" else 1) * n_params
    ntvp = 3 * F * O * b2 * (b1 + b2)
    return "jacobian" if jacobian <= ntvp else "ntvp"


# ----------------------------------------------------------------------------------------------- blocks
def _blocked(pair, x1, x2, block_size, full, outputs):
    """Assemble Θ from ``pair(xa, xb)`` over blocks (``xb=None``: the symmetric block of xa with itself)."""
    torch = _torch()
    symmetric = x2 is None
    x2 = x1 if symmetric else x2
    n1, n2 = len(x1), len(x2)
    shape = (n1, n2, outputs, outputs) if full else (n1, n2)
    b1, b2 = block_size or n1, block_size or n2
    if b1 >= n1 and b2 >= n2:
        return _symmetrize(pair(x1, None), full) if symmetric else pair(x1, x2)
    kernel = torch.empty(shape, dtype=x1.dtype, device=x1.device)
    for i in range(0, n1, b1):
        for j in range(i if symmetric else 0, n2, b2):
            if symmetric and i == j:
                block = _symmetrize(pair(x1[i:i + b1], None), full)
            else:
                block = pair(x1[i:i + b1], x2[j:j + b2])
            kernel[i:i + b1, j:j + b2] = block
            if symmetric and i != j:
                kernel[j:j + b2, i:i + b1] = _swap(block, full)
    return kernel


def _symmetrize(block, full):
    """(Θ + Θᵀ)/2 for a same-input block, so that the kernel is exactly symmetric."""
    return (block + _swap(block, full)).mul_(0.5)


def _swap(block, full):
    return block.permute(1, 0, 3, 2) if full else block.T


def _contract(ja, jb, full):
    """Θ from per-sample features (n, Q, F): Σ_f ja[a,q,f]·jb[b,r,f] as (n1, n2, Q, Q), or Σ_q of it."""
    n1, q, _ = ja.shape
    n2 = jb.shape[0]
    if full:
        return (ja.reshape(n1 * q, -1) @ jb.reshape(n2 * q, -1).T).reshape(n1, q, n2, q).permute(0, 2, 1, 3)
    return ja.reshape(n1, -1) @ jb.reshape(n2, -1).T


def _contract_into(acc, ja, jb, summed=False):
    """acc (n1, n2, Q, Q) += _contract(ja, jb, full=True), or acc (n1, n2, 1, 1) += its Σ_q when ``summed``."""
    n1, q = ja.shape[:2]
    n2 = jb.shape[0]
    if q == 1 or summed:
        acc.view(n1, n2).addmm_(ja.reshape(n1, -1), jb.reshape(n2, -1).T)
    else:
        acc += _contract(ja, jb, True)


# ----------------------------------------------------------------------------------------------- jacobian
def _jacobian(model, x, names):
    """Per-sample Jacobian (n, O, P) of the model output with respect to the parameters ``names``."""
    torch = _torch()
    from torch.func import functional_call, jacrev, vmap
    fixed = {name: p.detach() for name, p in model.named_parameters()}
    diff = {name: fixed[name] for name in names}

    def single(params, xi):
        return functional_call(model, {**fixed, **params}, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(single), (None, 0))(diff, x)
    n = len(x)
    return torch.cat([jac[name].reshape(n, jac[name].shape[1], -1) for name in names], dim=2)


# ----------------------------------------------------------------------------------------------- ntvp
def _ntvp_pair(model, xa, xb, names, outputs, full, chunk):
    """Θ(xa, xb) column by column: jvp on xa of the vjp on xb of each one-hot cotangent e_{m,o'}."""
    torch = _torch()
    from torch.func import functional_call, jvp, vjp, vmap
    fixed = {name: p.detach() for name, p in model.named_parameters()}
    diff = {name: fixed[name] for name in names}
    na, nb = len(xa), len(xb)

    def f(params, x):
        return functional_call(model, {**fixed, **params}, (x,)).reshape(len(x), outputs)

    _, pullback = vjp(lambda p: f(p, xb), diff)

    def column(cotangent):
        (tangent,) = pullback(cotangent)
        return jvp(lambda p: f(p, xa), (diff,), (tangent,))[1]

    cotangents = torch.eye(nb * outputs, dtype=xa.dtype, device=xa.device).reshape(nb * outputs, nb, outputs)
    columns = vmap(column, chunk_size=max(1, chunk))(cotangents)  # (nb·O', na, O)
    theta = columns.reshape(nb, outputs, na, outputs).permute(2, 0, 3, 1)  # (na, nb, O, O')
    return theta if full else torch.diagonal(theta, dim1=2, dim2=3).sum(-1)


# ----------------------------------------------------------------------------------------------- structured
class _Record:
    """One call of a supported layer: its input ``a`` and output ``y`` (with their versions, to detect later
    in-place changes)."""

    def __init__(self, a, y):
        self.a, self.y = a, y
        self.versions = (a._version, y._version)

    def modified(self):
        return (self.a._version, self.y._version) != self.versions


class _Trace:
    """One forward pass of a block with every call of the supported layers recorded.

    With ``clone`` (needed when the model later changes a layer's input or output in place, e.g.
    ``ReLU(inplace=True)``) the input is copied and the model continues with a copy of the output.
    """

    def __init__(self, model, x, sites, clone):
        torch = _torch()
        self.n, self.sites = len(x), sites
        self.records = {site: [] for site in sites}
        self._patch_cache = {}

        def hook_for(site):
            def hook(module, args, y):
                a = args[0].detach()
                self.records[site].append(_Record(a.clone() if clone else a, y))
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
        torch = _torch()
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
            if size > _CHUNK_ELEMENTS:
                return site.patches(rec.a[lo:hi])
            self._patch_cache[key] = site.patches(rec.a)
        return self._patch_cache[key][lo:hi]


def _structured_pair(model, plan, xa, xb, full):
    """Θ(xa, xb) by structured derivatives (see the module docstring); (n1, n2) Σ_o Θ_oo or (n1, n2, O, O)."""
    torch = _torch()
    ta = _Trace(model, xa, plan.sites, plan.clone)
    tb = ta if xb is None else _Trace(model, xb, plan.sites, plan.clone)
    O = plan.outputs
    q = O if full else 1
    orders, grams = {}, {}
    for site in plan.sites:
        s1 = sum(site.positions(rec.y) for rec in ta.records[site])
        s2 = sum(site.positions(rec.y) for rec in tb.records[site])
        orders[site] = _order(site, ta.n, tb.n, s1, s2, q)
        if orders[site] == "gram":
            grams[site] = _patch_gram(site, ta, tb)
    kernel = torch.zeros((ta.n, tb.n, O, O) if full else (ta.n, tb.n), dtype=xa.dtype, device=xa.device)
    acc = kernel.view(ta.n, tb.n, q, q)  # "mean" streams one output at a time (q = 1) into Σ_o Θ_oo
    for outputs in ([list(range(O))] if full else [[o] for o in range(O)]):
        ga = ta.signals(outputs)
        gb = ga if tb is ta else tb.signals(outputs)
        for site in plan.sites:
            if orders[site] == "gram":
                _gram_contract(grams[site], ga[site], gb[site], acc)
            else:
                ja = _site_jacobian(site, ta, ga[site])
                jb = ja if tb is ta else _site_jacobian(site, tb, gb[site])
                for fa, fb in zip(ja, jb):
                    if fa is not None:
                        _contract_into(acc, fa, fb)
    if plan.fallback:
        ja = _jacobian(model, xa, plan.fallback)
        _contract_into(acc if full else kernel.view(ta.n, tb.n, 1, 1), ja,
                       ja if xb is None else _jacobian(model, xb, plan.fallback), summed=not full)
    return kernel


def _order(site, n1, n2, s1, s2, q):
    """"gram" (Gram matrices over positions, then Σ_{s,s'}) or "jacobian" (per-sample weight gradients, then
    their Gram), whichever needs fewer multiply-adds; "gram" only while its (n1·S1)×(n2·S2) tensors fit."""
    C, K = site.fan_out, site.fan_in * site.weight
    features = C * K + C * site.bias
    jacobian = (n1 * s1 + n2 * s2) * q * C * K + n1 * n2 * q * q * features
    gram = n1 * n2 * s1 * s2 * (K + q * q * C)
    fits = s1 * s2 == 1 or n1 * n2 * s1 * s2 * q * q <= _GRAM_ELEMENTS
    return "gram" if fits and gram <= jacobian else "jacobian"


def _patch_gram(site, ta, tb):
    """M[a,s,b,t] = ws²·p_{a,s}·p_{b,t} (+ bs² for a trainable bias), zero when only the bias is trainable."""
    torch = _torch()
    def patches(trace):
        calls = [trace.patches(site, c, 0, trace.n) for c in range(len(trace.records[site]))]
        return calls[0] if len(calls) == 1 else torch.cat(calls, dim=2)

    pa = patches(ta)
    pb = pa if tb is ta else patches(tb)
    (n1, k, s1), (n2, _, s2) = pa.shape, pb.shape
    if not site.weight:
        gram = torch.zeros((n1, s1, n2, s2), dtype=pa.dtype, device=pa.device)
    elif s1 == s2 == 1:
        gram = (pa.reshape(n1, k) @ pb.reshape(n2, k).T).reshape(n1, 1, n2, 1)
    else:
        gram = torch.einsum("aks,bkt->asbt", pa, pb)
    if site.weight and site.weight_scale != 1:
        gram.mul_(site.weight_scale ** 2)
    return gram + site.bias_scale ** 2 if site.bias else gram


def _gram_contract(gram, ga, gb, acc):
    """acc[a,b,q,r] += Σ_{s,t} M[a,s,b,t]·(g_{a,q,s}·g_{b,r,t}) for signals (n, Q, C, S) concatenated over calls."""
    torch = _torch()
    same = ga is gb
    ga = ga[0] if len(ga) == 1 else torch.cat(ga, dim=3)
    gb = ga if same else gb[0] if len(gb) == 1 else torch.cat(gb, dim=3)
    (n1, q, c, s1), (n2, _, _, s2) = ga.shape, gb.shape
    if s1 == s2 == 1:
        gg = (ga.reshape(n1 * q, c) @ gb.reshape(n2 * q, c).T).reshape(n1, q, n2, q).permute(0, 2, 1, 3)
        acc.addcmul_(gram.reshape(n1, n2, 1, 1), gg)
    else:
        acc += torch.einsum("asbt,aqcs,brct->abqr", gram, ga, gb)


def _site_jacobian(site, trace, signals):
    """Per-sample gradients of the layer's weight, ws·Σ_s g_s p_sᵀ as (n, Q, C·K), and bias, bs·Σ_s g_s as
    (n, Q, C) (None for a frozen one)."""
    torch = _torch()
    n, q, C, _ = signals[0].shape
    weight = bias = None
    if site.weight:
        K = site.fan_in
        weight = torch.empty((n, q * C, K), dtype=signals[0].dtype, device=signals[0].device)
        for call, g in enumerate(signals):
            s = g.shape[3]
            g = g.reshape(n, q * C, s)
            step = max(1, _CHUNK_ELEMENTS // (K * s))
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                patches = trace.patches(site, call, lo, hi).transpose(1, 2)
                if call == 0:
                    torch.bmm(g[lo:hi], patches, out=weight[lo:hi])
                else:
                    weight[lo:hi].baddbmm_(g[lo:hi], patches)
        weight = weight.reshape(n, q, C * K)
        if site.weight_scale != 1:
            weight.mul_(site.weight_scale)
    if site.bias:
        bias = sum(g.sum(dim=3) for g in signals) * site.bias_scale
    return weight, bias
