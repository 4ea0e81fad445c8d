"""equivalence: lazy training ≈ kernel regression with the NTK at large α, and how standard training differs.

For each seed, one network at initialisation w₀ (an MLP in the 'ntk' parameterization for tabular data, a
CNN for images) is trained by full-batch gradient descent on the loss (1/2n)·‖f(X) − y‖² (one-hot targets
for classification) in these ways, each from the same w₀:

- ``net``         the network normally scaled and centred as the authors train it, h(w) − h(w₀) (which is
                  ``lazy`` at α = 1; with ``--set centre_net=False`` the plain h(w), and no ``net_uncentred``),
- ``net_uncentred`` the network itself, h(w) (h(w₀) ≠ 0: a different predictor from the start),
- ``lazy``        the paper's lazy model h_α = α·(h(w) − h(w₀)) on R(h_α)/α², for each α of the grid,
- ``linearized``  its exact linearization h̄ = Dh(w₀)(w − w₀) (the same for every α once the loss is divided
                  by α², so it is run once),

and compared with kernel predictors on the same split:

- ``empirical_ntk``      the empirical NTK Θ₀ of the network at w₀ (all output blocks Θ_oo'), gradient flow
                         to the training time t = lr·steps: f_t(x) = Θ₀(x, X) Θ₀⁻¹ (I − exp(−tΘ₀/n)) y
                         (docs/conventions.md, *Gradient flow and ridge*). The linearized net follows
                         exactly this flow (up to the GD step size); it is the reference for ``agreement``,
- ``empirical_ntk_krr``  the same kernel at t = ∞ (ridgeless kernel regression),
- ``ntk``                the analytic infinite-width NTK, gradient flow to the same time t,
- ``nngp``               the analytic NNGP kernel, ridgeless kernel regression (the infinitely wide net whose
                         last layer alone is trained to convergence),
- ``after_kernel``       for each α, ridgeless kernel regression with the NTK of the *trained* lazy net
                         (Fort et al. 2020; Long 2021: the "after-training kernel"),
- ``after_kernel_last``  the same with the kernel of its last layer only (the learned features φ(x)·φ(x'))
                         (these two in the full and paper presets; ``--set after_kernels=True`` for quick).

``--set loss=NAME`` trains every net on another loss of ``nets.train`` ('hinge', 'softhinge', 'logistic',
'quadratic_hinge' on one-vs-rest ±1 targets, 'cross_entropy' on class labels; classification data only). The
kernel predictors then follow that loss: ``empirical_ntk`` and ``ntk`` are the kernel gradient flow
df/dt = −K∇ℓ(f)/n of ``kernels.solve.flow`` to the same time t (``empirical_ntk_krr`` and ``nngp``, squared-loss
limits, are left out), and ``train_loss`` is that loss.

The analytic kernels are scalar (at infinite width the output blocks decouple: Θ_oo' = δ_oo'·Θ).
The learning rate is lr = lr_factor·n/λ_max(Θ₀) (stable gradient descent needs lr < 2n/(c·λ_max), c = 1 for the
squared loss, ½ for cross-entropy: ``nets.step_size``); every network row records lambda_max and lr/limit.
Like with like (``match_loss``, every preset): every network row trains until its training loss reaches that of
the empirical-NTK flow at t = lr·steps (the loss the linearized net reaches), at most ``max_steps`` steps, so rows
differ by what they learnt, not by how far they got; ``steps_taken`` and ``stop_reason`` say where each stopped
("loss": reached; "steps": the cap). The summary line under the table says what the gap between non-lazy (small
α) and lazy (large α) training is on this data; the large gap of CNNs on CIFAR-10 is shown by ``alpha-sweep``.
Metrics: test accuracy (classification) or test MSE (regression, targets standardised on the training
set), final training loss, ``agreement`` = fraction of test points where the prediction agrees with the
empirical-NTK predictor (same arg-max class; for regression |f − f_ref| ≤ 0.1, i.e. a tenth of the target's
standard deviation), relative weight change ‖w_T − w₀‖/‖w₀‖, NTK drift ‖Θ_T − Θ₀‖_F/‖Θ₀‖_F on a probe set of
training points (also at half the steps: ``ntk_drift_half``) and the effective rank exp(H) of Θ_T there
(``nets.trained_kernel``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from compare.present import plots
from kernels import LOSSES, check_choice
from compare.data import IMAGE_DATASETS, load_split
from compare.experiment import Experiment, Figure, Preset, learning_rate
from compare.grams import kernel_matrices
from compare.sweep.memo import Memo
from compare.sweep.run import Run
from compare.seeding import seeded_torch
from compare.present.summary import aggregate, metric_titles, several_seeds

DATASETS = ("digits", "breast_cancer", "diabetes", "fashion-mnist", "cifar10")
AGREEMENT_TOLERANCE = 0.1   # regression: |f − f_ref| within a tenth of the standardised target's std

# each preset names what it is meant for; its measured wall time is in docs/figures.json (bench readme)
PRESETS = {
    "quick": Preset("a CPU (digits)", n_train=300, n_test=500, widths=[64],
                    channels=32, conv_depth=2, image_classes=[0, 1],
                    scales=[0.1, 1.0, 10.0, 100.0, 1000.0], steps=300, lr_factor=1.0, probe=100, seeds=1,
                    dtype="float64", analytic=True, loss="mse", after_kernels=False, centre_net=True,
                    match_loss=True, max_steps=3000),
    "full": Preset("a CPU (digits)", n_train=600, n_test=450,
                   widths=[512], channels=64, conv_depth=2, image_classes=None,
                   scales=[0.01, 0.1, 1.0, 10.0, 100.0, 1000.0], steps=1000, lr_factor=1.0, probe=200, seeds=3,
                   dtype="float64", analytic=True, loss="mse", after_kernels=True, centre_net=True,
                   match_loss=True, max_steps=4000),
    "paper": Preset("a GPU or a patient CPU (the 10⁴×10⁴ multi-output kernel eigendecomposition dominates)",
                    n_train=1000, n_test=450, widths=[1024], channels=128,
                    conv_depth=3, image_classes=None,
                    scales=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0], steps=3000,
                    lr_factor=1.0, probe=200, seeds=5, dtype="float64", analytic=True, loss="mse",
                    after_kernels=True, centre_net=True, match_loss=True, max_steps=12000),
}
NET_METHODS = ("net", "net_uncentred", "lazy", "linearized")
KERNEL_METHODS = ("empirical_ntk", "empirical_ntk_krr", "ntk", "nngp")
AFTER_METHODS = ("after_kernel", "after_kernel_last")   # per α, with the kernel of the trained lazy net
SQUARED_LOSS_ONLY = ("empirical_ntk_krr", "nngp")        # t = ∞ limits of the squared loss


# settings added after equivalence results were first kept: at these values the runs are the older ones
ADDED_SETTINGS = {"loss": "mse", "after_kernels": False, "centre_net": False, "match_loss": False,
                  "max_steps": None}


def plan(config) -> list:
    """One run per (method, α, seed); α-free methods get no α."""
    params = {k: v for k, v in config.params.items() if k not in ("seeds", "scales")}
    params["data_dir"] = config.data_dir
    model = "cnn" if config.dataset in IMAGE_DATASETS else "mlp"
    # the analytic convolutional kernels need every pixel pair: only on a GPU for image data sets
    analytic = params["analytic"] and (model == "mlp" or config.kernels_device == "cuda")
    check_choice(params["loss"], "loss (--set loss=)", LOSSES)
    check_choice(params["after_kernels"], "after_kernels (--set after_kernels=)", (True, False))
    check_choice(params["centre_net"], "centre_net (--set centre_net=)", (True, False))
    check_choice(params["match_loss"], "match_loss (--set match_loss=)", (True, False))
    if params["match_loss"] and (params["max_steps"] is None or params["max_steps"] < params["steps"]):
        raise ValueError(f"--set max_steps must be >= steps ({params['steps']}) with match_loss=True, "
                         f"got {params['max_steps']!r}")
    if not params["match_loss"]:
        params["max_steps"] = None     # only a loss target reads it: a fixed-steps run is the same whatever it is
    methods = [m for m in NET_METHODS + KERNEL_METHODS if (analytic or m not in ("ntk", "nngp"))
               and (params["loss"] == "mse" or m not in SQUARED_LOSS_ONLY)
               and (params["centre_net"] or m != "net_uncentred")]
    runs = []
    for seed in range(config.params["seeds"]):
        for method in methods:
            if method != "lazy":
                runs.append(Run("equivalence", config.dataset, model, method, seed, **config.run_devices(),
                                params=params, defaults=ADDED_SETTINGS))
                continue
            for alpha in config.params["scales"]:   # each α's after-kernel runs next to its lazy run (one memo)
                after = AFTER_METHODS if params["after_kernels"] else ()
                runs += [Run("equivalence", config.dataset, model, m, seed, alpha=alpha, **config.run_devices(),
                             params=params, defaults=ADDED_SETTINGS) for m in ("lazy",) + after]
    return runs


def shared_work(run) -> dict:
    """The methods and α of one seed share its data split and reference kernel Θ₀."""
    return {k: v for k, v in run.config().items() if k not in ("method", "scale")}


# ------------------------------------------------------------------------------------------- one run
def _torch_dtype(run):
    import torch
    return {"float32": torch.float32, "float64": torch.float64}[run.params["dtype"]]


def _problem(run):
    """Data split and targets: one-hot for classification (±1 one-vs-rest for margin losses, class labels for
    cross-entropy), standardised for regression (squared loss only)."""
    p = run.params
    image = run.dataset in IMAGE_DATASETS
    ds = load_split(run.dataset, p["n_train"], p["n_test"], run.seed, p["data_dir"],
                    p["image_classes"] if image else None)
    dtype = np.dtype(p["dtype"])
    X_train, X_test = np.asarray(ds.X_train, dtype), np.asarray(ds.X_test, dtype)
    loss = p.get("loss", "mse")
    if ds.task == "classification":
        labels = np.unique(ds.y_train)
        y_train = (ds.y_train[:, None] == labels[None, :]).astype(dtype)
        y_test = np.searchsorted(labels, ds.y_test)
        if loss not in ("mse", "cross_entropy"):
            y_train = 2 * y_train - 1
    elif loss != "mse":
        raise ValueError(f"--set loss={loss} needs a classification data set; {run.dataset} is a regression task")
    else:
        mean, std = float(np.mean(ds.y_train)), float(np.std(ds.y_train))
        y_train = ((ds.y_train - mean) / std).astype(dtype)[:, None]
        y_test = ((ds.y_test - mean) / std).astype(dtype)[:, None]
    return ds.task, X_train, y_train, X_test, y_test


def _problem_key(run) -> dict:
    keys = ("n_train", "n_test", "image_classes", "data_dir", "dtype", "loss")
    return {"problem": run.dataset, "seed": run.seed, **{k: run.params[k] for k in keys}}


def _network(run, d_in, d_out, on_device: bool = True):
    """The network at w₀ for this seed (same w₀ for every method of the seed), on the run's device (on the CPU
    with ``on_device=False``: its kernel needs only its layers)."""
    from nets import CNN, MLP
    p = run.params
    with seeded_torch(run.seed):
        if run.model == "cnn":
            net = CNN(in_channels=d_in, channels=p["channels"], depth=p["conv_depth"], num_outputs=d_out)
        else:
            net = MLP(d_in, p["widths"], d_out, activation="relu", bias=False, parameterization="ntk")
    return net.to(device=run.device if on_device else "cpu", dtype=_torch_dtype(run))


def analytic_kernel(run, d_in: int, d_out: int):
    """The infinite-width kernel of the run's network, computing on the run's kernel device in its dtype: for
    images the kernel of the very CNN it trains (``kernels.infinite_width``, equal to ``kernels.Convolutional``
    with the same arguments), for vectors ``kernels.FullyConnected`` of the MLP's depth."""
    import kernels
    p = run.params
    if run.model == "cnn":
        return kernels.infinite_width(_network(run, d_in, d_out, on_device=False), device=run.kernels_device,
                                      dtype=p["dtype"])
    return kernels.FullyConnected(depth=len(p["widths"]), activation="relu", w_std=2 ** 0.5, b_std=0.0,
                                  parameterization="ntk", device=run.kernels_device, dtype=p["dtype"])


