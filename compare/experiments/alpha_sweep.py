"""alpha-sweep: accuracy and stability of activations against the lazy scale α — the paper's CNN figure.

Chizat, Oyallon & Bach (NeurIPS 2019, §3) train VGG-11 on CIFAR-10 as the lazy model α·(h(w) − h(w₀)) on the
loss / α² for α from 10⁻² to 10⁷ and plot, against α, the test accuracy and the stability of activations:
the fraction of ReLU signs (and max-pool selections) on the test set that are the same as at initialisation.
Large α keeps every gate where it was (the network is then its linearization) and loses accuracy; small α
moves them and learns better features. Here, for each model, lr setting and α of the grid, one row trains
``Lazy(net, α)`` (centred at every α, α = 1 included, as the authors do) with the protocol of
``compare.experiments.cifar_nets`` and reports:

- ``test_accuracy`` (or ``diverged`` / ``collapsed``), ``train_loss`` (of the last epoch's batches, in the loss's
  own units), ``frozen_gates_accuracy`` (the trained net with its gates frozen at init: the authors' "linearized"
  accuracy, ``nets.FrozenGates``), ``weight_change``;
- ``unchanged_activations_per_layer``: per gated layer, input to output (``gate_layers`` names them), the fraction
  of gates unchanged since init on the test set (``nets.unchanged_gates_per_layer``), with its mean and min;
- the same after every epoch, as the authors compute it: ``test_accuracy_by_epoch``, ``train_loss_by_epoch``,
  ``unchanged_by_epoch`` (one list per epoch);
- the step: ``lr`` (a setting: a number, or "kernel" = ``lr_factor`` times the stability limit of the NTK at init),
  ``lr_used``, ``lambda_max``, ``lr_over_limit``.

The kernel rows of ``cifar_nets.kernel_runs`` (random Fourier features; the CNTK where ``cntk_n_train`` > 0) are
drawn as horizontal lines. Presets: quick (a CPU, minutes): VGG-11 at width 1/8 on 1000/500 images of airplane vs
automobile, 10 epochs, the authors' protocol otherwise (Xavier-normal gain 1, MSE on one-hot targets,
η₀/(1 + epoch/3), batch 128, momentum 0.9, crop + flip; float64 from α = 10⁵) at 0.2 of the stability limit, α from
1 to 10⁵ (below 1 the kernel step diverges in 10 epochs). paper (GPUs, days): the authors' script.sh — VGG-11
at width 1 on all of CIFAR-10, α ∈ {10⁻², 0.1, 0.5, 1, 5, 10, …, 10⁷}, η₀ ∈ {1, 0.1, 0.01, 0.001} for every α,
100 epochs, float64 — whose rows record how far each η₀ is above the limit.
"""
from __future__ import annotations

import numpy as np

from compare.experiment import Experiment, Figure, Preset
from compare.experiments import cifar_nets
from compare.present import plots
from compare.present.summary import aggregate, metric_titles
from compare.sweep.run import Run

_AUTHORS = dict(init="xavier", gain=1.0, loss="mse_mean", lr_schedule="inverse_epoch", lr_decay=1 / 3,
                batch_size=128, momentum=0.9, lr_factor=0.2, power_iterations=30, rff_alpha=1e-3, cntk_depth=3)
PRESETS = {
    "quick": Preset("a CPU", models=["vgg11"], width_factor=0.125, n_train=1000, n_test=500, classes=[0, 1],
                    epochs=10, scales=[1.0, 10.0, 100.0, 1e3, 1e4, 1e5], lrs=["kernel"], dtype="auto",
                    n_stability=None, frozen_gates_pool="gather", cntk_readouts=[], trained_kernels=["ntk", "nngp"],
                    cntk_n_train=0,
                    cntk_n_test=None, rff_features=2000, seeds=1, **_AUTHORS),
    "full": Preset("one GPU", models=["vgg11", "resnet18"], width_factor=0.5, n_train=10000, n_test=2000,
                   classes=None, epochs=30, scales=[0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6],
                   lrs=["kernel"], dtype="auto", n_stability=None, frozen_gates_pool="gather",
                   cntk_readouts=["flatten"], trained_kernels=["ntk", "nngp"], cntk_n_train=2000, cntk_n_test=None,
                   rff_features=20000, seeds=1,
                   **_AUTHORS),
    "paper": Preset("GPUs (48 runs of 100 epochs of VGG-11 in float64)", models=["vgg11"], width_factor=1.0,
                    n_train=None, n_test=None, classes=None, epochs=100,
                    scales=[0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7],
                    lrs=[1.0, 0.1, 0.01, 0.001], dtype="float64", n_stability=None, frozen_gates_pool="authors",
                    cntk_readouts=["gap", "flatten"], trained_kernels=["ntk", "nngp"], cntk_n_train=5000,
                    cntk_n_test=None, rff_features=40000, seeds=1, **_AUTHORS),
}


