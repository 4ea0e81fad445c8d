"""Empirical neural tangent kernel of any ``torch.nn.Module`` with a batch-first output (N, O) or (N,).

    Θ(x, x')_{oo'} = Σ_w ∂f_o(x)/∂w · ∂f_{o'}(x')/∂w        (sum over the trainable parameters w)

``output="full"`` returns Θ as (n1, n2, O, O); ``output="mean"`` returns (1/O)·Σ_o Θ_oo, shape (n1, n2)
(neural-tangents' ``trace_axes`` convention; docs/conventions.md, *Empirical NTK*). Methods (Novak et al. 2022,
"Fast Finite Width Neural Tangent Kernel", ICML):

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

Package layout: this module holds ``empirical_ntk`` (inputs, method choice, blocking); ``functional`` the
torch.func methods and the contractions they share; ``layers`` the supported layers (the protocol above) and
the recording of their calls; ``structured`` the structured-derivatives contraction.
"""
from __future__ import annotations

import torch

from kernels import backend
from kernels.empirical import functional, structured
from kernels.validation import KernelOverflowError, check_choice, check_finite, check_scalar

METHODS = ("auto", "jacobian", "ntvp", "structured")
OUTPUTS = ("mean", "full")


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
        plan = structured.probe(model, x1, trainable)
        n1, n2 = len(x1), len(x1 if x2 is None else x2)
        b1, b2 = min(block_size or n1, n1), min(block_size or n2, n2)
        method = _resolve_method(method, model, plan, b1, b2, output)
        full = output == "full"
        if method == "structured":
            def pair(xa, xb):
                return structured.structured_pair(model, plan, xa, xb, full)
        elif method == "jacobian":
            def pair(xa, xb):
                ja = functional.jacobian(model, xa, trainable)
                jb = ja if xb is None else functional.jacobian(model, xb, trainable)
                return functional.contract(ja, jb, full)
        else:
            def pair(xa, xb):
                return functional.ntvp_pair(model, xa, xa if xb is None else xb, trainable, plan.outputs, full, b2)
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


# ----------------------------------------------------------------------------------------------- inputs
def _model_device_dtype(model):
    """The single device and floating dtype of the model's parameters."""
    params = list(model.parameters())
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise ValueError(f"model parameters live on several devices {sorted(map(str, devices))}; "
                         f"move the model to one device")
    dtypes = {p.dtype for p in params if p.requires_grad}
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
            x = x.astype("float32")   # float16: computed in the model's dtype anyway
        x = backend.to_torch(x)
    else:
        raise TypeError(f"{name} must be a torch tensor or a NumPy/CuPy array, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, ...) with n >= 1, got {tuple(x.shape)}")
    return check_finite(x.detach().to(device=device, dtype=dtype), name)


# ----------------------------------------------------------------------------------------------- method and blocks
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


def _blocked(pair, x1, x2, block_size, full, outputs):
    """Assemble Θ from ``pair(xa, xb)`` over blocks (``xb=None``: the symmetric block of xa with itself)."""
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
