"""Training loops: full-batch gradient descent (constant, inverse or adaptive step) or minibatch SGD (with
momentum), with stop rules, seeded and resumable.

The lazy objective. For a `Lazy` module h_α = α(h − h(w₀)) (or the `Linearized` of one), Chizat, Oyallon & Bach
(NeurIPS 2019, eq. (2)) minimise F_α(w) = R(h_α(w)) / α². `train` therefore multiplies the loss by
`loss_scale` = 1/α² by default (override with `loss_scale=`). With that factor, gradient flow moves h_α at a speed
independent of α: the same `lr` and number of steps give the same time horizon t = Σ_k lr_k for every α, the time
of the kernel gradient flow df/dt = −Θ ∇ℓ(f)/n of `kernels.solve.flow`.
The recorded losses are the unscaled risk R(h_α(w_t)), measured on the batch before step t's update.
The losses and their formulas are in `nets.losses`; the argument checks in `nets.training_checks`.
"""
import contextlib
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from kernels import check_scalar
from nets import losses
from nets.lazy import Lazy
from nets.training_checks import (check_callbacks, check_count, check_data, check_device, check_number,
                                  check_options)

STOP_REASONS = ("steps", "flow_time", "max_time", "margin", "loss", "callback")


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """What `train` records: per step, the unscaled loss R on the batch (before the update), the batch
    accuracy (cross-entropy only) and the learning rate; the total wall time in seconds (across resumes);
    `flow_time` = Σ lr over the steps taken (the gradient-flow time reached); `rejected_steps`, the trial steps
    the adaptive schedule refused; `stop_reason`, why training ended (one of STOP_REASONS)."""

    steps: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    accuracies: list = field(default_factory=list)
    lrs: list = field(default_factory=list)
    wall_time: float = 0.0
    loss_scale: float = 1.0
    flow_time: float = 0.0
    rejected_steps: int = 0
    stop_reason: str = ""


def lazy_scale(module):
    """α of the `Lazy` modules anywhere inside `module` (itself, a `Linearized` of one, or nested in containers);
    None when there is none. Raises ValueError when two of them have different scales (nested `Lazy` modules or
    several branches): then the loss scale is ambiguous and must be given as `train(loss_scale=)`."""
    scales = sorted({m.scale for m in module.modules() if isinstance(m, Lazy)})
    if len(scales) > 1:
        raise ValueError(f"the module holds Lazy modules with different scales {scales}: the loss scale 1/alpha^2 "
                         "is ambiguous; pass train(loss_scale=) explicitly")
    return scales[0] if scales else None


def random_crop_flip(padding=4):
    """Augmentation for image batches (N, C, H, W): zero-pad by `padding`, crop back to H×W at a random
    offset, and flip horizontally with probability 1/2 (the usual CIFAR-10 recipe). Returns a callable
    `augment(batch, generator)` for `train(..., augment=)`; all randomness comes from `generator`."""
    padding = check_scalar(padding, "padding", int, min_val=0)

    def augment(batch, generator):
        n, _, h, w = batch.shape
        padded = F.pad(batch, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=batch.device)
        flips = torch.rand(n, generator=generator, device=batch.device) < 0.5
        out = torch.stack([padded[i, :, r:r + h, c:c + w] for i, (r, c) in enumerate(offsets.tolist())])
        return torch.where(flips[:, None, None, None], out.flip(-1), out)

    return augment


