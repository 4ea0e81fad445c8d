"""The training losses of `nets.train`: the risk R(f) = (1/n) Σ_i ℓ(f(x_i), y_i) for each loss name.

Squared loss and softmax cross-entropy, and the margin losses of the lazy/feature literature, functions of the
margin z = y·f for labels y ∈ {−1, +1}:

  'mse'              ℓ = ½‖f − y‖²                       (R = (1/2n)‖f(X) − y‖², docs/conventions.md)
  'cross_entropy'    ℓ = −log softmax(f)_y               (integer labels, f of shape (N, classes))
  'hinge'            ℓ = max(0, 1 − z)
  'quadratic_hinge'  ℓ = ½ max(0, 1 − z)²
  'softhinge'        ℓ = softplus(β(1 − z))/β = log(1 + e^{β(1−z)})/β   (→ hinge as β → ∞)
  'logistic'         ℓ = log(1 + e^{−z})

Multi-class margin losses are one-vs-rest: a network with C ≥ 2 outputs and integer labels c_i ∈ [0, C) gets the
targets y_ik = +1 if k = c_i else −1, and ℓ = Σ_k ℓ(y_ik·f_ik) (each output is a binary ±1 classifier; the
predicted class is the arg-max). Targets may also be given directly as ±1 values of the outputs' shape.
Under `Lazy` every loss is multiplied by `loss_scale` = 1/α² by `nets.train` (Chizat, Oyallon & Bach 2019, eq. 2).
`kernels.solve.flow` implements the same losses (in NumPy, with their derivatives) for the kernel predictor.
"""
import torch
from torch.nn import functional as F

from kernels import LOSSES, MARGIN_LOSSES   # one vocabulary: the kernel flows take the same losses


def prepare_targets(y, loss, dtype):
    """y as the tensor `risk` expects: long class labels for 'cross_entropy', floats of `dtype` otherwise."""
    if loss == "cross_entropy" or loss in MARGIN_LOSSES:
        if y.dtype == torch.bool or y.is_complex():
            raise ValueError(f"y must hold real labels for loss={loss!r}, got dtype {y.dtype}")
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ValueError(f"y must hold integer class labels or ±1 labels for loss={loss!r}")
    if loss == "cross_entropy":
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels for loss='cross_entropy', got shape {tuple(y.shape)}")
        return y.long()
    return y.to(dtype)


def match_output(output, y, loss):
    """Check the module's first output against the targets y and return y in the form `risk` uses.

    For a margin loss with C ≥ 2 outputs and 1-D integer labels, that is the one-vs-rest ±1 matrix (N, C).
    """
    if loss == "cross_entropy":
        if output.ndim != 2:
            raise ValueError("loss='cross_entropy' needs module outputs of shape (N, classes), "
                             f"got {tuple(output.shape)}")
        _check_labels(y, output.shape[1])
        return y
    if loss in MARGIN_LOSSES and y.ndim == 1 and output.ndim == 2 and output.shape[1] >= 2:
        _check_labels(y, output.shape[1])
        return 2.0 * F.one_hot(y.long(), output.shape[1]).to(output.dtype) - 1.0
    allowed = [(), (1,)] if y.ndim == 1 else [tuple(y.shape[1:])]
    if tuple(output.shape[1:]) not in allowed:
        raise ValueError(f"loss={loss!r}: module outputs have shape {tuple(output.shape)} but y has shape "
                         f"{tuple(y.shape)}")
    if loss in MARGIN_LOSSES and not bool(((y == 1) | (y == -1)).all()):
        values = torch.unique(y)[:5].tolist()
        raise ValueError(f"y must hold labels -1 and +1 for loss={loss!r} with outputs of shape "
                         f"{tuple(output.shape)}, got values {values}")
    return y


def _check_labels(y, classes):
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"labels in y must lie in [0, {classes}) for a module with {classes} outputs, "
                         f"got range [{int(y.min())}, {int(y.max())}]")


def _aligned(output, target):
    if target.ndim == 1 and output.ndim == 2:
        target = target.unsqueeze(1)
    elif target.ndim == 2 and output.ndim == 1:
        output = output.unsqueeze(1)
    return output, target


def margins(output, target, loss="hinge"):
    """Training margins: y·f, shape (N, outputs), for ±1 targets matched by `match_output`; for 'cross_entropy'
    the multi-class margin f_y − max_{k≠y} f_k, shape (N, 1)."""
    if loss == "cross_entropy":
        own = output.gather(1, target[:, None])
        others = output.scatter(1, target[:, None], -torch.inf)
        return own - others.max(1, keepdim=True).values
    output, target = _aligned(output, target)
    product = output * target
    return product if product.ndim == 2 else product.unsqueeze(1)


def _softplus(x):
    """log(1 + eᶻ) without torch's linear cut-off above 20 (exact in floating point: logaddexp)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def risk(output, target, loss, beta=1.0):
    """R = (1/N) Σ_i ℓ(f_i, y_i) on the batch (the formulas of the module docstring); `beta` for 'softhinge'."""
    if loss == "cross_entropy":
        return F.cross_entropy(output, target)
    n = output.shape[0]
    if loss == "mse":
        output, target = _aligned(output, target)
        return 0.5 * ((output - target) ** 2).sum() / n
    z = margins(output, target)
    if loss == "hinge":
        values = torch.relu(1.0 - z)
    elif loss == "quadratic_hinge":
        values = 0.5 * torch.relu(1.0 - z) ** 2
    elif loss == "softhinge":
        values = _softplus(beta * (1.0 - z)) / beta
    elif loss == "logistic":
        values = _softplus(-z)
    else:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(map(repr, LOSSES))}")
    return values.sum() / n
