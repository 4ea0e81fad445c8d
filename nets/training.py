"""Training loops: full-batch gradient descent or minibatch SGD (with momentum), seeded and resumable.

The lazy objective. For a `Lazy` module h_α = α(h − h(w₀)) (or the `Linearized` of one), Chizat, Oyallon & Bach
(NeurIPS 2019, eq. (2)) minimise F_α(w) = R(h_α(w)) / α². `train` therefore multiplies the loss by
`loss_scale` = 1/α² by default (override with `loss_scale=`). With that factor, gradient flow moves h_α at a speed
independent of α: the same `lr` and number of steps give the same time horizon for every α.
The recorded losses are the unscaled risk R(h_α(w_t)), measured on the batch before step t's update.

Losses: 'mse' is R(f) = (1/2n) Σ_i ‖f(x_i) − y_i‖² (docs/conventions.md, *Gradient flow and ridge*: the convention of
`kernels` solvers); 'cross_entropy' is the mean softmax cross-entropy on integer labels.
"""
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from numbers import Real

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from kernels import check_choice
from nets.lazy import Lazy, Linearized

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("gd", "sgd")
LR_SCHEDULES = ("constant", "inverse")


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """What `train` records: per step, the unscaled loss R on the batch (before the update), the batch
    accuracy (cross-entropy only) and the learning rate; the total wall time in seconds (across resumes)."""

    steps: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    accuracies: list = field(default_factory=list)
    lrs: list = field(default_factory=list)
    wall_time: float = 0.0
    loss_scale: float = 1.0


def lazy_scale(module):
    """α of a `Lazy` module or of the `Linearized` of a `Lazy`; None for any other module."""
    if isinstance(module, Linearized):
        module = module.model_at_init
    return module.scale if isinstance(module, Lazy) else None


def random_crop_flip(padding=4):
    """Augmentation for image batches (N, C, H, W): zero-pad by `padding`, crop back to H×W at a random
    offset, and flip horizontally with probability 1/2 (the usual CIFAR-10 recipe). Returns a callable
    `augment(batch, generator)` for `train(..., augment=)`; all randomness comes from `generator`."""
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")

    def augment(batch, generator):
        n, _, h, w = batch.shape
        padded = F.pad(batch, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=batch.device)
        flips = torch.rand(n, generator=generator, device=batch.device) < 0.5
        out = torch.stack([padded[i, :, r:r + h, c:c + w] for i, (r, c) in enumerate(offsets.tolist())])
        return torch.where(flips[:, None, None, None], out.flip(-1), out)

    return augment


