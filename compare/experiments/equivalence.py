"""equivalence: lazy training ≈ kernel regression with the NTK at large α, and how standard training differs.

For each seed, one network at initialisation w₀ (an MLP in the 'ntk' parameterization for tabular data, a
CNN for images) is trained by full-batch gradient descent on the loss (1/2n)·‖f(X) − y‖² (one-hot targets
for classification) in these ways, each from the same w₀:

- ``net``         the network itself, normally scaled (output h(w), loss R(h)),
- ``lazy``        the paper's lazy model h_α = α·(h(w) − h(w₀)) on R(h_α)/α², for each α of the grid,
- ``linearized``  its exact linearization h̄ = Dh(w₀)(w − w₀) (the same for every α once the loss is divided
                  by α², so it is run once),

and compared with kernel predictors on the same split:

- ``empirical_ntk``      the empirical NTK Θ₀ of the network at w₀ (all output blocks Θ_oo'), gradient flow
                         to the training time t = lr·steps: f_t(x) = Θ₀(x, X) Θ₀⁻¹ (I − exp(−tΘ₀/n)) y
                         (docs/conventions.md, gradient flow). The linearized net follows exactly this flow (up to the GD step size);
                         it is the reference for ``agreement``,
- ``empirical_ntk_krr``  the same kernel at t = ∞ (ridgeless kernel regression),
- ``ntk``                the analytic infinite-width NTK, gradient flow to the same time t,
- ``nngp``               the analytic NNGP kernel, ridgeless kernel regression (the infinitely wide net whose
                         last layer alone is trained to convergence).

The analytic kernels are scalar (at infinite width the output blocks decouple: Θ_oo' = δ_oo'·Θ).
The learning rate is lr = lr_factor·n/λ_max(Θ₀) (stable gradient descent needs lr < 2n/λ_max).
Metrics: test accuracy (classification) or test MSE (regression, targets standardised on the training
set), final training loss, ``agreement`` = fraction of test points where the prediction agrees with the
empirical-NTK predictor (same arg-max class; for regression |f − f_ref| ≤ 0.1, i.e. a tenth of the target's
standard deviation), relative weight change ‖w_T − w₀‖/‖w₀‖ and NTK drift ‖Θ_T − Θ₀‖_F/‖Θ₀‖_F on a
probe set of training points.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from compare import plots
from compare.data import IMAGE_DATASETS, load_split
from compare.experiment import Experiment, Figure, Preset
from compare.memo import Memo
from compare.run import Run
from compare.summary import metric_titles

DATASETS = ("digits", "breast_cancer", "diabetes", "fashion-mnist", "cifar10")
AGREEMENT_TOLERANCE = 0.1   # regression: |f − f_ref| within a tenth of the standardised target's std

# expected times: "quick" measured on an idle 2-core CPU; "full" measured likewise; "paper" estimated (see README)
PRESETS = {
    "quick": Preset("~15 s on 2 CPU cores (digits)", n_train=300, n_test=500, widths=[64],
                    channels=32, conv_depth=2, image_classes=[0, 1],
                    scales=[0.1, 1.0, 10.0, 100.0, 1000.0], steps=300, lr_factor=1.0, probe=100, seeds=1,
                    dtype="float64", analytic=True),
    "full": Preset("~9 min on 2 CPU cores (digits, measured)", n_train=600, n_test=450,
                   widths=[512], channels=64, conv_depth=2, image_classes=None,
                   scales=[0.01, 0.1, 1.0, 10.0, 100.0, 1000.0], steps=1000, lr_factor=1.0, probe=200, seeds=3,
                   dtype="float64", analytic=True),
    "paper": Preset("~1 h on 2 CPU cores or one GPU (estimate; the 10⁴×10⁴ multi-output kernel "
                    "eigendecomposition dominates)", n_train=1000, n_test=450, widths=[1024], channels=128,
                    conv_depth=3, image_classes=None,
                    scales=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0], steps=3000,
                    lr_factor=1.0, probe=200, seeds=5, dtype="float64", analytic=True),
}
NET_METHODS = ("net", "lazy", "linearized")
KERNEL_METHODS = ("empirical_ntk", "empirical_ntk_krr", "ntk", "nngp")


def plan(config) -> list:
    """One run per (method, α, seed); α-free methods get no α."""
    params = {k: v for k, v in config.params.items() if k not in ("seeds", "scales")}
    params["data_dir"] = config.data_dir
    model = "cnn" if config.dataset in IMAGE_DATASETS else "mlp"
    # the analytic convolutional kernels need every pixel pair: only on a GPU for image data sets
    analytic = params["analytic"] and (model == "mlp" or config.device == "cuda")
    methods = [m for m in NET_METHODS + KERNEL_METHODS if analytic or m not in ("ntk", "nngp")]
    return [Run("equivalence", config.dataset, model, method, seed, alpha=alpha, device=config.device,
                params=params)
            for seed in range(config.params["seeds"]) for method in methods
            for alpha in (config.params["scales"] if method == "lazy" else [None])]


def shared_work(run) -> dict:
    """The methods and α of one seed share its data split and reference kernel Θ₀."""
    return {k: v for k, v in run.config().items() if k not in ("method", "scale")}


# ------------------------------------------------------------------------------------------- one run
def _torch_dtype(run):
    import torch
    return {"float32": torch.float32, "float64": torch.float64}[run.params["dtype"]]


def _problem(run):
    """Data split and float targets: one-hot for classification, standardised for regression."""
    p = run.params
    image = run.dataset in IMAGE_DATASETS
    ds = load_split(run.dataset, p["n_train"], p["n_test"], run.seed, p["data_dir"],
                    p["image_classes"] if image else None)
    dtype = np.dtype(p["dtype"])
    X_train, X_test = np.asarray(ds.X_train, dtype), np.asarray(ds.X_test, dtype)
    if ds.task == "classification":
        labels = np.unique(ds.y_train)
        y_train = (ds.y_train[:, None] == labels[None, :]).astype(dtype)
        y_test = np.searchsorted(labels, ds.y_test)
    else:
        mean, std = float(np.mean(ds.y_train)), float(np.std(ds.y_train))
        y_train = ((ds.y_train - mean) / std).astype(dtype)[:, None]
        y_test = ((ds.y_test - mean) / std).astype(dtype)[:, None]
    return ds.task, X_train, y_train, X_test, y_test


def _problem_key(run) -> dict:
    keys = ("n_train", "n_test", "image_classes", "data_dir", "dtype")
    return {"problem": run.dataset, "seed": run.seed, **{k: run.params[k] for k in keys}}


def _network(run, d_in, d_out):
    """The network at w₀ for this seed (same w₀ for every method of the seed), on the run's device."""
    import torch
    from nets import CNN, MLP
    torch.manual_seed(run.seed)
    p = run.params
    if run.model == "cnn":
        net = CNN(in_channels=d_in, channels=p["channels"], depth=p["conv_depth"], num_outputs=d_out)
    else:
        net = MLP(d_in, p["widths"], d_out, activation="relu", bias=False, parameterization="ntk")
    return net.to(device=run.device, dtype=_torch_dtype(run))


