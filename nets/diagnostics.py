"""How lazy was a training run, and will a model train lazily? (Chizat, Oyallon & Bach, NeurIPS 2019.)

After training: relative weight change, NTK drift, unchanged ReLU activation patterns (the paper's CNN metric,
§3), and the distance between a lazy run and its linearized twin. Before training: the scale criterion κ of the
paper's §2 (Theorem 2.3): training is lazy when κ_h(w₀) = ‖h(w₀) − y‖·‖D²h(w₀)‖ / ‖Dh(w₀)‖² ≪ 1.

Each "after" diagnostic takes a `Lazy` or `Linearized` module (which carry their initialisation) or any module
together with `initial=`, a copy of it at initialisation.
"""
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

from kernels import check_scalar, empirical_ntk, to_numpy

from nets.forward_ad import serialized
from nets.lazy import Lazy, Linearized


def _networks(module, initial):
    """(network now, network at init) as modules with the same architecture."""
    if isinstance(module, Lazy):
        return module.model, module.model_at_init
    if isinstance(module, Linearized):
        raise TypeError("a Linearized module has no network of its own to compare (its Jacobian is fixed at w0); "
                        "pass the Lazy or plain network instead")
    if not isinstance(initial, nn.Module):
        raise TypeError("for a module that is neither Lazy nor Linearized, pass initial= a copy of it at "
                        f"initialisation (a torch.nn.Module), got {type(initial).__name__}")
    return module, initial


def _trainable_pair(module, initial):
    """({name: w}, {name: w₀}) over the trainable parameters."""
    if isinstance(module, Linearized):
        return module.current_parameters(), module.initial_parameters()
    now, init = _networks(module, initial)
    current = {name: p for name, p in now.named_parameters() if p.requires_grad}
    start = dict(init.named_parameters())
    missing = sorted(set(current) - set(start))
    if missing:
        raise ValueError(f"initial has no parameters named {missing[:3]}: it must have the module's architecture")
    return current, {name: start[name] for name in current}


def _as_input(X, module, name):
    """``X`` (a tensor or NumPy array of real numbers, samples along axis 0) as a finite tensor on the device and in
    the floating dtype of ``module``'s parameters, so NumPy input and a dtype differing from the model's both work."""
    if isinstance(X, torch.Tensor):
        X = X.detach()
    else:
        array = np.asarray(X) if not isinstance(X, (str, bytes)) else None
        if array is None or array.dtype.kind not in "iuf":
            kind = type(X).__name__ if array is None else f"dtype {array.dtype}"
            raise TypeError(f"{name} must be a tensor or array of real numbers, got {kind}")
        X = torch.as_tensor(array)
    if X.is_complex() or X.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    ref = next((p for p in module.parameters() if p.is_floating_point()), None)
    device, dtype = (ref.device, ref.dtype) if ref is not None else (X.device, torch.get_default_dtype())
    finite = bool(torch.isfinite(X).all()) if X.is_floating_point() else True
    X = X.to(device=device, dtype=dtype)
    if finite and not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} is too large for the module's {str(dtype).replace('torch.', '')} (max |{name}| "
                         f"beyond {torch.finfo(dtype).max:.3g}); rescale {name} or use a float64 module")
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array with samples along axis 0, got shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    return X


def _norm(tensors):
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def _frobenius(t):
    """‖t‖ without overflow: max|t|·‖t / max|t|‖ (entries near 1e200 have squares beyond float64)."""
    t = t.detach().double()
    peak = float(t.abs().max()) if t.numel() else 0.0
    return peak * float(torch.linalg.norm(t / peak)) if peak > 0 else 0.0