def _flow(K_train, K_test, y, t):
    """Train and test predictions (NumPy) of kernel gradient flow at time t (None = ridgeless KRR), computed
    on the kernel's device.

    A scalar kernel (n, n) is shared by all outputs; a full multi-output kernel (n·O, n·O), indexed
    (sample, output), couples them: y (n, O) is then flattened in the same order, and the time is given to
    the solver as t·O, since its flow exp(−tK/N) divides by the number of rows N = n·O, not by n.
    """
    from kernels import EigenPath, device_of, to_device, to_numpy
    n, outputs = y.shape
    y = to_device(y, device_of(K_train))
    if K_train.shape[0] == n * outputs and outputs > 1:
        coef = EigenPath(K_train).dual_coef(y.reshape(-1), t=None if t is None else t * outputs)
        return (np.reshape(to_numpy(K_train @ coef), (n, outputs)),
                np.reshape(to_numpy(K_test @ coef), (-1, outputs)))
    coef = EigenPath(K_train).dual_coef(y, t=t)
    return to_numpy(K_train @ coef), to_numpy(K_test @ coef)


def _targets(y_train, loss):
    """What `nets.train` and `kernels.solve.flow` take for this loss: class labels for cross-entropy, else y."""
    return np.argmax(y_train, axis=1) if loss == "cross_entropy" else y_train


