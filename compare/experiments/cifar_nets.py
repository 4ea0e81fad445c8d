"""The CIFAR-10 network protocol shared by ``table`` and ``alpha-sweep`` (this module declares no experiment).

One network row trains ``nets.VGG`` or ``nets.ResNet`` (no BatchNorm, ``width_factor`` times the usual channels)
by SGD with momentum on minibatches with random crops and flips, and reports test accuracy, train loss, the
stability of its gates and the step it trained with. The settings (every one a preset key):

- ``init``: 'kaiming' (lazykit's default) or 'xavier' (the authors': Xavier-normal with ``gain``, zero biases,
  on convs and head; ``nets.models``).
- methods: ``net`` = the network centred as the authors do, h(w) − h(w₀) (= ``Lazy(net, 1)``); ``net_uncentred``
  = the network as it is, h(w); ``lazy`` = ``Lazy(net, α)``, α·(h(w) − h(w₀)) trained on the loss / α²;
  ``linearized`` = lazykit's Taylor model ``Linearized(Lazy(net, 1))``. Beside each trained row the authors'
  "linearized" accuracy, ``frozen_gates_accuracy``: the trained net with its ReLU signs and max-pool selections
  frozen at init (``nets.FrozenGates``).
- ``loss``: 'cross_entropy', 'mse' (lazykit's ½‖f − y‖² per image on one-hot targets) or 'mse_mean' (PyTorch's
  nn.MSELoss: the mean over images × classes of (f − y)², no ½ — the authors' script.sh; = (2/C)·'mse'); under
  ``Lazy`` each is divided by α² (MSE(αh, y)/α² = MSE(h, y/α), the authors' target y/α).
- ``lr``: a number, or "kernel" — lr = ``lr_factor``·2(1 + β)·B/(c·λ_max) with λ_max the top
  eigenvalue of the network's empirical NTK at init on its first training batch of B images (all output blocks,
  by power iteration: ``nets.ntk_lambda_max``) and c the loss's curvature (½ for cross-entropy, 1 for 'mse', 2/C
  for 'mse_mean'; ``nets.step_size``). Every row records lr, lambda_max, lr_limit and lr_over_limit; the report
  flags rows above 1. The same limit holds for every method and α (α² of the lazy NTK and 1/α² of the loss cancel).
- ``lr_schedule``: 'inverse' η₀/(1 + lr_decay·t) per step, or 'inverse_epoch' η₀/(1 + lr_decay·e) per epoch e
  (the authors': lr_decay = 1/3); ``momentum`` (0.9), ``batch_size``, ``epochs``, no weight decay.
- ``dtype``: 'float32', 'float64', or 'auto' (float64 from α = 10⁵: the output α·(h(w) − h(w₀)) cancels about
  log10 α of float32's 7 digits, and each step moves the weights by ~1/α of their size; measured on the quick
  alpha-sweep, float32 gives 78.2% at α = 10⁴ as float64 does, 77.4% against 78.2% at 10⁵ and 66.2% against 78.2%
  at 10⁷; the authors ran everything in float64).

A row that diverges (NaN/inf loss) says ``diverged``; one whose test predictions are all one class says
``collapsed`` and carries no ``test_accuracy``.
"""
from __future__ import annotations

import math

import numpy as np

from kernels import check_choice

from compare.data import load_split
from compare.seeding import seeded_torch

MODELS = ("vgg11", "resnet18")
NET_METHODS = ("net", "net_uncentred", "lazy", "linearized")
LOSSES = ("cross_entropy", "mse", "mse_mean")
INITS = ("kaiming", "xavier")
DTYPES = ("float32", "float64", "auto")
LR_SCHEDULES = ("inverse", "inverse_epoch")
FLOAT64_FROM_ALPHA = 1e5    # dtype="auto": float64 from this α on
EVAL_BATCH = 250