def _finite(t, name, what):
    """``t``, or a ValueError naming the input ``name`` when the network's ``what`` on it is NaN or inf."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"the network's {what} on {name} are not finite (NaN or inf: {name} is too large for "
                         "its dtype?); rescale the inputs (e.g. standardise them)")
    return t


@torch.no_grad()
def relative_weight_change(module, initial=None):
    """‖w_T − w₀‖ / ‖w₀‖ over the trainable parameters (Euclidean norm of all of them concatenated)."""
    current, start = _trainable_pair(module, initial)
    reference = _norm(start.values())
    if reference == 0.0:
        raise ValueError("the initial trainable parameters are all zero, so the relative weight change "
                         "||w_T - w_0|| / ||w_0|| is undefined; report ||w_T - w_0|| (parameter_distance) instead")
    return _norm(current[k] - start[k] for k in current) / reference


def _with_trainable_flags(network, like):
    """A copy of `network` whose requires_grad flags match those of `like` (same architecture)."""
    network = copy.deepcopy(network)
    flags = {name: p.requires_grad for name, p in like.named_parameters()}
    for name, p in network.named_parameters():
        p.requires_grad_(flags[name])
    return network


def ntk_drift(module, probe, initial=None, output="mean"):
    """‖Θ_T − Θ₀‖_F / ‖Θ₀‖_F: relative change of the empirical NTK on the inputs `probe`.

    Θ from `kernels.empirical_ntk` (sum over the trainable parameters; `output` as there). For a `Lazy` module
    the NTK of h_α is α²·Θ_h, and the α² cancels in the ratio, so this is computed on the inner network.
    """
    now, init = _networks(module, initial)
    init = _with_trainable_flags(init, now)
    probe = _as_input(probe, now, "probe")
    try:
        theta_t = torch.as_tensor(to_numpy(empirical_ntk(now, probe, output=output)))
        theta_0 = torch.as_tensor(to_numpy(empirical_ntk(init, probe, output=output)))
    except ValueError as exc:
        raise ValueError(f"probe (shape {tuple(probe.shape)}): {exc}") from None
    _finite(theta_t, "probe", "tangent kernel values")
    _finite(theta_0, "probe", "tangent kernel values at initialisation")
    reference = _frobenius(theta_0)
    if reference == 0.0:
        raise ValueError("the NTK at initialisation is zero on probe (e.g. all-zero inputs to a network without "
                         "bias), so the relative drift ||Theta_T - Theta_0|| / ||Theta_0|| is undefined; use probe "
                         "inputs on which the network's gradients are non-zero")
    return _frobenius(theta_t - theta_0) / reference


def _relu_patterns(network, X):
    """The sign pattern (output > 0) of every nn.ReLU call in one forward pass, in call order."""
    patterns = []

    def record(_module, inputs, out):
        _finite(inputs[0], "X", "pre-activations")     # a NaN pre-activation has no on/off state
        patterns.append(out > 0)

    hooks = [m.register_forward_hook(record) for m in network.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            network(X)
    finally:
        for hook in hooks:
            hook.remove()
    return patterns


def unchanged_activation_fraction(module, X, initial=None):
    """Fraction of ReLU units, over all inputs in X, whose on/off state is the same now as at initialisation.

    Chizat, Oyallon & Bach (2019, §3, CIFAR-10 CNNs) track this to show that lazily trained networks keep their
    activation patterns. Counts every call of every `torch.nn.ReLU` module (functional relu calls are not seen).
    """
    now, init = _networks(module, initial)
    X = _as_input(X, now, "X")
    after, before = _relu_patterns(now, X), _relu_patterns(init, X)
    if not before:
        raise ValueError("the network has no torch.nn.ReLU module to inspect")
    same = sum(int((a == b).sum()) for a, b in zip(after, before))
    return same / sum(b.numel() for b in before)


@torch.no_grad()
def parameter_distance(lazy, linearized):
    """‖w_α − w̄_α‖: Euclidean distance between the trainable parameters of a `Lazy` run (or a plain network)
    and its `Linearized` twin, matched by name (Theorem 2.2 of the paper: O(1/α²) at a fixed horizon)."""
    if not isinstance(linearized, Linearized):
        raise TypeError(f"linearized must be a Linearized module, got {type(linearized).__name__}")
    current = dict(lazy.named_parameters())
    missing = sorted(set(linearized.names) - set(current))
    if missing:
        raise ValueError(f"lazy has no parameters named {missing[:3]}: linearized must wrap the same architecture")
    return _norm(current[k] - w for k, w in linearized.current_parameters().items())


@torch.no_grad()
def function_distance(f, g, X):
    """Root mean square distance sqrt((1/n) Σ_i ‖f(x_i) − g(x_i)‖²) between two modules on the inputs X
    (an empirical L²(ρ) norm; Theorem 2.2: ‖h_α − h̄_α‖ = O(1/α) at a fixed horizon)."""
    if not isinstance(f, nn.Module) or not isinstance(g, nn.Module):
        raise TypeError(f"f and g must be torch.nn.Module, got {type(f).__name__} and {type(g).__name__}")
    try:
        out_f, out_g = f(_as_input(X, f, "X")), g(_as_input(X, g, "X"))
    except RuntimeError as exc:          # torch's shape errors: X does not fit the modules
        raise ValueError(f"X of shape {tuple(np.shape(X))} does not fit f and g: {str(exc).splitlines()[0]}") from None
    if out_f.shape != out_g.shape:
        raise ValueError(f"f and g must give outputs of the same shape on X, got {tuple(out_f.shape)} and "
                         f"{tuple(out_g.shape)}")
    _finite(out_f, "X", "outputs (f)")
    _finite(out_g, "X", "outputs (g)")
    diff = out_f.double() - out_g.double().to(out_f.device)
    return _frobenius(diff) / math.sqrt(diff.shape[0])


@dataclass
class ScaleCriterion:
    """κ = residual_norm · hessian_norm / jacobian_norm² and its parts (norms as in `scale_criterion`)."""

    kappa: float
    residual_norm: float
    jacobian_norm: float
    hessian_norm: float
    threshold: float

    @property
    def lazy(self):
        """True when κ < threshold: the paper's condition κ ≪ 1 for lazy training (Theorem 2.3)."""
        return self.kappa < self.threshold

    def __str__(self):
        verdict = ("expect LAZY training (the model stays close to its linearization)" if self.lazy else
                   "expect NON-lazy training (features move; the linearization is not a good proxy)")
        return (f"scale criterion kappa = {self.kappa:.3g} (threshold {self.threshold:g}): {verdict}. "
                f"|h(w0)-y| = {self.residual_norm:.3g}, |Dh(w0)| = {self.jacobian_norm:.3g}, "
                f"|D2h(w0)| >= {self.hessian_norm:.3g}")