def _predict(K_train, K_test, y_train, t, loss):
    """Train and test predictions of the kernel's gradient flow of `loss` at time t (the squared loss in closed
    form by `_flow`; the others by integrating df/dt = −K∇ℓ(f)/n from f₀ = 0 with `kernels.solve.flow`)."""
    if loss == "mse":
        return _flow(K_train, K_test, y_train, t)
    from kernels import kernel_gradient_flow, to_numpy
    result = kernel_gradient_flow(to_numpy(K_train), _targets(y_train, loss), t, loss=loss, K_test=to_numpy(K_test))
    return result.train, result.test


def _train_loss(pred_train, y_train, loss) -> float:
    from kernels import loss_derivatives
    values = loss_derivatives(np.asarray(pred_train, dtype=np.float64), _targets(y_train, loss), loss)[0]
    return float(np.sum(values)) / len(y_train)


def _full_ntk(net, x1, x2=None):
    """The empirical NTK with its output blocks, Θ_oo'(x, x'), as an (n1·O, n2·O) matrix (sample-major)."""
    from kernels import empirical_ntk
    from kernels import to_numpy
    K = to_numpy(empirical_ntk(net, x1, x2, output="full"))
    n1, n2, outputs, _ = K.shape
    return np.reshape(np.transpose(K, (0, 2, 1, 3)), (n1 * outputs, n2 * outputs))


