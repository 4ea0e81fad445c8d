"""teacher-student: the paper's two-layer ReLU experiment — lazy (large-τ) training generalises worse.

Chizat, Oyallon & Bach (NeurIPS 2019, §3): a teacher with 3 ReLU neurons labels inputs drawn uniformly on
the unit sphere of R^d (``compare.data``'s teacher–student generator); a student
h(w)(x) = (1/m)·Σ_j b_j·relu(a_j·x) with m = 50 neurons and symmetrised initialisation (so h(w₀) = 0) of scale
τ is trained by full-batch gradient descent on R = (1/2n)·‖f(X) − y‖². Since ReLU is positively homogeneous,
scaling the initialisation by τ acts like the lazy scale α = τ²: large τ keeps the student near its
linearization (kernel regime), small τ lets its neurons move to the teacher's directions. The test loss
(same R on fresh test points) at the end of training is reported against τ for each d, mean ± std over seeds.

Step size: lr = lr_factor·m/max(1, τ²) — the student's tangent kernel scales like max(1, τ)²/m (weights of
size τ at start, of the teacher's size once learnt), so this keeps gradient descent stable for every τ.
"""
from __future__ import annotations

import numpy as np

from compare.present import plots
from compare.data import teacher_student_tensors
from compare.experiment import Experiment, Figure, Preset
from compare.sweep.run import Run
from compare.seeding import seeded_torch
from compare.present.summary import aggregate, metric_titles, several_seeds

PRESETS = {
    "quick": Preset("a CPU", dims=[2, 10], taus=[0.01, 0.1, 1.0, 10.0], m=50,
                    n_train=100, n_test=1000, steps=2000, lr_factor=1.0, seeds=2),
    "full": Preset("a CPU", dims=[2, 10, 100], taus=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
                   m=50, n_train=200, n_test=2000, steps=10000, lr_factor=1.0, seeds=5),
    "paper": Preset("a CPU (small models: a GPU does not help)",
                    dims=[2, 10, 100], taus=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0], m=50,
                    n_train=200, n_test=5000, steps=50000, lr_factor=1.0, seeds=10),
}


def plan(config) -> list:
    params = {k: v for k, v in config.params.items() if k not in ("seeds", "dims", "taus")}
    return [Run("teacher-student", config.dataset, "two_layer", "net", seed, init_scale=tau, device=config.device,
                params={**params, "d": d})
            for seed in range(config.params["seeds"]) for d in config.params["dims"] for tau in config.params["taus"]]


def run_one(run, memo=None) -> dict:
    """Train the student at init scale τ = run.init_scale in dimension d; return its test loss."""
    import torch
    from nets import TwoLayer, train
    from nets import DivergenceError
    p = run.params
    ds, X_train, X_test, y_train = teacher_student_tensors(p["n_train"], p["n_test"], p["d"], run.seed, run.device)
    tau, m = run.init_scale, p["m"]
    with seeded_torch(run.seed):
        student = TwoLayer(p["d"], m, activation="relu", bias=False, init_scale=tau, symmetric=True)
    student = student.to(device=run.device, dtype=torch.float64)
    lr = p["lr_factor"] * m / max(1.0, tau ** 2)
    row = {"n_train": len(ds.y_train), "lr": lr}
    try:
        history = train(student, X_train, y_train, loss="mse", optimizer="gd", lr=lr, steps=p["steps"],
                        seed=run.seed, quiet=True)
    except DivergenceError as exc:
        return {**row, "diverged": True, "error": str(exc)}
    with torch.no_grad():
        test = student(X_test).cpu().numpy()[:, 0]
        train_pred = student(X_train).cpu().numpy()[:, 0]
    row["train_loss"] = 0.5 * float(np.mean((train_pred - ds.y_train) ** 2))
    row["test_loss"] = 0.5 * float(np.mean((test - ds.y_test) ** 2))
    row["final_batch_loss"] = history.losses[-1]
    return row


def plot_teacher_student(rows, path):
    """Test loss at the end of training against the init scale τ, one curve per input dimension d."""
    groups = aggregate(rows, ["d", "model", "method", "scale"], ("net",), ("test_loss",))
    dims = sorted({g["d"] for g in groups if g.get("d") is not None})
    if not dims:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, d in enumerate(dims):
        x, mean, std = plots.series(groups, "net", "test_loss", d=d)
        ax.errorbar(x, mean, yerr=std, capsize=3, label=f"d = {d}", **plots.style(i))
    return plots.finish(plt, fig, ax, path, "initialisation scale τ",
                        "test loss" + (" (mean ± std over seeds)" if several_seeds(rows) else " (one seed)"),
                        "Teacher–student: large τ (lazy) generalises worse")


EXPERIMENT = Experiment(
    name="teacher-student", summary=__doc__, datasets=("teacher-student",), presets=PRESETS, plan=plan,
    run_one=run_one, methods=("net",), metrics=metric_titles("test_loss", "train_loss"),
    axes=("d", "scale", "seed"), scale_field="init_scale", group_by=("model", "d", "method", "scale"),
    figures=(Figure("teacher_student.png", plot_teacher_student,
                    lambda rows: "Test loss at the end of training against the initialisation scale τ"
                    + (", mean ± std over seeds" if several_seeds(rows) else ", one seed")
                    + ": small τ learns the teacher's 3 directions, large τ trains lazily and generalises worse, "
                    "more so in high dimension."),),
)