def check_settings(p: dict, lrs, key: str = "lr") -> None:
    """The protocol's settings (``lrs``: the lr settings the runs use), refused with one line naming the key
    before anything runs."""
    for model in p["models"]:
        check_choice(model, "model", MODELS)
    check_choice(p["init"], "init (--set init=)", INITS)
    check_choice(p["loss"], "loss (--set loss=)", LOSSES)
    check_choice(p["dtype"], "dtype (--set dtype=)", DTYPES)
    check_choice(p["lr_schedule"], "lr_schedule (--set lr_schedule=)", LR_SCHEDULES)
    check_choice(p["frozen_gates_pool"], "frozen_gates_pool (--set frozen_gates_pool=)", ("gather", "authors"))
    for lr in lrs:
        if not (lr == "kernel" or (isinstance(lr, (int, float)) and not isinstance(lr, bool)
                                   and math.isfinite(lr) and lr > 0)):
            raise ValueError(f"{key} must be a number > 0 or 'kernel' (lr_factor times the NTK's stability limit), "
                             f"got {lr!r}")


def split(run):
    """The run's CIFAR-10 split (float32 images, standardised per channel on the training part)."""
    p = run.params
    return load_split("cifar10", p["n_train"], p["n_test"], run.seed, p["data_dir"], p["classes"], dtype="float32")


def network(run, n_classes):
    """The run's network at init, float32, drawn from the seed (the same w₀ for every method and α of a seed)."""
    from nets import VGG, ResNet
    p = run.params
    depth = int(run.model.lstrip("vgresnt"))
    cls = VGG if run.model.startswith("vgg") else ResNet
    with seeded_torch(run.seed):
        return cls(depth, width_factor=p["width_factor"], batch_norm=False, num_classes=n_classes,
                   init=p["init"], gain=p["gain"])


def torch_dtype(run):
    """float32 or float64 for this run (dtype 'auto': float64 from α = FLOAT64_FROM_ALPHA)."""
    import torch
    dtype = run.params["dtype"]
    if dtype == "auto":
        dtype = "float64" if (run.alpha or 1.0) >= FLOAT64_FROM_ALPHA else "float32"
    return getattr(torch, dtype)


def trained_module(run, net):
    """The module a method trains, built around ``net`` (its frozen copies taken now, at w₀)."""
    from nets import Lazy, Linearized
    return {"net": lambda: Lazy(net, 1.0), "net_uncentred": lambda: net, "lazy": lambda: Lazy(net, run.alpha),
            "linearized": lambda: Linearized(Lazy(net, 1.0))}[run.method]()


def loss_terms(loss, n_classes, alpha):
    """(loss name for nets.train, loss_scale, curvature c of the scaled loss, factor from R to the reported
    loss). 'mse_mean' is nets' 'mse' times 2/C; every loss is divided by α²."""
    factor = 2.0 / n_classes if loss == "mse_mean" else 1.0
    name = "mse" if loss == "mse_mean" else loss
    from nets import loss_curvature
    return name, factor / alpha ** 2, loss_curvature(name, factor), factor


def lambda_max(run, net, X_train, memo):
    """λ_max of the network's empirical NTK at init on its first training batch (float32; shared by a seed's
    methods and α through ``memo``)."""
    from nets import ntk_lambda_max
    p = run.params
    batch = min(p["batch_size"], len(X_train))
    key = {"lambda_max": run.model, "seed": run.seed, "batch": batch}
    return memo.get(key, lambda: ntk_lambda_max(net, X_train[:batch], iters=p["power_iterations"], seed=run.seed))


def step_for(run, net, X_train, n_classes, memo):
    """The run's KernelStep: its lr (given, or from the kernel) against the stability limit."""
    from nets import kernel_step
    p = run.params
    # the curvature of the loss as trained, c·factor: the α² of the lazy NTK cancels the loss's 1/α²
    _, _, curvature, _ = loss_terms(p["loss"], n_classes, 1.0)
    lam = lambda_max(run, net, X_train, memo)
    batch = min(p["batch_size"], len(X_train))
    setting = p["lr"]
    kwargs = {"lr_factor": p["lr_factor"]} if setting == "kernel" else {"lr": setting}
    return kernel_step(lam, batch, p["momentum"], curvature, **kwargs)


def _targets(ds, loss, dtype, device):
    import torch
    y = torch.as_tensor(ds.y_train, device=device)
    if loss == "cross_entropy":
        return y
    return torch.nn.functional.one_hot(y.long(), int(ds.n_classes)).to(dtype)