def _reference(run, memo):
    """Θ₀ on (train, train) and (test, train), lr, t and the empirical-NTK predictions, shared by the seed's runs.

    Θ₀ is the full multi-output tangent kernel of the finite network (its output blocks Θ_oo' included):
    the kernel whose gradient flow the linearized network follows exactly. (The output-averaged kernel of
    neural-tangents' convention drops the O(1/√width) cross-output blocks; at width 128 on digits that
    halves the predicted training loss at the same time t.)
    """
    import torch
    _, X_train, y_train, X_test, _ = memo.get(_problem_key(run), lambda: _problem(run))
    net = _network(run, X_train.shape[1], y_train.shape[1])
    xs = [torch.as_tensor(x, device=run.device) for x in (X_train, X_test)]
    K_train = _full_ntk(net, xs[0])
    K_test = _full_ntk(net, xs[1], xs[0])
    lam_max = float(scipy.linalg.eigh(K_train, eigvals_only=True, subset_by_index=[len(K_train) - 1] * 2)[0])
    lr = learning_rate(run.params["lr_factor"], X_train.shape[0] / lam_max, "lr_factor·n/λ_max(Θ₀)")
    t = lr * run.params["steps"]
    predictions = _predict(K_train, K_test, y_train, t, run.params["loss"])
    target = _train_loss(predictions[0], y_train, run.params["loss"])
    return dict(K_train=K_train, K_test=K_test, lr=lr, t=t, predictions=predictions, lambda_max=lam_max,
                target_loss=target)


def _step_row(run, ref, n) -> dict:
    """λ_max of Θ₀, and for the losses of known curvature the GD limit 2n/(c·λ_max) and lr/limit."""
    from nets import CURVATURES, stability_limit
    row = {"lambda_max": ref["lambda_max"]}
    if run.params["loss"] in CURVATURES:
        limit = stability_limit(ref["lambda_max"], n, 0.0, CURVATURES[run.params["loss"]])
        row.update(lr_limit=limit, lr_over_limit=ref["lr"] / limit)
    return row