def analytic_kernel(run):
    """The infinite-width kernel of the run's network, computing on the run's device in its dtype."""
    from kernels import Convolutional, FullyConnected
    p = run.params
    if run.model == "cnn":
        return Convolutional(depth=p["conv_depth"], activation="relu", w_std=2 ** 0.5, b_std=0.0,
                             filter_size=3, readout="gap", device=run.device, dtype=p["dtype"])
    return FullyConnected(depth=len(p["widths"]), activation="relu", w_std=2 ** 0.5, b_std=0.0,
                          parameterization="ntk", device=run.device, dtype=p["dtype"])


def _flow(K_train, K_test, y, t):
    """Train and test predictions (NumPy) of kernel gradient flow at time t (None = ridgeless KRR), computed
    on the kernel's device.

    A scalar kernel (n, n) is shared by all outputs; a full multi-output kernel (n·O, n·O), indexed
    (sample, output), couples them: y (n, O) is then flattened in the same order, and the time is given to
    the solver as t·O, since its flow exp(−tK/N) divides by the number of rows N = n·O, not by n.
    """
    from kernels.backend import device_of, to_device, to_numpy
    from kernels.solvers import EigenPath
    n, outputs = y.shape
    y = to_device(y, device_of(K_train))
    if K_train.shape[0] == n * outputs and outputs > 1:
        coef = EigenPath(K_train).dual_coef(y.reshape(-1), t=None if t is None else t * outputs)
        return (np.reshape(to_numpy(K_train @ coef), (n, outputs)),
                np.reshape(to_numpy(K_test @ coef), (-1, outputs)))
    coef = EigenPath(K_train).dual_coef(y, t=t)
    return to_numpy(K_train @ coef), to_numpy(K_test @ coef)


def _full_ntk(net, x1, x2=None):
    """The empirical NTK with its output blocks, Θ_oo'(x, x'), as an (n1·O, n2·O) matrix (sample-major)."""
    from kernels import empirical_ntk
    from kernels.backend import to_numpy
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
    lr = run.params["lr_factor"] * X_train.shape[0] / lam_max
    t = lr * run.params["steps"]
    return dict(K_train=K_train, K_test=K_test, lr=lr, t=t, predictions=_flow(K_train, K_test, y_train, t))