def _predict(module, X):
    import torch
    with torch.no_grad():
        return torch.cat([module(X[i:i + EVAL_BATCH]) for i in range(0, len(X), EVAL_BATCH)]).cpu().numpy()


def score(logits, y) -> dict:
    """{"test_accuracy"} or, when every prediction is one class, {"collapsed": ..., "predicted_class"}."""
    predicted = logits.argmax(1)
    if len(np.unique(predicted)) == 1 and len(np.unique(y)) > 1:
        return {"collapsed": True, "predicted_class": int(predicted[0])}
    return {"test_accuracy": float(np.mean(predicted == y))}


def gates_of(run, module, initial):
    """The (module, initial) pair the gate diagnostics read, or None for the Taylor model (no gates)."""
    if run.method == "linearized":
        return None
    return (module, None) if run.method != "net_uncentred" else (module, initial)


def train_row(run, ds, memo, per_epoch=False) -> dict:
    """Train the run's method; its metrics (module docstring). ``per_epoch``: also the test accuracy, train loss
    and unchanged gates per layer after every epoch (lists, epoch 1 first)."""
    import torch
    from nets import (DivergenceError, FrozenGates, random_crop_flip, relative_weight_change, train,
                      unchanged_gates_per_layer)
    p, device = run.params, run.device
    n_classes = int(ds.n_classes)
    dtype = torch_dtype(run)
    X_train32 = torch.as_tensor(ds.X_train, device=device)
    net = network(run, n_classes).to(device)
    step = step_for(run, net, X_train32, n_classes, memo)
    net = net.to(dtype)
    module = trained_module(run, net)
    initial = network(run, n_classes).to(device=device, dtype=dtype) if run.method == "net_uncentred" else None
    X_train, X_test = X_train32.to(dtype), torch.as_tensor(ds.X_test, device=device, dtype=dtype)
    alpha = run.alpha if run.method == "lazy" else 1.0
    loss, loss_scale, _, factor = loss_terms(p["loss"], n_classes, alpha)
    batch = min(p["batch_size"], ds.n_train)
    per_epoch_steps = math.ceil(ds.n_train / batch)
    gates = gates_of(run, module, initial)
    n_gates = min(p["n_stability"] or ds.n_test, ds.n_test)
    epochs = {"test_accuracy_by_epoch": [], "train_loss_by_epoch": [], "unchanged_by_epoch": []}

    def at_epoch_end(t, trained, history):
        if not per_epoch or t % per_epoch_steps:
            return
        epochs["test_accuracy_by_epoch"].append(score(_predict(trained, X_test), ds.y_test).get("test_accuracy"))
        epochs["train_loss_by_epoch"].append(factor * float(np.mean(history.losses[-per_epoch_steps:])))
        if gates is not None:
            fractions = unchanged_gates_per_layer(gates[0], X_test[:n_gates], initial=gates[1])
            epochs["unchanged_by_epoch"].append(list(fractions.values()))

    row = {**step.as_row(), "dtype": str(dtype).replace("torch.", ""), "batch": batch}
    try:
        history = train(module, X_train, _targets(ds, p["loss"], dtype, device), loss=loss, optimizer="sgd",
                        lr=step.lr, momentum=p["momentum"], batch_size=batch, epochs=p["epochs"],
                        lr_schedule=p["lr_schedule"], lr_decay=p["lr_decay"], augment=random_crop_flip(),
                        loss_scale=loss_scale, seed=run.seed, callbacks=(at_epoch_end,), quiet=True)
    except DivergenceError as exc:
        return {**row, "diverged": True, "error": str(exc), **{k: v for k, v in epochs.items() if v}}
    row.update(score(_predict(module, X_test), ds.y_test))
    row["train_loss"] = factor * float(np.mean(history.losses[-per_epoch_steps:]))   # the last epoch's batches
    row["train_accuracy"] = (float(np.mean(history.accuracies[-per_epoch_steps:])) if history.accuracies
                             else None)   # on the augmented batches, as the authors log it (cross-entropy only)
    row["weight_change"] = relative_weight_change(module, initial)
    if gates is not None:
        fractions = unchanged_gates_per_layer(gates[0], X_test[:n_gates], initial=gates[1])
        row["gate_layers"] = list(fractions)
        row["unchanged_activations_per_layer"] = list(fractions.values())
        row["unchanged_activations"] = float(np.mean(row["unchanged_activations_per_layer"]))
        row["unchanged_activations_min"] = float(np.min(row["unchanged_activations_per_layer"]))
        frozen = FrozenGates(*gates, pool=p["frozen_gates_pool"])
        frozen_score = score(_predict(frozen, X_test), ds.y_test)
        if "test_accuracy" in frozen_score:
            row["frozen_gates_accuracy"] = frozen_score["test_accuracy"]
        else:
            row["frozen_gates_collapsed"] = True
    if per_epoch:
        row.update({k: v for k, v in epochs.items() if v})
    return row


