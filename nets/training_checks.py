"""Argument checks of `nets.train`: every option validated once, before any training work, into `TrainOptions`."""
from dataclasses import dataclass

import numpy as np
import torch

from kernels import check_choice, check_scalar
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
    return options


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