def _dot(a, b):
    return sum((a[k] * b[k]).sum() for k in a)


def _scaled(a, c):
    return {k: v * c for k, v in a.items()}


@serialized
def scale_criterion(module, X, y, iters=30, threshold=0.01, seed=0):
    """The paper's scale criterion κ_h(w₀) = ‖h(w₀) − y‖ · ‖D²h(w₀)‖ / ‖Dh(w₀)‖² at the module's current
    parameters (Chizat, Oyallon & Bach 2019, §2, Theorem 2.3: training is lazy when κ ≪ 1).

    h maps the trainable parameters w ∈ ℝᵖ to the outputs on X, an element of F with the norm
    ‖f‖²_F = (1/n) Σ_i ‖f(x_i)‖² (κ does not depend on this normalisation: it scales the numerator and
    denominator alike).
    - ‖Dh‖ = sup_{‖v‖=1} ‖Dh[v]‖_F, the top singular value of the Jacobian: `iters` power iterations on DhᵀDh
      (a jvp then a vjp per iteration).
    - ‖D²h‖ = sup_{‖u‖=1} ‖D²h[u, u]‖_F, the operator norm of the symmetric bilinear map D²h (for a symmetric
      bilinear map into a Hilbert space, the sup over u = v equals the sup over unit u, v). Estimated by
      `iters` alternating power iterations u ← H_z u / ‖H_z u‖ with z = D²h[u, u] (H_z the Hessian of
      w ↦ ⟨z, h(w)⟩, applied by a vjp of a jvp); the largest ‖D²h[u, u]‖_F met is returned, a lower bound.
    Random starting vectors come from `seed`. Returns a `ScaleCriterion` (its `.lazy` is κ < `threshold`, a
    rule of thumb for "κ ≪ 1": on the digits example of docs/nets.md κ = 0.055 still let 5% of the ReLU patterns flip
    and the weights move by 10%, while κ = 5e-4 kept 99.96% of them; print it for a verdict).
    """
    check_scalar(iters, "iters", int, min_val=1)
    seed = check_scalar(seed, "seed", int, min_val=0)
    check_scalar(threshold, "threshold", float, min_val=0, include_boundaries="neither")
    params = {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("module has no trainable parameter")
    X = _as_input(X, module, "X")
    y = _as_input(y, module, "y")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of samples, got {X.shape[0]} and {y.shape[0]}")
    n = X.shape[0]

    def h(p):
        return functional_call(module, p, (X,))

    try:
        output = h(params).detach()
    except RuntimeError as exc:
        raise ValueError(f"the module cannot be applied to X of shape {tuple(X.shape)}: {exc}") from None
    if y.ndim == 1 and output.ndim == 2 and output.shape[1] == 1:
        y = y.unsqueeze(1)
    if output.shape != y.shape:
        raise ValueError(f"y must have the module's output shape {tuple(output.shape)}, got {tuple(y.shape)}")
    f_norm = lambda f: float(f.double().pow(2).sum() / n) ** 0.5  # noqa: E731  the norm of F
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def random_unit():
        v = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for k, p in params.items()}
        return _scaled(v, 1.0 / float(_dot(v, v)) ** 0.5)

    v, sigma = random_unit(), 0.0
    for _ in range(iters):
        _, jv = jvp(h, (params,), (v,))
        sigma = f_norm(jv)
        if sigma == 0.0:
            break
        _, pullback = vjp(h, params)
        (w,) = pullback(jv / n)
        v = _scaled(w, 1.0 / float(_dot(w, w)) ** 0.5)

    u, hess = random_unit(), 0.0
    for _ in range(iters):
        def directional(p, u=u):
            return jvp(h, (p,), (u,))[1]

        _, second = jvp(directional, (params,), (u,))
        value = f_norm(second)
        hess = max(hess, value)
        if value == 0.0:
            break
        _, pullback = vjp(directional, params)
        (w,) = pullback(second / (n * value))
        norm = float(_dot(w, w)) ** 0.5
        if norm == 0.0:
            break
        u = _scaled(w, 1.0 / norm)

    residual = f_norm(output - y)
    if not all(map(math.isfinite, (residual, sigma, hess))):
        raise ValueError("the module's outputs or derivatives on X are not finite (X too large for the model's "
                         f"dtype {str(X.dtype).replace('torch.', '')}?); rescale X")
    if sigma == 0.0:
        raise ValueError("the Jacobian Dh(w0) is zero on X (e.g. all-zero X for a network without bias), so the "
                         "scale criterion kappa = |h - y|·|D2h| / |Dh|^2 is undefined; use inputs on which the "
                         "network's gradients are non-zero")
    kappa = residual * hess / sigma ** 2
    return ScaleCriterion(kappa, residual, sigma, hess, float(threshold))