def plan(config) -> list:
    p = config.params
    cifar_nets.check_settings(p, p["lrs"], "--set lrs: each lr")
    params = {k: v for k, v in p.items() if k not in ("seeds", "models", "scales", "lrs")}
    params["data_dir"] = config.data_dir
    runs = []
    for seed in range(p["seeds"]):
        for model in p["models"]:
            for lr in p["lrs"]:
                runs += [Run("alpha-sweep", config.dataset, model, "lazy", seed, alpha=float(alpha),
                             **config.run_devices(), params={**params, "lr": lr}) for alpha in p["scales"]]
        runs += cifar_nets.kernel_runs(config, lambda model, method, seed=seed: Run(
            "alpha-sweep", config.dataset, model, method, seed, **config.run_devices(), params=params))
    return runs


def shared_work(run) -> dict:
    """The α and lr of one model and seed share λ_max of its NTK at init; kernel rows run alone."""
    if run.method in cifar_nets.KERNEL_METHODS:
        return run.config()
    return {k: v for k, v in run.config().items() if k not in ("scale", "lr")}


def run_one(run, memo=None) -> dict:
    from compare.sweep.memo import Memo
    ds = cifar_nets.split(run)
    row = {"n_train": ds.n_train, "n_test": ds.n_test}
    if run.method in cifar_nets.KERNEL_METHODS:
        return {**row, **cifar_nets.kernel_row(run, ds)}
    return {**row, **cifar_nets.train_row(run, ds, Memo() if memo is None else memo, per_epoch=True)}


# ------------------------------------------------------------------------------------------- the report
GROUP = ("model", "method", "lr", "scale")
FIELDS = ("test_accuracy", "frozen_gates_accuracy", "unchanged_activations", "unchanged_activations_min")


def _curves(rows):
    """{(model, lr): groups sorted by α} of the network rows, and the kernel rows' groups."""
    groups = aggregate(rows, list(GROUP), ("lazy",) + cifar_nets.KERNEL_METHODS, FIELDS)
    curves = {}
    for g in groups:
        if g["method"] == "lazy" and g.get("scale") is not None:
            curves.setdefault((g["model"], g.get("lr")), []).append(g)
    kernels = [g for g in groups if g["method"] in cifar_nets.KERNEL_METHODS and "test_accuracy" in g]
    return {k: sorted(v, key=lambda g: g["scale"]) for k, v in curves.items()}, kernels


def _xy(groups, field):
    pts = [(g["scale"], g[field][0], g[field][1] or 0.0) for g in groups if field in g]
    return (np.array([p[i] for p in pts], float) for i in range(3))


def plot_alpha_sweep(rows, path):
    """Test accuracy (solid; dashed: frozen gates) and unchanged gates (mean and min over layers) against α."""
    curves, kernels = _curves(rows)
    if not curves:
        return None
    plt = plots.pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), dpi=120, sharex=True)
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)
    scales = [g["scale"] for groups in curves.values() for g in groups]
    for (model, lr), groups in curves.items():
        color = next(colors)
        label = model + ("" if len(curves) == 1 else f", lr {lr}")
        x, y, e = _xy(groups, "test_accuracy")
        top.errorbar(x, 100 * y, yerr=100 * e, marker="o", capsize=3, color=color, label=f"{label}: test acc")
        x, y, _ = _xy(groups, "frozen_gates_accuracy")
        top.plot(x, 100 * y, "s--", color=color, alpha=0.7, label=f"{label}: frozen gates")
        x, y, e = _xy(groups, "unchanged_activations")
        bottom.errorbar(x, 100 * y, yerr=100 * e, marker="o", capsize=3, color=color, label=f"{label}: mean")
        x, y, _ = _xy(groups, "unchanged_activations_min")
        bottom.plot(x, 100 * y, "v:", color=color, label=f"{label}: least stable layer")
    for g in kernels:
        top.hlines(100 * g["test_accuracy"][0], min(scales), max(scales), colors=next(colors), linestyles="-.",
                   label=f"{g['model']} ({g['method']})")
    top.set_ylabel("test accuracy %")
    top.set_title("Accuracy and stability of activations vs α")
    top.legend(fontsize=7)
    top.grid(True, which="both", alpha=0.3)
    return plots.finish(plt, fig, bottom, path, "lazy scale α", "gates unchanged since init %",
                        "ReLU signs and max-pool selections on the test set", log_y=False)


