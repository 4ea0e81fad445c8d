"""Argument checks of `nets.train`: every option validated once, before any training work, into `TrainOptions`."""
import math
from dataclasses import dataclass

import numpy as np
import torch

from kernels import check_bool, check_choice, check_scalar, check_writable
from nets.losses import LOSSES, prepare_targets

OPTIMIZERS = ("gd", "sgd")
LR_SCHEDULES = ("constant", "inverse", "inverse_epoch", "adaptive")
STOP_RULES = (None, "margin", "loss")


def check_number(value, name, low=0.0, low_inclusive=True, high=None, high_inclusive=False):
    """A finite real number (not a bool) above `low` (and below `high`), as a float (`check_scalar`)."""
    boundaries = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}
    return check_scalar(value, name, float, min_val=low, max_val=high,
                        include_boundaries=boundaries[low_inclusive, high_inclusive])


def check_count(value, name):
    """A positive integer (Python or NumPy, not a bool), as an int."""
    return check_scalar(value, name, int, min_val=1)


def as_tensor(array, name):
    """A tensor with samples along axis 0, non-empty, finite if floating (strings and objects named)."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        kind = np.asarray(array).dtype.kind if not isinstance(array, (str, bytes)) else "U"
        if kind not in "biufc":
            raise TypeError(f"{name} must be an array or tensor of numbers, got {type(array).__name__} with "
                            f"dtype kind {kind!r}")
        tensor = torch.as_tensor(np.asarray(array))
    if tensor.is_complex() and name == "y":
        raise ValueError(f"y must hold real numbers, got dtype {tensor.dtype}")
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array with samples along axis 0, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


@dataclass(frozen=True)
class TrainOptions:
    """The validated scalar options of one `train` call (see `nets.train` for their meaning)."""

    loss: str
    beta: float
    optimizer: str
    lr: float
    momentum: float
    lr_schedule: str
    lr_decay: float
    lr_growth: float
    lr_shrink: float
    weight_decay: float
    stop: object
    margin: float
    loss_threshold: object
    flow_time: object
    max_time: object
    seed: int

    @property
    def adaptive(self):
        return self.lr_schedule == "adaptive"


def check_options(*, loss, beta, optimizer, lr, momentum, lr_schedule, lr_decay, lr_growth, lr_shrink,
                  weight_decay, stop, margin, loss_threshold, flow_time, max_time, seed, batch_size, augment,
                  epochs, steps):
    """Validate the options of `train` that do not depend on the data; raise ValueError naming the argument."""
    check_choice(loss, "loss", LOSSES)
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    check_choice(stop, "stop", STOP_RULES)
    seed = check_scalar(seed, "seed", int, min_val=0)
    if epochs is not None and steps is not None or (epochs is None and steps is None
                                                    and flow_time is None and max_time is None):
        raise ValueError("give exactly one of epochs and steps, or neither with a flow_time or max_time limit, "
                         f"got epochs={epochs!r}, steps={steps!r}")
    if stop == "loss" and loss_threshold is None:
        raise ValueError("stop='loss' needs loss_threshold=, the training loss to reach")
    options = TrainOptions(
        loss=loss, beta=check_number(beta, "beta", low_inclusive=False), optimizer=optimizer,
        lr=check_number(lr, "lr", low_inclusive=False), momentum=check_number(momentum, "momentum", high=1.0),
        lr_schedule=lr_schedule, lr_decay=check_number(lr_decay, "lr_decay"),
        lr_growth=check_number(lr_growth, "lr_growth", low=1.0),
        lr_shrink=check_number(lr_shrink, "lr_shrink", 0.0, False, 1.0),
        weight_decay=check_number(weight_decay, "weight_decay"), stop=stop,
        margin=check_number(margin, "margin", low=None),
        loss_threshold=None if loss_threshold is None else check_number(loss_threshold, "loss_threshold"),
        flow_time=None if flow_time is None else check_number(flow_time, "flow_time", low_inclusive=False),
        max_time=None if max_time is None else check_number(max_time, "max_time", low_inclusive=False),
        seed=int(seed))
    if options.adaptive:
        if optimizer != "gd" or augment is not None:
            raise ValueError("lr_schedule='adaptive' is for full-batch gradient descent: it needs optimizer='gd' "
                             f"and no augment, got optimizer={optimizer!r}, augment={augment!r}")
        if options.momentum or options.weight_decay:
            raise ValueError("lr_schedule='adaptive' compares plain loss values between steps: it needs momentum=0 "
                             f"and weight_decay=0, got {momentum!r} and {weight_decay!r}")
    if optimizer == "gd" and batch_size is not None:
        raise ValueError(f"optimizer='gd' is full-batch; batch_size must be None, got {batch_size!r}")
    if optimizer == "sgd" and batch_size is None:
        raise ValueError("optimizer='sgd' needs a batch_size")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be None or a callable (batch, generator) -> batch, got {augment!r}")
    if steps is None and epochs is None and options.max_time is None:
        check_reachable(options)
    return options


MAX_FLOW_STEPS = 10 ** 7    # steps a flow_time alone may take: beyond, say steps= or max_time= explicitly


def flow_time_after(options, steps: int) -> float:
    """Σ_{t<steps} η_t, the flow time that ``steps`` steps reach: steps·lr (constant), or for the inverse
    schedule η_t = lr/(1 + d·t), Σ = (lr/d)·(ψ(steps + 1/d) − ψ(1/d)) with ψ the digamma function (exact:
    Σ_t 1/(t + 1/d) telescopes ψ(x + 1) = ψ(x) + 1/x), which grows only like (lr/d)·ln(d·steps)."""
    from scipy.special import digamma
    if options.lr_schedule != "inverse" or options.lr_decay == 0:
        return steps * options.lr
    inverse = 1.0 / options.lr_decay
    return options.lr * inverse * float(digamma(steps + inverse) - digamma(inverse))


def check_reachable(options):
    """A ``flow_time`` that is the only limit must be reached within ``MAX_FLOW_STEPS`` steps (the adaptive
    schedule never steps below lr, so the constant rate bounds it); otherwise training would run for ever (the
    inverse schedule's time grows like a logarithm: lr=0.1, lr_decay=10, flow_time=0.5 needs ~e⁵⁰ steps).
    ValueError naming flow_time, with the time that is reachable."""
    if options.flow_time is None:
        return
    reachable = flow_time_after(options, MAX_FLOW_STEPS)
    if reachable >= options.flow_time:
        return
    rule = ("lr/(1 + lr_decay·t)" if options.lr_schedule == "inverse" and options.lr_decay
            else f"lr per step ({options.lr_schedule})")
    if options.lr_schedule == "inverse" and options.lr_decay:
        from scipy.special import digamma
        d = options.lr_decay
        exponent = options.flow_time * d / options.lr + float(digamma(1.0 / d))
        needed = f"about e^{exponent:.3g} ≈ 10^{exponent / math.log(10):.3g}"
    else:
        needed = f"{options.flow_time / options.lr:.3g}"
    raise ValueError(f"flow_time={options.flow_time:g} cannot be reached: with steps of {rule} (lr={options.lr:g}"
                     + (f", lr_decay={options.lr_decay:g}" if options.lr_schedule == "inverse" else "")
                     + f") it needs {needed} steps, and {MAX_FLOW_STEPS:.0e} steps reach only t = {reachable:.4g}. "
                     "Lower flow_time (or lr_decay), raise lr, or bound the run with steps=, epochs= or max_time=")


def check_checkpoint(checkpoint):
    """A checkpoint path that ``train`` can write at its end (its folder exists and is writable), checked before
    training (torch.save used to fail after all the work), or ValueError naming ``checkpoint``."""
    if checkpoint is not None:
        check_writable(checkpoint, "checkpoint")
    return checkpoint


def check_margin_targets(y, options):
    """stop='margin' reads the margins y·f: with loss='mse' the targets must be ±1 labels (ValueError naming
    stop, loss and y, not the hinge the margins borrow)."""
    if options.stop == "margin" and options.loss == "mse" and not bool(((y == 1) | (y == -1)).all()):
        values = torch.unique(y)[:5].tolist()
        raise ValueError(f"stop='margin' with loss='mse' needs y to hold labels -1 and +1 (the margins are y·f), got values "
                         f"{values}; use stop='loss' with loss_threshold= for real-valued targets")


def shape_error(X, module, exc):
    """The first forward pass failed (the wrong feature count: torch's "mat1 and mat2 shapes cannot be
    multiplied"): a ValueError naming X, its shape and the module."""
    return ValueError(f"X of shape {tuple(X.shape)} does not fit the module ({type(module).__name__}): "
                      f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def initial_loss_error(value, X, dtype):
    """The loss is not finite before any update: no learning rate is to blame, the data is too large for the
    model's dtype (X·1e300). A ValueError naming X and y."""
    peak = float(X.detach().abs().max()) if X.is_floating_point() and X.numel() else float("nan")
    return ValueError(f"the training loss is {value} before any update: the module's outputs on X (max |X| = "
                      f"{peak:.3g}) or the targets y overflow {str(dtype).replace('torch.', '')}; rescale X and y "
                      "(e.g. standardise them)")


def check_flags(**flags):
    """Each flag True or False (``quiet="no"`` would be truthy)."""
    for name, value in flags.items():
        check_bool(value, name)


def check_callbacks(callbacks):
    """A tuple of callables cb(step, module, history)."""
    if callable(callbacks):
        callbacks = (callbacks,)
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a callable or a list/tuple of callables (step, module, history), "
                        f"got {type(callbacks).__name__} {callbacks!r}")
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables (step, module, history), got {cb!r}")
    return callbacks


def check_device(device):
    """A torch.device from ``device``, refusing a CUDA/MPS device that this torch build cannot use."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was requested but this torch build sees no CUDA GPU "
                         "(torch.cuda.is_available() is False); pass device='cpu' or None")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was requested but MPS is not available; pass device='cpu' or None")
    return device


def check_data(X, y, loss, device, dtype):
    """(X, y) as tensors on the module's device and dtype (y prepared for `loss`), with the same sample count."""
    X, y = as_tensor(X, "X"), as_tensor(y, "y")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of samples, got {X.shape[0]} and {y.shape[0]}")
    if X.is_complex() or X.dtype == torch.bool:
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    return X.to(device=device, dtype=dtype), prepare_targets(y, loss, dtype).to(device)