def _subseed(*words):
    """A 63-bit seed derived from integers (NumPy SeedSequence), so every epoch and step has its own stream."""
    return int(np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def train(module, X, y, *, loss="mse", beta=1.0, optimizer="gd", lr=0.1, momentum=0.0, batch_size=None,
          epochs=None, steps=None, lr_schedule="constant", lr_decay=0.0, lr_growth=1.1, lr_shrink=0.5,
          weight_decay=0.0, augment=None, stop=None, margin=1.0, loss_threshold=None, flow_time=None,
          max_time=None, seed=0, device=None, callbacks=(), checkpoint=None, checkpoint_every=None,
          loss_scale=None, quiet=False):
    """Train `module` in place on (X, y) and return its `History`.

    loss: one of `nets.losses.LOSSES` ('mse', 'cross_entropy', 'hinge', 'quadratic_hinge', 'softhinge' with
    sharpness `beta`, 'logistic'); margin losses take ±1 labels, or integer labels for C ≥ 2 outputs
    (one-vs-rest). optimizer 'gd' takes full-batch steps (`batch_size` must be None); 'sgd' takes minibatches of
    `batch_size` drawn without replacement from a fresh permutation each epoch. Both use `torch.optim.SGD` with
    `momentum` and `weight_decay`. lr_schedule 'inverse' uses η_t = lr / (1 + lr_decay·t) at step t; 'inverse_epoch'
    η = lr / (1 + lr_decay·e) during epoch e = 0, 1, ... of ⌈n/batch_size⌉ steps (the authors' CNN schedule,
    lr_decay = 1/3; for full-batch 'gd' an epoch is one step); 'constant' uses lr; 'adaptive' (full-batch 'gd', no
    momentum or weight decay) starts at lr and multiplies the step by `lr_growth` after each step that does not
    increase the loss, and by `lr_shrink` with a retry from the same point when a trial step increases it (or
    makes it NaN), never below lr.

    Limits (training ends at the first one reached; `History.stop_reason` says which): `steps` or `epochs`
    (at most one), `flow_time` (the time Σ lr of the gradient flow; the last step is shortened to land on it),
    `max_time` (wall-clock seconds, across resumes), and the stop rules, checked on the whole training set
    before each full-batch step (after each epoch for 'sgd'): stop='margin' when every training margin
    exceeds `margin` (y·f for ±1 targets, each output one-vs-rest; f_y − max_{k≠y} f_k for cross-entropy),
    stop='loss' when the training loss R is below `loss_threshold`.
    `augment(batch, generator)` transforms each input batch (e.g. `random_crop_flip()`).
    The run is a deterministic function of the module's initial state and `seed` on the CPU: the permutation
    of epoch e and the augmentation of step t come from generators seeded by (seed, e) and (seed, t).
    `callbacks`: callables `cb(step, module, history)` called after each step (step = updates done so far);
    one returning True stops training. `checkpoint`: a file path; the state (module, optimizer, step, history,
    torch RNG) is written atomically every `checkpoint_every` steps (default: max(1, total // 10)) and at the end, and
    if the file exists when `train` starts, training resumes from it, bit-for-bit on the CPU.
    `loss_scale` defaults to 1/α² for the `Lazy` modules found anywhere inside `module` (see `lazy_scale`).
    Full-batch training without augmentation evaluates each `Lazy` module's frozen network once
    (`Lazy.cache_initial`). `device`: where to train (default: where the module is).
    Raises DivergenceError on a NaN/inf loss.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    opts = check_options(loss=loss, beta=beta, optimizer=optimizer, lr=lr, momentum=momentum,
                         lr_schedule=lr_schedule, lr_decay=lr_decay, lr_growth=lr_growth, lr_shrink=lr_shrink,
                         weight_decay=weight_decay, stop=stop, margin=margin, loss_threshold=loss_threshold,
                         flow_time=flow_time, max_time=max_time, seed=seed, batch_size=batch_size,
                         augment=augment, epochs=epochs, steps=steps)
    callbacks = check_callbacks(callbacks)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("module has no parameter that requires grad")
    if device is not None:
        module.to(check_device(device))
    device, dtype = params[0].device, params[0].dtype
    X, y = check_data(X, y, loss, device, dtype)
    n = X.shape[0]
    if optimizer == "sgd":
        batch_size = check_count(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"batch_size must be <= the number of samples {n}, got {batch_size}")
    else:
        batch_size = n
    per_epoch = math.ceil(n / batch_size)
    total = (check_count(steps, "steps") if steps is not None
             else check_count(epochs, "epochs") * per_epoch if epochs is not None else None)
    every = (check_count(checkpoint_every, "checkpoint_every") if checkpoint_every is not None
             else max(1, (total or 1000) // 10))

    alpha = lazy_scale(module) if loss_scale is None else None
    if loss_scale is None:
        loss_scale = 1.0 / alpha ** 2 if alpha is not None else 1.0
    loss_scale = check_number(loss_scale, "loss_scale", low_inclusive=False)
    opt = torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    history = History(loss_scale=loss_scale)
    config = dict(loss=loss, optimizer=optimizer, lr=opts.lr, momentum=opts.momentum, batch_size=batch_size,
                  lr_schedule=lr_schedule, lr_decay=opts.lr_decay, weight_decay=opts.weight_decay, seed=opts.seed,
                  loss_scale=loss_scale, n=n)
    if loss == "softhinge":
        config["beta"] = opts.beta
    if opts.adaptive:
        config.update(lr_growth=opts.lr_growth, lr_shrink=opts.lr_shrink)
    start, next_lr = 0, opts.lr
    if checkpoint is not None:
        config.update(data=fingerprint(X, y), model=model_fingerprint(module))   # before any step or resume
    if checkpoint is not None and os.path.exists(checkpoint):
        start, next_lr = _resume(checkpoint, module, opt, history, config)
    run = _Run(module, opts, alpha)
    full_batch = optimizer == "gd" and augment is None

    bar = tqdm(total=total, initial=min(start, total or start), disable=quiet, desc="train", leave=False)
    permutation, permutation_epoch, began = None, -1, time.perf_counter()
    pending, reason, t, saved_at = None, None, start, start

    def save():
        nonlocal began, saved_at
        history.wall_time += time.perf_counter() - began
        began, saved_at = time.perf_counter(), t
        _save(checkpoint, module, opt, history, config, t, next_lr)

    try:
        with contextlib.ExitStack() as stack:
            if full_batch:
                for lazy in {id(m): m for m in module.modules() if isinstance(m, Lazy)}.values():
                    stack.enter_context(lazy.cache_initial(X))
            while reason is None:
                reason = _limit_reached(t, total, history, opts, time.perf_counter() - began)
                if reason is not None:
                    break
                epoch, i = divmod(t, per_epoch)
                if optimizer == "sgd":
                    if epoch != permutation_epoch:
                        gen = torch.Generator().manual_seed(_subseed(opts.seed, 0, epoch))
                        permutation, permutation_epoch = torch.randperm(n, generator=gen).to(device), epoch
                    index = permutation[i * batch_size:(i + 1) * batch_size]
                    xb = X[index]
                else:
                    index, xb = None, X
                if augment is not None:
                    xb = augment(xb, torch.Generator(device=device).manual_seed(_subseed(opts.seed, 1, t)))
                step_lr = next_lr if opts.adaptive else _scheduled_lr(opts, t, epoch)
                if opts.flow_time is not None:
                    step_lr = min(step_lr, opts.flow_time - history.flow_time)
                output, risk = pending if pending is not None else run.evaluate(xb, y, index)
                y = run.y
                yb = y if index is None else y[index]
                value = run.check_finite(risk, t, step_lr)
                if opts.stop is not None and i == 0:
                    full = output if full_batch else run.evaluate(X, y, None, grad=False)[0]
                    if run.stop_rule_met(full, y, value if full_batch else None):
                        reason = opts.stop
                        break
                opt.zero_grad(set_to_none=True)
                (loss_scale * risk).backward()
                if opts.adaptive:
                    cap = math.inf if opts.flow_time is None else opts.flow_time - history.flow_time
                    step_lr, pending = run.adaptive_step(params, X, value, step_lr, history, cap)
                    next_lr = step_lr * opts.lr_growth
                else:
                    for group in opt.param_groups:
                        group["lr"] = step_lr
                    opt.step()

                history.steps.append(t)
                history.losses.append(value)
                history.lrs.append(step_lr)
                history.flow_time += step_lr
                if loss == "cross_entropy":
                    history.accuracies.append((output.argmax(1) == yb).double().mean().item())
                t += 1
                bar.update(1)
                if t % max(1, (total or 1000) // 100) == 1:
                    bar.set_postfix(loss=f"{value:.4g}")
                if any(cb(t, module, history) is True for cb in callbacks):
                    reason = "callback"
                if checkpoint is not None and (t % every == 0 or reason is not None):
                    save()
        history.stop_reason = reason
        if checkpoint is not None and saved_at != t:
            save()
    finally:
        bar.close()
        history.wall_time += time.perf_counter() - began
        began = time.perf_counter()
    return history


def _scheduled_lr(opts, t, epoch):
    """η at step t of epoch `epoch`: lr/(1 + lr_decay·t) ('inverse'), lr/(1 + lr_decay·epoch) ('inverse_epoch',
    constant within an epoch), lr ('constant')."""
    if opts.lr_schedule == "inverse":
        return opts.lr / (1.0 + opts.lr_decay * t)
    if opts.lr_schedule == "inverse_epoch":
        return opts.lr / (1.0 + opts.lr_decay * epoch)
    return opts.lr


def _limit_reached(t, total, history, opts, elapsed):
    if total is not None and t >= total:
        return "steps"
    if opts.flow_time is not None and history.flow_time >= opts.flow_time * (1 - 1e-12):
        return "flow_time"
    if opts.max_time is not None and history.wall_time + elapsed >= opts.max_time:
        return "max_time"
    return None


class _Run:
    """The per-call state of `train` shared by its steps: loss evaluation, stop rules and the adaptive step."""

    def __init__(self, module, opts, alpha):
        self.module, self.opts, self.alpha = module, opts, alpha
        self.y = None   # the targets in the form the loss uses, known after the first forward pass

    def evaluate(self, xb, y, index, grad=True):
        """(output, risk) of the module on the batch (rows `index` of y, all when None). On the first call the
        targets are checked against the output's shape and matched to the loss (`nets.losses.match_output`)."""
        with torch.set_grad_enabled(grad):
            output = self.module(xb)
            if self.y is None:
                self.y = losses.match_output(output, y, self.opts.loss)
                if self.opts.stop == "margin" and self.opts.loss == "mse":
                    losses.match_output(output, self.y, "hinge")   # margins y·f need ±1 targets
            target = self.y if index is None else self.y[index]
            return output, losses.risk(output, target, self.opts.loss, self.opts.beta)

    def check_finite(self, risk, t, step_lr):
        value = risk.item()
        if not math.isfinite(value):
            scale_note = f" for this scale alpha={self.alpha:g}" if self.alpha is not None else ""
            raise DivergenceError(f"training diverged at step {t}: loss = {value}. The learning rate "
                                  f"lr={step_lr:g} is probably too large{scale_note}; lower it.")
        return value

    def stop_rule_met(self, output, y, value):
        """stop='margin': every training margin > `margin`; stop='loss': the training loss < `loss_threshold`."""
        if self.opts.stop == "margin":
            return bool((losses.margins(output, y, self.opts.loss) > self.opts.margin).all())
        if value is None:
            value = losses.risk(output, y, self.opts.loss, self.opts.beta).item()
        return value < self.opts.loss_threshold

    @torch.no_grad()
    def adaptive_step(self, params, X, value, step_lr, history, cap):
        """From w (gradients in p.grad) try w − η·∇F; accept when the loss does not increase, else multiply η by
        `lr_shrink` and retry from w, down to the base step `lr`, which is always taken (as plain GD would: a loss
        that is not smooth, like the hinge near its kink, can refuse every larger step). Returns (η accepted,
        (output, risk) at the new point, with autograd). `cap` bounds every step (the flow time left)."""
        start = [p.detach().clone() for p in params]
        grads = [p.grad for p in params]
        floor = min(self.opts.lr, cap)
        while True:
            step_lr = min(max(step_lr, floor), cap)
            for p, w, g in zip(params, start, grads):
                p.copy_(w).add_(g, alpha=-step_lr)
            output, risk = self.evaluate(X, None, None)
            trial = risk.item()
            if step_lr <= floor or (math.isfinite(trial) and trial <= value):
                return step_lr, (output, risk)
            history.rejected_steps += 1
            step_lr *= self.opts.lr_shrink


def _save(path, module, opt, history, config, step, next_lr):
    """Write the training state to `path` atomically (a temporary file, then os.replace)."""
    state = dict(module=module.state_dict(), optimizer=opt.state_dict(), history=asdict(history),
                 config=config, step=step, next_lr=next_lr, torch_rng=torch.get_rng_state())
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


def model_fingerprint(module, state=None) -> str:
    """The fingerprint of a module's class, parameter and buffer names and values (its current state, or
    ``state``, a state dict of it)."""
    state = module.state_dict() if state is None else state
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
    if "model" in differing and model_fingerprint(module, state["module"]) == config["model"]:
        differing.remove("model")   # the very module that wrote the checkpoint, continuing where it stopped
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
    return state["step"], state.get("next_lr", config["lr"])