def _check_number(value, name, low=0.0, low_inclusive=True, high=math.inf):
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and value < high
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and < {high:g}" if high < math.inf else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_device(device):
    """A torch.device from ``device``, refusing a CUDA/MPS device that this torch build cannot use."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was requested but this torch build sees no CUDA GPU "
                         "(torch.cuda.is_available() is False); pass device='cpu' or None")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device='mps' was requested but MPS is not available; pass device='cpu' or None")
    return device


def _as_tensor(array, name):
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        kind = np.asarray(array).dtype.kind if not isinstance(array, (str, bytes)) else "U"
        if kind not in "biufc":
            raise TypeError(f"{name} must be an array or tensor of numbers, got {type(array).__name__} with "
                            f"dtype kind {kind!r}")
        tensor = torch.as_tensor(np.asarray(array))
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array with samples along axis 0, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _prepare_targets(y, loss, dtype):
    if y.is_complex():
        raise ValueError(f"y must hold real numbers, got dtype {y.dtype}")
    if loss == "cross_entropy":
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError("y must hold integer class labels for loss='cross_entropy'")
        elif y.dtype == torch.bool or y.is_complex():
            raise ValueError(f"y must hold integer class labels for loss='cross_entropy', got dtype {y.dtype}")
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels for loss='cross_entropy', got shape {tuple(y.shape)}")
        return y.long()
    return y.to(dtype)


def _risk(output, target, loss):
    if loss == "cross_entropy":
        return F.cross_entropy(output, target)
    if target.ndim == 1 and output.ndim == 2:
        target = target.unsqueeze(1)
    return 0.5 * ((output - target) ** 2).sum() / output.shape[0]


def _check_output(output, y, loss):
    if loss == "cross_entropy":
        if output.ndim != 2:
            raise ValueError("loss='cross_entropy' needs module outputs of shape (N, classes), "
                             f"got {tuple(output.shape)}")
        classes = output.shape[1]
        if y.min() < 0 or y.max() >= classes:
            raise ValueError(f"labels in y must lie in [0, {classes}) for a module with {classes} outputs, "
                             f"got range [{int(y.min())}, {int(y.max())}]")
    else:
        allowed = [(), (1,)] if y.ndim == 1 else [tuple(y.shape[1:])]
        if tuple(output.shape[1:]) not in allowed:
            raise ValueError(f"loss='mse': module outputs have shape {tuple(output.shape)} but y has shape "
                             f"{tuple(y.shape)}")


def _subseed(*words):
    """A 63-bit seed derived from integers (NumPy SeedSequence), so every epoch and step has its own stream."""
    return int(np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def train(module, X, y, *, loss="mse", optimizer="gd", lr=0.1, momentum=0.0, batch_size=None, epochs=None,
          steps=None, lr_schedule="constant", lr_decay=0.0, weight_decay=0.0, augment=None, seed=0, device=None,
          callbacks=(), checkpoint=None, checkpoint_every=None, loss_scale=None, quiet=False):
    """Train `module` in place on (X, y) and return its `History`.

    optimizer 'gd' takes full-batch steps (`batch_size` must be None); 'sgd' takes minibatches of `batch_size`
    drawn without replacement from a fresh permutation each epoch. Both use `torch.optim.SGD` with `momentum`
    and `weight_decay`. Give exactly one of `epochs` and `steps`. lr_schedule 'inverse' uses
    η_t = lr / (1 + lr_decay·t) at step t (the paper's schedule); 'constant' uses lr.
    `augment(batch, generator)` transforms each input batch (e.g. `random_crop_flip()`).
    The run is a deterministic function of the module's initial state and `seed` on the CPU: the permutation
    of epoch e and the augmentation of step t come from generators seeded by (seed, e) and (seed, t).
    `callbacks`: callables `cb(step, module, history)` called after each step (step = updates done so far);
    one returning True stops training. `checkpoint`: a file path; the state (module, optimizer, step, history,
    torch RNG) is written atomically every `checkpoint_every` steps (default: max(1, total // 10)) and at the end, and
    if the file exists when `train` starts, training resumes from it, bit-for-bit on the CPU.
    `device`: where to train (default: where the module is). Raises DivergenceError on a NaN/inf loss.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_choice(loss, "loss", LOSSES)
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    lr = _check_number(lr, "lr", low_inclusive=False)
    momentum = _check_number(momentum, "momentum", high=1.0)
    lr_decay = _check_number(lr_decay, "lr_decay")
    weight_decay = _check_number(weight_decay, "weight_decay")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be None or a callable (batch, generator) -> batch, got {augment!r}")
    if callable(callbacks):
        callbacks = (callbacks,)
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a callable or a list/tuple of callables (step, module, history), "
                        f"got {type(callbacks).__name__} {callbacks!r}")
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables (step, module, history), got {cb!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs and steps, got epochs={epochs!r}, steps={steps!r}")

    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("module has no parameter that requires grad")
    if device is not None:
        module.to(_check_device(device))
    device, dtype = params[0].device, params[0].dtype
    X = _as_tensor(X, "X")
    y = _as_tensor(y, "y")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of samples, got {X.shape[0]} and {y.shape[0]}")
    if X.is_complex() or X.dtype == torch.bool:
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    X = X.to(device=device, dtype=dtype)
    y = _prepare_targets(y, loss, dtype).to(device)
    n = X.shape[0]

    if optimizer == "gd":
        if batch_size is not None:
            raise ValueError(f"optimizer='gd' is full-batch; batch_size must be None, got {batch_size!r}")
        batch_size = n
    else:
        if batch_size is None:
            raise ValueError("optimizer='sgd' needs a batch_size")
        batch_size = _check_count(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"batch_size must be <= the number of samples {n}, got {batch_size}")
    per_epoch = math.ceil(n / batch_size)
    total = _check_count(steps, "steps") if steps is not None else _check_count(epochs, "epochs") * per_epoch
    every = _check_count(checkpoint_every, "checkpoint_every") if checkpoint_every is not None else max(1, total // 10)

    alpha = lazy_scale(module)
    if loss_scale is None:
        loss_scale = 1.0 / alpha ** 2 if alpha is not None else 1.0
    loss_scale = _check_number(loss_scale, "loss_scale", low_inclusive=False)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = History(loss_scale=loss_scale)
    config = dict(loss=loss, optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size,
                  lr_schedule=lr_schedule, lr_decay=lr_decay, weight_decay=weight_decay, seed=seed,
                  loss_scale=loss_scale, n=n)
    start = 0
    if checkpoint is not None:
        config.update(data=fingerprint(X, y), model=model_fingerprint(module))   # before any step or resume
    if checkpoint is not None and os.path.exists(checkpoint):
        start = _resume(checkpoint, module, opt, history, config)

    bar = tqdm(total=total, initial=min(start, total), disable=quiet, desc="train", leave=False)
    permutation, permutation_epoch, began = None, -1, time.perf_counter()
    checked = False
    try:
        for t in range(start, total):
            epoch, i = divmod(t, per_epoch)
            if optimizer == "sgd":
                if epoch != permutation_epoch:
                    gen = torch.Generator().manual_seed(_subseed(seed, 0, epoch))
                    permutation, permutation_epoch = torch.randperm(n, generator=gen).to(device), epoch
                index = permutation[i * batch_size:(i + 1) * batch_size]
                xb, yb = X[index], y[index]
            else:
                xb, yb = X, y
            if augment is not None:
                gen = torch.Generator(device=device).manual_seed(_subseed(seed, 1, t))
                xb = augment(xb, gen)
            step_lr = lr / (1.0 + lr_decay * t) if lr_schedule == "inverse" else lr
            for group in opt.param_groups:
                group["lr"] = step_lr

            output = module(xb)
            if not checked:
                _check_output(output, y, loss)
                checked = True
            risk = _risk(output, yb, loss)
            value = risk.item()
            if not math.isfinite(value):
                scale_note = f" for this scale alpha={alpha:g}" if alpha is not None else ""
                raise DivergenceError(f"training diverged at step {t}: loss = {value}. The learning rate "
                                      f"lr={step_lr:g} is probably too large{scale_note}; lower it.")
            opt.zero_grad(set_to_none=True)
            (loss_scale * risk).backward()
            opt.step()

            history.steps.append(t)
            history.losses.append(value)
            history.lrs.append(step_lr)
            if loss == "cross_entropy":
                history.accuracies.append((output.argmax(1) == yb).double().mean().item())
            bar.update(1)
            if t % max(1, total // 100) == 0:
                bar.set_postfix(loss=f"{value:.4g}")
            stop = any(cb(t + 1, module, history) is True for cb in callbacks)
            if checkpoint is not None and ((t + 1) % every == 0 or t + 1 == total or stop):
                history.wall_time += time.perf_counter() - began
                began = time.perf_counter()
                _save(checkpoint, module, opt, history, config, t + 1)
            if stop:
                break
    finally:
        bar.close()
        history.wall_time += time.perf_counter() - began
    return history


def _save(path, module, opt, history, config, step):
    """Write the training state to `path` atomically (a temporary file, then os.replace)."""
    state = dict(module=module.state_dict(), optimizer=opt.state_dict(), history=asdict(history),
                 config=config, step=step, torch_rng=torch.get_rng_state())
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


CHECKPOINT_KEYS = ("module", "optimizer", "history", "config", "step", "torch_rng")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be resumed: unreadable, not written by `train`, or from another run."""


def fingerprint(*tensors) -> str:
    """SHA-256 (first 16 hex digits) of tensors' dtypes, shapes and bytes: identifies a dataset or the initial
    weights of a model, so a checkpoint is never resumed on other data or another model of the same shapes."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def model_fingerprint(module) -> str:
    """The fingerprint of a module's class, parameter and buffer names and its current values."""
    state = module.state_dict()
    return fingerprint(*state.values()) + ":" + hashlib.sha256(
        (type(module).__name__ + ",".join(state)).encode()).hexdigest()[:8]


def _load_checkpoint(path):
    """The state dict saved by `_save`, or one CheckpointError naming the file (garbage, empty, wrong dict)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # noqa: BLE001  torch raises anything from EOFError to UnpicklingError here
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read as a lazykit training checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'empty'}); "
                              "delete it or pass another checkpoint path") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"checkpoint {str(path)!r} is not a lazykit training checkpoint (missing "
                              f"{', '.join(missing) or 'config'}); delete it or pass another checkpoint path")
    return state


def _resume(path, module, opt, history, config):
    state = _load_checkpoint(path)
    differing = sorted(k for k in config if state["config"].get(k) != config[k])
    if differing:
        what = {"data": "a different dataset (X, y)", "model": "a different model (architecture or initial "
                "weights)"}
        pairs = ", ".join(what.get(k, f"{k}: saved {state['config'].get(k)!r} vs now {config[k]!r}")
                          for k in differing)
        raise CheckpointError(f"checkpoint {str(path)!r} was written by a different training setup ({pairs}); "
                              "delete it or pass another checkpoint path")
    module.load_state_dict(state["module"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    for key, value in state["history"].items():
        setattr(history, key, value)
    return state["step"]
