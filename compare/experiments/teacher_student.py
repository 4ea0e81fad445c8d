"""teacher-student: the paper's two-layer ReLU experiment — lazy (large-τ) training generalises worse.

Chizat, Oyallon & Bach (NeurIPS 2019, §3): a teacher with 3 ReLU neurons labels inputs drawn uniformly on
the unit sphere of R^d (``compare.data``'s teacher–student generator); a student with m = 50 neurons and
symmetrised initialisation (so h(w₀) = 0) of scale τ is trained by full-batch gradient descent on
R = (1/2n)·‖f(X) − y‖². Since ReLU is positively homogeneous, scaling the initialisation by τ acts like the lazy
scale α = τ²: large τ keeps the student near its linearization (kernel regime), small τ lets its neurons move to
the teacher's directions. Reported against τ for each d, mean ± std over seeds: the test loss (same R on fresh
test points) at the end of training and the best over training (the test loss after every step, its minimum:
oracle early stopping, as the authors plot it), and the scale criterion κ at init
(``nets.diagnostics.scale_criterion``, κ ≪ 1: lazy), the axis on which both protocols below can be compared.

Two protocols (``protocol``):

- 'lazykit' (presets quick, full, paper): student h(w)(x) = (1/m)·Σ_j b_j·relu(a_j·x), a_j uniform on the sphere
  of radius τ, b_j = ±τ; teacher output weights all +1; n_train = 200 (paper preset); step
  lr = lr_factor·m/max(1, τ²) — the student's tangent kernel scales like max(1, τ)²/m (weights of size τ at
  start, of the teacher's size once learnt), so this keeps gradient descent stable for every τ.
- 'authors' (preset authors: their shallow-nn/test_vs_scale.jl with `GDfor2NN` of their lazy.ipynb):
  d = 100, n_train = n_test = 1000, teacher output weights ±1 at random, student Σ_j b_j·relu(a_j·x) without the
  1/m, every weight drawn from N(0, τ²) and symmetrised (b_j = |b_j| for the first half, the second half its
  copy with −b_j), τ = 10^(−2.2 … 1) in steps of 0.1, 10⁴ steps of plain GD at step min(10, 0.1/τ²), 10 trials.
  Their loss log is taken before each update (entries after 0 … 9999 updates); here the test loss is taken at
  init and after every update (0 … 10⁴).
"""
from __future__ import annotations

import math

import numpy as np

from kernels import check_choice

from compare.present import plots
from compare.data import teacher_student_tensors
from compare.experiment import Experiment, Figure, Preset, learning_rate
from compare.sweep.run import Run
from compare.seeding import seeded_torch
from compare.present.summary import aggregate, metric_titles, several_seeds

PROTOCOLS = ("lazykit", "authors")
AUTHORS_TAUS = [round(10 ** (-2.2 + 0.1 * k), 10) for k in range(33)]   # 10 .^ (-2.2:0.1:1)
PRESETS = {
    "quick": Preset("a CPU", dims=[2, 10], taus=[0.01, 0.1, 1.0, 10.0], m=50,
                    n_train=100, n_test=1000, steps=2000, lr_factor=1.0, protocol="lazykit", seeds=2),
    "full": Preset("a CPU", dims=[2, 10, 100], taus=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
                   m=50, n_train=200, n_test=2000, steps=10000, lr_factor=1.0, protocol="lazykit", seeds=5),
    "paper": Preset("a CPU (small models: a GPU does not help)",
                    dims=[2, 10, 100], taus=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0], m=50,
                    n_train=200, n_test=5000, steps=50000, lr_factor=1.0, protocol="lazykit", seeds=10),
    "authors": Preset("a CPU (330 runs of 10⁴ steps)", dims=[100], taus=AUTHORS_TAUS, m=50, n_train=1000,
                      n_test=1000, steps=10000, lr_factor=1.0, protocol="authors", seeds=10),
}
# settings added after teacher-student results were first kept: at these values the runs are the older ones
ADDED_SETTINGS = {"protocol": "lazykit"}


def plan(config) -> list:
    params = {k: v for k, v in config.params.items() if k not in ("seeds", "dims", "taus")}
    check_choice(params["protocol"], "protocol (--set protocol=)", PROTOCOLS)
    return [Run("teacher-student", config.dataset, "two_layer", "net", seed, init_scale=tau, **config.run_devices(),
                params={**params, "d": d}, defaults=ADDED_SETTINGS)
            for seed in range(config.params["seeds"]) for d in config.params["dims"] for tau in config.params["taus"]]


def student(run):
    """The run's student at init scale τ (float64), as its protocol draws it."""
    import torch
    from nets import TwoLayer
    p, tau = run.params, run.init_scale
    authors = p.get("protocol", "lazykit") == "authors"
    with seeded_torch(run.seed):
        net = TwoLayer(p["d"], p["m"], activation="relu", bias=False, init_scale=tau, symmetric=True,
                       init="gaussian" if authors else "sphere", normalize=not authors)
    return net.to(device=run.device, dtype=torch.float64)


def step_size(run) -> float:
    """'lazykit': lr_factor·m/max(1, τ²); 'authors': lr_factor·min(10, 0.1/τ²) (test_vs_scale.jl)."""
    p, tau = run.params, run.init_scale
    if p.get("protocol", "lazykit") == "authors":
        return learning_rate(p["lr_factor"], min(10.0, 0.1 / tau ** 2), "lr_factor·min(10, 0.1/τ²)")
    return learning_rate(p["lr_factor"], p["m"] / max(1.0, tau ** 2), "lr_factor·m/max(1, τ²)")