def _scores(task, pred_train, pred_test, y_train, y_test, ref_test) -> dict:
    pred_train, pred_test = np.asarray(pred_train), np.asarray(pred_test)
    row = {"train_loss": 0.5 * float(np.sum((pred_train - y_train) ** 2)) / len(y_train)}
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
    ref = memo.get({"reference": shared_work(run)}, lambda: _reference(run, memo))
    row = {"n_train": len(X_train), "n_test": len(X_test), "t": ref["t"], "lr": ref["lr"]}
    if run.method not in KERNEL_METHODS:
        return {**row, **_train_net(run, task, X_train, y_train, X_test, y_test, ref)}
    if run.method == "empirical_ntk":
        pred = ref["predictions"]
    elif run.method == "empirical_ntk_krr":
        pred = _flow(ref["K_train"], ref["K_test"], y_train, None)
    else:
        kernel = analytic_kernel(run)
        nngp_train, ntk_train = kernel.kernels(X_train)
        nngp_test, ntk_test = kernel.kernels(X_test, X_train)
        pred = (_flow(ntk_train, ntk_test, y_train, ref["t"]) if run.method == "ntk"
                else _flow(nngp_train, nngp_test, y_train, None))
    return {**row, **_scores(task, *pred, y_train, y_test, ref["predictions"][1])}


def _train_net(run, task, X_train, y_train, X_test, y_test, ref) -> dict:
    import torch
    from nets import Lazy, Linearized, diagnostics, train
    from nets.training import DivergenceError
    d_in, d_out = X_train.shape[1], y_train.shape[1]
    net = _network(run, d_in, d_out)
    module = {"net": lambda: net, "lazy": lambda: Lazy(net, run.alpha),
              "linearized": lambda: Linearized(Lazy(net, 1.0))}[run.method]()
    initial = _network(run, d_in, d_out) if run.method == "net" else None   # Lazy/Linearized carry their w₀
    X_tr, X_te = (torch.as_tensor(x, device=run.device) for x in (X_train, X_test))
    try:
        train(module, X_tr, torch.as_tensor(y_train, device=run.device), loss="mse", optimizer="gd",
              lr=ref["lr"], steps=run.params["steps"], seed=run.seed, quiet=True)
    except DivergenceError as exc:
        return {"diverged": True, "error": str(exc)}
    with torch.no_grad():
        pred_train, pred_test = (module(x).cpu().numpy() for x in (X_tr, X_te))
    row = _scores(task, pred_train, pred_test, y_train, y_test, ref["predictions"][1])
    row["weight_change"] = diagnostics.relative_weight_change(module, initial)
    if run.method != "linearized":   # the linearized model's tangent kernel never moves
        row["ntk_drift"] = diagnostics.ntk_drift(module, X_tr[: run.params["probe"]], initial)
    return row


# ------------------------------------------------------------------------------------------- the report
def _performance(rows) -> str:
    return "test_accuracy" if any("test_accuracy" in r for r in rows) else "test_mse"


def _draw_performance(rows, path):
    metric = _performance(rows)
    label = "test accuracy %" if metric == "test_accuracy" else "test MSE"
    return plots.plot_vs_scale(rows, metric, path, label, f"{label} vs α (dashed: methods without α)",
                               percent=metric == "test_accuracy", methods=EXPERIMENT.methods)


EXPERIMENT = Experiment(
    name="equivalence", summary=__doc__, datasets=DATASETS, presets=PRESETS, plan=plan, run_one=run_one,
    methods=NET_METHODS + KERNEL_METHODS,
    metrics=metric_titles("test_accuracy", "test_mse", "train_loss", "agreement", "weight_change", "ntk_drift"),
    percent=("test_accuracy", "agreement"), axes=("method", "scale", "seed"), shared_work=shared_work,
    figures=(
        Figure("accuracy.png", _draw_performance,
               "Test performance of each method against the lazy scale α. Dashed lines: the normally trained "
               "net, the linearized net and the kernel predictors, which do not depend on α (bands: ± std over "
               "seeds)."),
        Figure("agreement.png",
               lambda rows, path: plots.plot_vs_scale(rows, "agreement", path, "agreement %",
                                                      "agreement with the empirical-NTK predictor", percent=True,
                                                      methods=EXPERIMENT.methods),
               "Fraction of test points on which a method's prediction agrees with the empirical-NTK "
               "gradient-flow predictor at the matching training time. Lazy training approaches 100% as α grows."),
        Figure("weight_change.png",
               lambda rows, path: plots.plot_vs_scale(rows, "weight_change", path, "‖w_T − w₀‖ / ‖w₀‖",
                                                      "relative weight change", methods=EXPERIMENT.methods),
               "Relative weight change at the end of training: O(1/α) for the lazy net."),
    ),
)