def plot_layers(rows, path):
    """Unchanged gates per layer (input to output) against α, for the first model and lr of the sweep."""
    curves, _ = _curves(rows)
    if not curves:
        return None
    (model, lr), groups = next(iter(curves.items()))
    members = [r for r in rows if r.get("model") == model and r.get("lr") == lr and r.get("method") == "lazy"
               and isinstance(r.get("unchanged_activations_per_layer"), list)]
    if not members:
        return None
    names = members[0].get("gate_layers") or [str(i) for i in range(len(members[0]["unchanged_activations_per_layer"]))]
    scales = sorted({r["scale"] for r in members})
    per_layer = np.array([np.mean([r["unchanged_activations_per_layer"] for r in members if r["scale"] == s], 0)
                          for s in scales])
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    cmap = plt.get_cmap("viridis")
    for j, name in enumerate(names):
        ax.plot(scales, 100 * per_layer[:, j], marker=".", color=cmap(j / max(1, len(names) - 1)), label=name)
    return plots.finish(plt, fig, ax, path, "lazy scale α", "gates unchanged since init %",
                        f"{model}: per layer, input (dark) to output (light)", log_y=False,
                        legend=dict(ncol=2, fontsize=6))


def notes(rows) -> str:
    curves, _ = _curves(rows)
    parts = []
    for (model, lr), groups in curves.items():
        done = [g for g in groups if "unchanged_activations_min" in g]
        if len(done) >= 2:
            lo, hi = done[0], done[-1]
            parts.append(f"{model} (lr {lr}): the least stable layer keeps "
                         f"{100 * lo['unchanged_activations_min'][0]:.1f}% of its gates at α = {lo['scale']:g} and "
                         f"{100 * hi['unchanged_activations_min'][0]:.2f}% at α = {hi['scale']:g}.")
    return " ".join(parts + [cifar_nets.limit_notes([r for r in rows if r.get("method") == "lazy"])])


EXPERIMENT = Experiment(
    name="alpha-sweep", summary=__doc__, datasets=("cifar10",), presets=PRESETS, plan=plan, run_one=run_one,
    methods=cifar_nets.NET_METHODS + cifar_nets.KERNEL_METHODS,   # it plans lazy rows; the order is the table's
    metrics={**metric_titles("test_accuracy"), "frozen_gates_accuracy": "frozen-gates acc",
             **metric_titles("train_loss", "unchanged_activations"), "unchanged_activations_min": "least stable layer",
             "weight_change": "weight change", "lr_used": "lr", "lr_over_limit": "lr/limit", "seconds": "time (s)"},
    percent=("test_accuracy", "frozen_gates_accuracy", "unchanged_activations", "unchanged_activations_min"),
    axes=("model", "method", "scale", "lr", "seed"), group_by=GROUP, notes=notes, shared_work=shared_work,
    figures=(Figure("alpha_sweep.png", plot_alpha_sweep,
                    "Top: test accuracy against α (dashed: the same trained nets with their ReLU signs and max-pool "
                    "selections frozen at init, the authors' \"linearized\" accuracy; dash-dotted: kernel rows). "
                    "Bottom: fraction of gates on the test set unchanged since initialisation, mean over layers and "
                    "the least stable layer: it rises to 100% as α grows (the lazy regime)."),
             Figure("stability_per_layer.png", plot_layers,
                    "Fraction of gates unchanged since initialisation per layer (ReLUs and max-pools, input to "
                    "output) against α.")),
)