# ---------------------------------------------------------------------------------------------- kernel rows
CNTK_NAMES = {"gap": "gap", "flatten": "v"}   # model-name suffix of each CNTK readout (Arora et al.'s names)
KERNEL_METHODS = ("ntk", "nngp", "rff")
TRAINED_KERNELS = ("ntk", "nngp")
# the trained architectures whose infinite-width kernel exists in closed form, and the row's model name: VGG with
# each 2×2 max-pool replaced by an average pool (max-pool has no closed form); ResNet has none (its identity
# shortcuts add a post-ReLU input that a ReLU follows: not Gaussian, refused by neural-tangents too)
INFINITE_WIDTH = {"vgg11": "vgg11_avgpool"}
NO_CLOSED_FORM = {"resnet18": "ResNet-18 has no closed-form infinite-width kernel (its identity shortcuts add a "
                              "post-ReLU, non-Gaussian input, and a ReLU follows the sum): no kernel row"}


def kernel_runs(config, make) -> list:
    """The kernel rows beside the networks, each ``make(model, method)`` (a Run): ``ntk`` — the analytic CNTK of
    depth ``cntk_depth`` for each readout in ``cntk_readouts`` (models ``cntk{depth}_gap``, ``cntk{depth}_v``) when
    ``cntk_n_train`` > 0; for each trained model with a closed-form limit (``INFINITE_WIDTH``) and each kernel in
    ``trained_kernels`` ('ntk', 'nngp'), the infinite-width kernel of that very network (its widths, its init;
    ``kernels.infinite_width``) on the same images as the CNTK rows (model ``vgg11_avgpool``); and ``rff``, random
    Fourier features of the pixels (model ``fourier``). The one place that lists them."""
    from kernels import READOUTS
    p = config.params
    runs = []
    for readout in p["cntk_readouts"] if p["cntk_n_train"] else ():
        suffix = CNTK_NAMES[check_choice(readout, "cntk readout", READOUTS)]
        runs.append(make(f"cntk{p['cntk_depth']}_{suffix}", "ntk"))
    for kind in p.get("trained_kernels", ()) if p["cntk_n_train"] else ():
        check_choice(kind, "trained_kernels entry", TRAINED_KERNELS)
        runs += [make(INFINITE_WIDTH[model], kind) for model in p["models"] if model in INFINITE_WIDTH]
    if p.get("rff_features"):
        runs.append(make("fourier", "rff"))
    return runs


def kernel_row(run, ds) -> dict:
    """The metrics of a kernel row (``kernel_runs``)."""
    if run.method == "rff":
        return _random_features(run, ds)
    trained = run.model in INFINITE_WIDTH.values()
    kernel = trained_kernel(run, int(ds.n_classes)) if trained else cntk_kernel(run)
    return _kernel_regression(run, ds, kernel, run.method, {} if trained else {"depth": run.params["cntk_depth"]})


def trained_kernel(run, n_classes):
    """The infinite-width kernel (NNGP and NTK) of the network a ``vgg11`` row trains: the same widths and init,
    each max-pool replaced by an average pool (said in the kernel's name), float64, on the run's kernel device."""
    from kernels import infinite_width
    model = next(name for name, row in INFINITE_WIDTH.items() if row == run.model)
    return infinite_width(network(run.replace(model=model), n_classes), max_pool="avg", dtype="float64",
                          device=run.kernels_device)


