"""rates: Theorem 2.2 of the paper — how fast lazy training approaches its linearization as α grows.

Chizat, Oyallon & Bach (NeurIPS 2019), Theorem 2.2: for the lazy model h_α = α·(h(w) − h(w₀)) trained by
gradient flow on R(h_α)/α² up to a fixed horizon T, and its linearization h̄_α trained the same way,
  sup_t ‖w_α(t) − w₀‖ = O(1/α),   ‖w_α(T) − w̄_α(T)‖ = O(1/α²),   ‖h_α(T) − h̄_α(T)‖ = O(1/α).
Here: the paper's two-layer network h(w)(x) = (1/m)·Σ_j b_j·σ(a_j·x) with init scale τ = √m (``nets.TwoLayer``)
on teacher–student data, full-batch gradient descent with lr = lr_factor·n/λ_max(Θ₀) for a fixed number of
steps (the same horizon T = lr·steps for every α), in float64. The theorem assumes Dh Lipschitz, which a
ReLU network is not: when a ReLU unit changes sign on an input the rates bend at small α. The presets
therefore use σ = tanh; ``--set activation="'relu'"`` shows the ReLU case. Reported per α: the largest
relative weight change ‖w_α(t) − w₀‖/‖w₀‖ over the run (``weight_distance``), the parameter distance
between the lazy and linearized runs at the end (``param_distance``) and their function distance, the root
mean square difference of outputs on test inputs (``function_distance``); the report fits log-log slopes,
which should be close to −1, −2 and −1.
"""
from __future__ import annotations

import numpy as np

from compare.present import plots
from compare.data import teacher_student_tensors
from compare.experiment import Experiment, Figure, Preset, learning_rate
from compare.sweep.run import Run
from compare.seeding import seeded_torch
from compare.present.summary import TITLES, aggregate, fit_loglog_slope, metric_titles

PRESETS = {
    "quick": Preset("a CPU", d=10, m=200, activation="tanh", n_train=100, n_test=200,
                    scales=[1.0, 10.0, 100.0, 1000.0], steps=200, lr_factor=0.5, seeds=1),
    "full": Preset("a CPU", d=10, m=1000, activation="tanh", n_train=200, n_test=500,
                   scales=[1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0], steps=1000, lr_factor=0.5, seeds=3),
    "paper": Preset("a CPU", d=10, m=1000, activation="tanh", n_train=200, n_test=1000,
                    scales=[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0], steps=5000,
                    lr_factor=0.5, seeds=5),
}
EXPECTED_SLOPES = {"weight_distance": -1, "param_distance": -2, "function_distance": -1}   # Theorem 2.2


def plan(config) -> list:
    params = {k: v for k, v in config.params.items() if k not in ("seeds", "scales")}
    return [Run("rates", config.dataset, "two_layer", "lazy", seed, alpha=alpha, **config.run_devices(),
                params=params)
            for seed in range(config.params["seeds"]) for alpha in config.params["scales"]]


def run_one(run, memo=None) -> dict:
    """Train Lazy(net, α) and Linearized(Lazy(net, α)) from the same w₀ for the same steps; their distances."""
    import torch
    from kernels import empirical_ntk
    from kernels import to_numpy
    from nets import Lazy, Linearized, TwoLayer, function_distance, parameter_distance, relative_weight_change, train
    p = run.params
    _, X_train, X_test, y_train = teacher_student_tensors(p["n_train"], p["n_test"], p["d"], run.seed, run.device)
    with seeded_torch(run.seed):
        net = TwoLayer(p["d"], p["m"], activation=p["activation"], init_scale=p["m"] ** 0.5)
    net = net.to(device=run.device, dtype=torch.float64)
    lam_max = float(np.linalg.eigvalsh(to_numpy(empirical_ntk(net, X_train)))[-1])
    lr = learning_rate(p["lr_factor"], len(X_train) / lam_max, "lr_factor·n/λ_max(Θ₀)")
    lazy = Lazy(net, run.alpha)
    linearized = Linearized(lazy)   # built before training: its own copy of w₀, same starting point
    sup = [0.0]

    def track(step, module, history):
        sup[0] = max(sup[0], relative_weight_change(module))

    for module, callbacks in ((lazy, (track,)), (linearized, ())):
        train(module, X_train, y_train, loss="mse", optimizer="gd", lr=lr, steps=p["steps"],
              seed=run.seed, callbacks=callbacks, quiet=True)
    return {"n_train": len(X_train), "lr": lr, "lambda_max": lam_max,
            "lr_over_limit": lr * lam_max / (2 * len(X_train)),   # GD on ½‖f − y‖²/n is stable below 2n/λ_max
            "t": lr * p["steps"], "weight_distance": sup[0],
            "param_distance": parameter_distance(lazy, linearized),
            "function_distance": function_distance(lazy, linearized, X_test)}


def slopes(rows) -> dict:
    """Fitted log-log slopes of the three distances against α (means over seeds)."""
    groups = aggregate(rows, ["model", "method", "scale"], ("lazy",), tuple(EXPECTED_SLOPES))
    out = {}
    for field in EXPECTED_SLOPES:
        x, mean, _ = plots.series(groups, "lazy", field)
        if len(x):
            out[field] = fit_loglog_slope(x, mean)
    return out


def notes(rows) -> str:
    return ("Fitted log-log slopes: " + ", ".join(f"{TITLES[k]} {v:.2f}" for k, v in slopes(rows).items())
            + " (Theorem 2.2: −1, −2, −1).")


def plot_rates(rows, path):
    """Theorem 2.2's three distances against α on log-log axes, with fitted slopes (expected −1, −2, −1)."""
    groups = aggregate(rows, ["model", "method", "scale"], ("lazy",), tuple(EXPECTED_SLOPES))
    fitted = slopes(rows)
    if not fitted:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, (field, slope) in enumerate(fitted.items()):
        x, mean, std = plots.series(groups, "lazy", field)
        expected = EXPECTED_SLOPES[field]
        ax.errorbar(x, mean, yerr=std, capsize=3, label=f"{TITLES[field]}: slope {slope:.2f} (theory {expected})",
                    **plots.style(i))
        ax.plot(x, mean[0] * (x / x[0]) ** expected, ls=":", color=plots.style(i)["color"], alpha=0.6)
    return plots.finish(plt, fig, ax, path, "lazy scale α", "distance at the end of training",
                        "Theorem 2.2: distances vs α (dotted: theoretical slopes)")


EXPERIMENT = Experiment(
    name="rates", summary=__doc__, datasets=("teacher-student",), presets=PRESETS, plan=plan, run_one=run_one,
    methods=("lazy",), metrics=metric_titles(*EXPECTED_SLOPES), axes=("scale", "seed"), notes=notes,
    figures=(Figure("rates.png", plot_rates, notes),),
)