def run_one(run, memo=None) -> dict:
    """Train the student at init scale τ = run.init_scale in dimension d; its test loss at the end and the best
    over training, and κ at init."""
    import torch
    from nets import DivergenceError, scale_criterion, train
    p = run.params
    signs = "random" if p.get("protocol", "lazykit") == "authors" else "ones"
    ds, X_train, X_test, y_train = teacher_student_tensors(p["n_train"], p["n_test"], p["d"], run.seed, run.device,
                                                           teacher_signs=signs)
    net = student(run)
    lr = step_size(run)
    row = {"n_train": len(ds.y_train), "lr": lr,
           "kappa": scale_criterion(net, X_train, y_train, seed=run.seed).kappa}
    y_test = torch.as_tensor(ds.y_test, device=run.device)

    def test_loss(module):
        with torch.no_grad():
            return 0.5 * float(((module(X_test)[:, 0] - y_test) ** 2).mean())

    best = [test_loss(net)]

    def track(step, module, history):
        best[0] = min(best[0], test_loss(module))

    try:
        history = train(net, X_train, y_train, loss="mse", optimizer="gd", lr=lr, steps=p["steps"],
                        seed=run.seed, callbacks=(track,), quiet=True)
    except DivergenceError as exc:
        return {**row, "diverged": True, "error": str(exc)}
    with torch.no_grad():
        train_pred = net(X_train).cpu().numpy()[:, 0]
    row["train_loss"] = 0.5 * float(np.mean((train_pred - ds.y_train) ** 2))
    row["test_loss"] = test_loss(net)
    row["best_test_loss"] = best[0] if math.isfinite(best[0]) else None
    row["final_batch_loss"] = history.losses[-1]
    return row


def _draw(rows, path, x_field):
    """Test loss at the end (solid) and best over training (dashed) against τ or κ, one curve per protocol and d."""
    keys = ["protocol", "d", "model", "method", "scale"]
    rows = [{**r, "protocol": r.get("protocol", "lazykit")} for r in rows]
    groups = aggregate(rows, keys, ("net",), ("test_loss", "best_test_loss", "kappa"))
    curves = sorted({(g["protocol"], g["d"]) for g in groups if g.get("d") is not None and "test_loss" in g})
    if not curves or (x_field == "kappa" and not any("kappa" in g for g in groups)):
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, (protocol, d) in enumerate(curves):
        pts = sorted((g for g in groups if (g["protocol"], g["d"]) == (protocol, d) and "test_loss" in g
                      and (x_field == "scale" or "kappa" in g)),
                     key=lambda g: g["scale"] if x_field == "scale" else g["kappa"][0])
        x = np.array([g["scale"] if x_field == "scale" else g["kappa"][0] for g in pts])
        end = np.array([g["test_loss"][0] for g in pts])
        err = np.array([g["test_loss"][1] or 0.0 for g in pts])
        label = f"d = {d}" + ("" if len({c[0] for c in curves}) == 1 and protocol == "lazykit" else f", {protocol}")
        ax.errorbar(x, end, yerr=err, capsize=3, label=f"{label}: end of training", **plots.style(i))
        bests = [(xi, g["best_test_loss"][0]) for xi, g in zip(x, pts) if "best_test_loss" in g]
        if bests:
            ax.plot(*zip(*bests), alpha=0.7, label=f"{label}: best over training",
                    **plots.style(i, scaled=False))
    xlabel = "initialisation scale τ" if x_field == "scale" else "scale criterion κ at init (nets.diagnostics)"
    return plots.finish(plt, fig, ax, path, xlabel,
                        "test loss" + (" (mean ± std over seeds)" if several_seeds(rows) else " (one seed)"),
                        "Teacher–student: large τ (lazy) generalises worse")


def plot_teacher_student(rows, path):
    """Test loss at the end of training (and best over training) against the init scale τ."""
    return _draw(rows, path, "scale")


def plot_vs_kappa(rows, path):
    """The same against κ at init: lazykit's and the authors' parameterisations on one axis."""
    return _draw(rows, path, "kappa")


EXPERIMENT = Experiment(
    name="teacher-student", summary=__doc__, datasets=("teacher-student",), presets=PRESETS, plan=plan,
    run_one=run_one, methods=("net",),
    metrics={**metric_titles("test_loss"), "best_test_loss": "best test loss", **metric_titles("train_loss"),
             "kappa": "κ at init"},
    axes=("d", "scale", "seed"), scale_field="init_scale", group_by=("model", "d", "method", "scale"),
    figures=(Figure("teacher_student.png", plot_teacher_student,
                    lambda rows: "Test loss at the end of training (solid) and the best over training (dashed) "
                    "against the initialisation scale τ" + (", mean ± std over seeds" if several_seeds(rows) else
                                                            ", one seed") + ": small τ learns the teacher's 3 directions, "
                    "large τ trains lazily and generalises worse, more so in high dimension."),
             Figure("teacher_student_kappa.png", plot_vs_kappa,
                    "The same against the scale criterion κ at init (Theorem 2.3: lazy when κ ≪ 1), the common "
                    "axis of lazykit's parameterisation (1/m, sphere of radius τ) and the authors' (no 1/m, "
                    "Gaussian of std τ).")),
)
