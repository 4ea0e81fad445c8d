"""Step sizes from the kernel: the top eigenvalue of the empirical NTK and the stability limit of (heavy-ball) SGD.

For a loss L(w) = (1/B) Σ_i ℓ(f(x_i; w)) on a batch of B inputs, the Gauss–Newton part of its Hessian is
H = (1/B)·Jᵀ ∇²ℓ J, with J the Jacobian of the B·O outputs (O per input) with respect to the trainable
parameters. When the loss has curvature at most c in its outputs (∇²ℓ ⪯ c·I), λ_max(H) ≤ c·λ_max(Θ)/B with
Θ = J Jᵀ the empirical NTK of the batch (all output blocks Θ_oo'; ``kernels.empirical_ntk(output="full")``).
Gradient descent with heavy-ball momentum β (PyTorch's SGD, dampening 0) on a quadratic of curvature λ is
stable iff lr·λ < 2(1 + β) (Polyak 1964; β = 0: the classic lr < 2/λ). Hence the limit

    lr_limit = 2(1 + β)·B / (c·λ_max(Θ)),      and the rule  lr = lr_factor · lr_limit,  lr_factor < 1.

Curvatures c (the sup over outputs of the loss Hessian's top eigenvalue): ½‖f − y‖² ('mse' of ``nets.losses``): 1;
softmax cross-entropy: ½ (diag(p) − ppᵀ has top eigenvalue ≤ ½, reached by two classes at p = ½); a factor
``loss_scale`` multiplying the loss multiplies c. For ``Lazy(net, α)`` trained on R/α² the α² of its NTK and
the 1/α² of the loss cancel, so the limit is the network's own at every α.

λ_max(Θ) is found without forming Θ: power iteration v ← JᵀJv / ‖JᵀJv‖ in parameter space, one
Jacobian-vector product (forward mode) and one vector-Jacobian product per iteration; the Rayleigh quotient
‖Jv‖² is a lower bound of λ_max that increases to it (at the rate (λ₂/λ₁)^k).
"""
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

from kernels import check_choice, check_scalar

from nets.forward_ad import serialized

# sup of the top eigenvalue of ∇²ℓ in the outputs, for the losses of nets.losses that have one
CURVATURES = {"mse": 1.0, "cross_entropy": 0.5}


def loss_curvature(loss, loss_scale=1.0):
    """c = sup λ_max(∇²ℓ) for `loss` ('mse': 1, 'cross_entropy': ½), times `loss_scale` (a factor on the loss)."""
    check_choice(loss, "loss", tuple(CURVATURES))
    return CURVATURES[loss] * check_scalar(loss_scale, "loss_scale", float, min_val=0, include_boundaries="neither")


@dataclass(frozen=True)
class KernelStep:
    """The step a row trained with: `lr`, the NTK's top eigenvalue `lambda_max` on a batch of `batch_size`
    inputs, the stability limit `limit` = 2(1 + β)·B/(c·λ_max) and `ratio` = lr/limit (> 1: above the limit)."""

    lr: float
    lambda_max: float
    limit: float
    batch_size: int
    momentum: float
    curvature: float

    @property
    def ratio(self):
        return self.lr / self.limit

    @property
    def above_limit(self):
        return self.ratio > 1.0

    def as_row(self):
        """The fields a results row records: lr_used, lambda_max, lr_limit, lr_over_limit."""
        return {"lr_used": self.lr, "lambda_max": self.lambda_max, "lr_limit": self.limit, "lr_over_limit": self.ratio}


def stability_limit(lambda_max, batch_size, momentum=0.0, curvature=1.0):
    """2(1 + β)·B / (c·λ_max): the largest stable step of heavy-ball SGD on the Gauss–Newton quadratic."""
    lambda_max = check_scalar(lambda_max, "lambda_max", float, min_val=0, include_boundaries="neither")
    batch_size = check_scalar(batch_size, "batch_size", int, min_val=1)
    momentum = check_scalar(momentum, "momentum", float, min_val=0, max_val=1, include_boundaries="left")
    curvature = check_scalar(curvature, "curvature", float, min_val=0, include_boundaries="neither")
    return 2.0 * (1.0 + momentum) * batch_size / (curvature * lambda_max)


def kernel_step(lambda_max, batch_size, momentum=0.0, curvature=1.0, lr_factor=None, lr=None):
    """A `KernelStep`: lr = lr_factor·limit (give `lr_factor`), or a given `lr` measured against the limit."""
    if (lr is None) == (lr_factor is None):
        raise ValueError(f"give exactly one of lr and lr_factor, got lr={lr!r}, lr_factor={lr_factor!r}")
    limit = stability_limit(lambda_max, batch_size, momentum, curvature)
    if lr is None:
        lr = check_scalar(lr_factor, "lr_factor", float, min_val=0, include_boundaries="neither") * limit
    lr = check_scalar(lr, "lr", float, min_val=0, include_boundaries="neither")
    return KernelStep(lr, float(lambda_max), limit, int(batch_size), float(momentum), float(curvature))


@serialized
def ntk_lambda_max(model, X, iters=30, rtol=1e-4, seed=0):
    """λ_max of the empirical NTK Θ = JJᵀ of `model` on the inputs X (all outputs: the (n·O) × (n·O) kernel with
    its output blocks), by power iteration on JᵀJ with one jvp and one vjp per iteration (module docstring).

    Stops when the Rayleigh quotient changes by less than `rtol` (relative) between iterations, or after `iters`;
    the start vector comes from `seed`. Returns the last Rayleigh quotient ‖Jv‖² (a lower bound of λ_max).
    Only parameters with requires_grad count (those of a `Lazy` module's trained network, not its frozen copy).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_scalar(iters, "iters", int, min_val=1)
    check_scalar(rtol, "rtol", float, min_val=0)
    seed = check_scalar(seed, "seed", int, min_val=0)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no parameter that requires grad: its tangent kernel is zero")
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor of inputs, got {type(X).__name__}")
    first = next(iter(params.values()))
    X = X.detach().to(device=first.device, dtype=first.dtype)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty batch of inputs, got shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X contains NaN or inf; all values must be finite")

    def f(p):
        return functional_call(model, p, (X,))

    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for k, p in params.items()}
    value, previous = 0.0, None
    for _ in range(iters):
        norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in v.values()))
        if norm == 0.0:
            break
        v = {k: t / norm for k, t in v.items()}
        _, jv = jvp(f, (params,), (v,))
        value = float((jv.double() ** 2).sum())
        if not math.isfinite(value):
            raise ValueError("the Jacobian-vector product is not finite: the model's outputs overflow on X")
        if previous is not None and abs(value - previous) <= rtol * value:
            break
        previous = value
        _, pullback = vjp(f, params)
        (v,) = pullback(jv)
    if value == 0.0:
        raise ValueError("the tangent kernel is zero on X (e.g. all-zero inputs to a network without bias)")
    return value