def kernel_notes(rows) -> str:
    """Which kernel row is which: the trained architectures' infinite-width kernels, and the trained models that
    have none (a sentence each, for the report)."""
    models = {row.get("model") for row in rows}
    parts = []
    if models & set(INFINITE_WIDTH.values()):
        parts.append("vgg11_avgpool rows: the infinite-width NTK and NNGP of the very VGG-11 trained (its widths and "
                     "init), with each max-pool replaced by an average pool (max-pool has no closed form), ridgeless "
                     "regression on the CNTK rows' images; cntk rows: the CNTK of a plain conv stack.")
    parts += [why + "." for model, why in NO_CLOSED_FORM.items() if model in models]
    return "".join(" " + part for part in parts)


def _one_hot(y, n_classes):
    """Arora et al. (2019) targets: 0.9 for the class, −0.1 elsewhere (one-hot minus 0.1)."""
    return np.eye(n_classes)[y] - 0.1


def cntk_readout(run) -> str:
    """The readout of a CNTK run, from its model name ``cntk{depth}_gap`` or ``cntk{depth}_v``."""
    suffix = run.model.rsplit("_", 1)[1]
    return next(readout for readout, name in CNTK_NAMES.items() if name == suffix)


def cntk_kernel(run):
    """The ReLU CNTK of the run's depth and readout, in float64 on the run's device."""
    from kernels import Convolutional
    return Convolutional(depth=run.params["cntk_depth"], activation="relu", readout=cntk_readout(run),
                         dtype="float64", device=run.kernels_device)


def random_features_classifier(run):
    """Ridge classification on random Fourier features, fitted on the run's device."""
    from kernels import RandomFeaturesClassifier
    return RandomFeaturesClassifier(features="fourier", n_features=run.params["rff_features"],
                                    alpha=run.params["rff_alpha"], random_state=run.seed, device=run.kernels_device)


def _kernel_regression(run, ds, kernel, get: str, extra: dict) -> dict:
    """Ridgeless kernel regression with ``kernel``'s ``get`` output ('ntk' or 'nngp') on one-hot targets, on the
    first ``cntk_n_train`` training and ``cntk_n_test`` test images; the solve runs where the kernel is."""
    from kernels import device_of, krr_solve, to_device, to_numpy
    from compare.grams import kernel_matrices
    p = run.params
    n = min(p["cntk_n_train"], ds.n_train)
    m = ds.n_test if p.get("cntk_n_test") is None else min(p["cntk_n_test"], ds.n_test)
    X_train, X_test = ds.X_train[:n].astype(np.float64), ds.X_test[:m].astype(np.float64)
    K_train, K_test = kernel_matrices(kernel, X_train, X_test, get=get)
    targets = to_device(_one_hot(ds.y_train[:n], int(ds.n_classes)), device_of(K_train))
    coef = krr_solve(K_train, targets, 0.0)
    return {**score(to_numpy(K_test @ coef), ds.y_test[:m]), "n_train": n, "n_test": m, **extra}


def _random_features(run, ds) -> dict:
    flat = (ds.X_train.reshape(ds.n_train, -1), ds.X_test.reshape(ds.n_test, -1))
    clf = random_features_classifier(run)
    clf.fit(flat[0].astype(np.float64), ds.y_train)
    return {"test_accuracy": float(clf.score(flat[1].astype(np.float64), ds.y_test))}


# ---------------------------------------------------------------------------------------------- the report
def limit_notes(rows) -> str:
    """One sentence naming the rows trained above the stability limit (lr·λ_max/limit > 1), diverged, collapsed."""
    def name(r):
        scale = "" if r.get("scale") is None else f" α = {r['scale']:g}"
        lr = f", lr {r['lr_used']:.3g}" if isinstance(r.get("lr_used"), float) else ""
        return f"{r.get('model')} {r.get('method')}{scale}{lr} (seed {r.get('seed')})"
    above = [f"{name(r)}: {r['lr_over_limit']:.2f}" for r in rows if (r.get("lr_over_limit") or 0) > 1]
    parts = [("Trained ABOVE the stability limit (lr / limit): " + "; ".join(above) + ".") if above else
             "Every network row trained below its stability limit (column lr/limit)."]
    for flag, what in (("diverged", "Diverged"), ("collapsed", "Collapsed to one class")):
        hit = [name(r) for r in rows if r.get(flag)]
        if hit:
            parts.append(f"{what}: " + "; ".join(hit) + ".")
    return " ".join(parts)