def _scores(task, pred_train, pred_test, y_train, y_test, ref_test, loss="mse") -> dict:
    pred_train, pred_test = np.asarray(pred_train), np.asarray(pred_test)
    row = {"train_loss": _train_loss(pred_train, y_train, loss)}
    if task == "classification":
        row["test_accuracy"] = float(np.mean(pred_test.argmax(1) == y_test))
        row["agreement"] = float(np.mean(pred_test.argmax(1) == ref_test.argmax(1)))
    else:
        row["test_mse"] = float(np.mean((pred_test - y_test) ** 2))
        row["agreement"] = float(np.mean(np.abs(pred_test - ref_test).max(1) <= AGREEMENT_TOLERANCE))
    return row


def run_one(run, memo=None) -> dict:
    """Train or fit one method at one α for one seed; return its metrics. ``memo`` holds what the seed's runs
    share (the split, Θ₀ and its predictions); without one, they are computed for this run alone."""
    memo = Memo() if memo is None else memo
    task, X_train, y_train, X_test, y_test = memo.get(_problem_key(run), lambda: _problem(run))
    # persisted in the sweep's folder: a group killed after some of its methods resumes without recomputing Θ₀
    ref = memo.get({"reference": shared_work(run)}, lambda: _reference(run, memo), persist=True)
    loss = run.params["loss"]
    row = {"n_train": len(X_train), "n_test": len(X_test), "t": ref["t"], "lr": ref["lr"], "loss": loss}
    if run.method in NET_METHODS:
        row.update(_step_row(run, ref, len(X_train)))
    if run.method in AFTER_METHODS:
        return {**row, **_after_kernel(run, memo, task, X_train, y_train, X_test, y_test, ref)}
    if run.method not in KERNEL_METHODS:
        same = _same_training(run)   # lazy: reused per α (by its after-kernel runs); a centred net is lazy at α = 1
        trained = (memo.get({"trained": same.config()}, lambda: _train_net(same, X_train, y_train, ref))
                   if same.method == "lazy" else _train_net(run, X_train, y_train, ref))
        return {**row, **_net_row(run, trained, task, X_train, y_train, X_test, y_test, ref)}
    if run.method == "empirical_ntk":
        pred = ref["predictions"]
    elif run.method == "empirical_ntk_krr":
        pred = _flow(ref["K_train"], ref["K_test"], y_train, None)
    else:
        kernel = analytic_kernel(run, X_train.shape[1], y_train.shape[1])
        (nngp_train, nngp_test), (ntk_train, ntk_test) = kernel_matrices(kernel, X_train, X_test, get=("nngp", "ntk"))
        pred = (_predict(ntk_train, ntk_test, y_train, ref["t"], loss) if run.method == "ntk"
                else _flow(nngp_train, nngp_test, y_train, None))
    return {**row, **_scores(task, *pred, y_train, y_test, ref["predictions"][1], loss)}


def _same_training(run):
    """The run whose training this run's is: a centred ``net`` is ``lazy`` at α = 1 (the same model, loss and
    steps); every other run is itself."""
    if run.method == "net" and run.params.get("centre_net"):
        return dataclasses.replace(run, method="lazy", alpha=1.0)
    return run


def _train_net(run, X_train, y_train, ref) -> dict:
    """Train the run's module (the net, Lazy at α, or the linearized net) with a kernel tracker on the probe
    inputs at half and all of the steps; {"module", "initial", "tracker"} or {"error"} when it diverged."""
    import torch
    from nets import DivergenceError, Lazy, Linearized, train
    from nets import KernelTracker
    d_in, d_out = X_train.shape[1], y_train.shape[1]
    net = _network(run, d_in, d_out)
    method = "lazy" if run.method in AFTER_METHODS else run.method
    module = {"net": lambda: net, "net_uncentred": lambda: net, "lazy": lambda: Lazy(net, run.alpha),
              "linearized": lambda: Linearized(Lazy(net, 1.0))}[method]()
    uncentred = method == "net_uncentred" or (method == "net" and not run.params.get("centre_net"))
    initial = _network(run, d_in, d_out) if uncentred else None   # Lazy/Linearized carry their w₀
    X_tr = torch.as_tensor(X_train, device=run.device)
    steps = run.params["steps"]
    tracker = KernelTracker(module, X_tr[: run.params["probe"]], steps=[max(1, steps // 2), steps])
    limits = (dict(steps=run.params["max_steps"], stop="loss", loss_threshold=ref["target_loss"])
              if run.params.get("match_loss") else dict(steps=steps))
    try:
        history = train(module, X_tr, torch.as_tensor(_targets(y_train, run.params["loss"]), device=run.device),
                        loss=run.params["loss"], optimizer="gd", lr=ref["lr"], seed=run.seed,
                        callbacks=tracker if method != "linearized" else (), quiet=True, **limits)
    except DivergenceError as exc:
        return {"error": str(exc)}
    if method != "linearized":
        tracker.record(len(history.steps), module)   # the drift where training stopped
    return {"module": module, "initial": initial, "tracker": tracker,
            "stopped": {"steps_taken": len(history.steps), "stop_reason": history.stop_reason}}


def _net_row(run, trained, task, X_train, y_train, X_test, y_test, ref) -> dict:
    import torch
    from nets import relative_weight_change
    if "error" in trained:
        return {"diverged": True, "error": trained["error"]}
    module, tracker = trained["module"], trained["tracker"]
    X_tr, X_te = (torch.as_tensor(x, device=run.device) for x in (X_train, X_test))
    with torch.no_grad():
        pred_train, pred_test = (module(x).cpu().numpy() for x in (X_tr, X_te))
    row = _scores(task, pred_train, pred_test, y_train, y_test, ref["predictions"][1], run.params["loss"])
    row["weight_change"] = relative_weight_change(module, trained["initial"])
    row.update(trained["stopped"])
    if run.method != "linearized":   # the linearized model's tangent kernel never moves
        half = max(1, run.params["steps"] // 2)   # at half the nominal steps, where training got that far
        drift = dict(zip(tracker.steps, tracker.changes))
        row["ntk_drift_half"], row["ntk_drift"] = drift.get(half), tracker.changes[-1]
        row["effective_rank"] = tracker.effective_ranks[-1]
    return row


def _after_kernel(run, memo, task, X_train, y_train, X_test, y_test, ref) -> dict:
    """Ridgeless kernel regression on the training targets with the NTK of the lazy net trained at α (all its
    layers, or its last layer only), scored like the other methods."""
    from nets import after_training_kernel_regression
    lazy_run = dataclasses.replace(run, method="lazy")
    trained = memo.get({"trained": lazy_run.config()}, lambda: _train_net(lazy_run, X_train, y_train, ref))
    if "error" in trained:
        return {"diverged": True, "error": trained["error"]}
    layers = "last" if run.method == "after_kernel_last" else "all"
    pred = after_training_kernel_regression(trained["module"], X_train, y_train, X_test, layers=layers)
    return _scores(task, *pred, y_train, y_test, ref["predictions"][1], "mse")


# ------------------------------------------------------------------------------------------- the report
def _performance(rows) -> str:
    return "test_accuracy" if any("test_accuracy" in r for r in rows) else "test_mse"


# the caption's word for two α-free lines that lie on top of each other (the legend says so too)
COINCIDE_NOTE = ("linearized = empirical_ntk: the linearized net follows the empirical-NTK gradient flow exactly "
                 "(up to the step size of gradient descent), so their lines coincide; the staggered markers show "
                 "both.")


def summary_line(rows) -> str:
    """What the gap between non-lazy and lazy training is on this data (the smallest and largest α of the lazy
    rows, mean over seeds, and the two standard rows), the rows that stopped before the common train loss, and
    which experiment shows the large CNN gap."""
    metric = _performance(rows)
    groups = aggregate(rows, ["model", "method", "scale"], EXPERIMENT.methods, [metric, "train_loss"])
    lazy = sorted((g for g in groups if g["method"] == "lazy" and metric in g), key=lambda g: g["scale"])
    if len(lazy) < 2:
        return ""
    percent = metric == "test_accuracy"

    def value(g):
        mean = g[metric][0]
        return f"{100 * mean:.1f}%" if percent else f"{mean:.3g}"
    lo, hi = lazy[0], lazy[-1]
    gap = (lo[metric][0] - hi[metric][0]) * (100 if percent else 1)
    dataset = next((r.get("dataset") for r in rows if r.get("dataset")), "this data")
    what = "test accuracy" if percent else "test MSE"
    unit = " points" if percent else ""
    text = (f"On {dataset}, non-lazy training (α = {lo['scale']:g}) reaches {value(lo)} {what} and lazy training "
            f"(α = {hi['scale']:g}) {value(hi)}: a gap of {f'{gap:+.1f}' if percent else f'{gap:+.3g}'}{unit}")
    matched = [r for r in rows if r.get("stop_reason")]
    if matched and all(r["stop_reason"] == "loss" for r in matched if r.get("method") == "lazy"):
        text += ", every lazy row at the same train loss"
    standard = {g["method"]: g for g in groups if g["method"] in ("net", "net_uncentred") and metric in g}
    if "net" in standard and "net_uncentred" in standard:
        text += (f"; the standard net gets {value(standard['net'])} centred (as the authors train it) and "
                 f"{value(standard['net_uncentred'])} uncentred")
    short = [r["method"] + ("" if r.get("scale") is None else f" α = {r['scale']:g}")
             for r in matched if r["stop_reason"] != "loss"]
    if short:
        text += f". Stopped at max_steps before the common train loss: {', '.join(short)}"
    return (text + ". The large gap of convolutional nets (CIFAR-10) is shown by `python -m compare alpha-sweep` "
            "and `python -m compare table`.")


def _draw_performance(rows, path):
    metric = _performance(rows)
    label = "test accuracy %" if metric == "test_accuracy" else "test MSE"
    return plots.plot_vs_scale(rows, metric, path, label, f"{label} vs α (dashed: methods without α)",
                               percent=metric == "test_accuracy", methods=EXPERIMENT.methods)


def _draw_kernel_change(rows, path):
    """‖Θ_T − Θ₀‖/‖Θ₀‖ of the lazy net against α (halfway and at the end, log-log), the normally trained net's
    as horizontal lines."""
    groups = [g for g in aggregate(rows, ["model", "method", "scale"], EXPERIMENT.methods,
                                   ["ntk_drift", "ntk_drift_half"]) if "ntk_drift" in g]
    if not groups:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    scales = [g["scale"] for g in groups if g["scale"] is not None] or [0.1, 10.0]
    for field, label, style in (("ntk_drift", "end of training", "o-"), ("ntk_drift_half", "half-way", "s--")):
        x, mean, std = plots.series(groups, "lazy", field)
        if len(x):
            ax.errorbar(x, mean, yerr=std, fmt=style, capsize=3, label=f"lazy, {label}")
        for g in groups:
            if g["method"] == "net" and field in g:
                ax.hlines(g[field][0], min(scales), max(scales), linestyles=style[1:], colors="gray",
                          label=f"net, {label}")
    return plots.finish(plt, fig, ax, path, "lazy scale α", "‖Θ_T − Θ₀‖_F / ‖Θ₀‖_F",
                        "change of the tangent kernel during training")


EXPERIMENT = Experiment(
    name="equivalence", summary=__doc__, datasets=DATASETS, presets=PRESETS, plan=plan, run_one=run_one,
    methods=NET_METHODS + KERNEL_METHODS + AFTER_METHODS,
    metrics={**metric_titles("test_accuracy", "test_mse", "train_loss", "agreement", "weight_change", "ntk_drift"),
             "effective_rank": "eff. rank Θ_T", "steps_taken": "steps", "lr_over_limit": "lr/limit"},
    percent=("test_accuracy", "agreement"), axes=("method", "scale", "seed"), shared_work=shared_work,
    notes=summary_line,
    figures=(
        Figure("accuracy.png", _draw_performance,
               lambda rows: "Test performance of each method against the lazy scale α. Dashed lines: the "
               "normally trained net, the linearized net and the kernel predictors, which do not depend on α"
               + (" (bands: ± std over seeds)" if several_seeds(rows) else "") + ". " + COINCIDE_NOTE),
        Figure("agreement.png",
               lambda rows, path: plots.plot_vs_scale(rows, "agreement", path, "agreement %",
                                                      "agreement with the empirical-NTK predictor", percent=True,
                                                      methods=EXPERIMENT.methods),
               "Fraction of test points on which a method's prediction agrees with the empirical-NTK "
               "gradient-flow predictor at the matching training time. Lazy training approaches 100% as α grows. "
               "empirical_ntk is the reference itself (100% by definition). " + COINCIDE_NOTE),
        Figure("weight_change.png",
               lambda rows, path: plots.plot_vs_scale(rows, "weight_change", path, "‖w_T − w₀‖ / ‖w₀‖",
                                                      "relative weight change", methods=EXPERIMENT.methods),
               "Relative weight change at the end of training: O(1/α) for the lazy net."),
        Figure("kernel_change.png", _draw_kernel_change,
               "Relative change of the empirical NTK on the probe inputs, half-way through training and at its "
               "end, against α: the lazy net's kernel freezes as α grows; the normally trained net's moves."),
    ),
)
