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

from compare.experiments import common

EXPERIMENT = "teacher-student"
DATASETS = ("teacher-student",)

PRESETS = {
    "quick": dict(expected="~1 min on 2 CPU cores", dims=[2, 10], taus=[0.01, 0.1, 1.0, 10.0], m=50,
                  n_train=100, n_test=1000, steps=2000, lr_factor=1.0, seeds=2),
    "full": dict(expected="~10 min on 2 CPU cores", dims=[2, 10, 100], taus=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
                 m=50, n_train=200, n_test=2000, steps=10000, lr_factor=1.0, seeds=5),
    "paper": dict(expected="~1 h on 2 CPU cores (small models: the GPU does not help)",
                  dims=[2, 10, 100], taus=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0], m=50,
                  n_train=200, n_test=5000, steps=50000, lr_factor=1.0, seeds=10),
}


def add_arguments(parser):
    common.add_common_arguments(parser, DATASETS, "teacher-student", PRESETS)


def plan(preset: dict, args, device: str):
    base = {"experiment": EXPERIMENT, "dataset": args.dataset, "model": "two_layer", "method": "net",
            "device": device, **{k: v for k, v in preset.items() if k not in ("seeds", "dims", "taus")}}
    configs = [{**base, "d": d, "scale": tau, "seed": seed}
               for seed in range(preset["seeds"]) for d in preset["dims"] for tau in preset["taus"]]
    return configs, base


def run(args) -> int:
    return common.execute(args, EXPERIMENT, PRESETS, DATASETS, plan, run_one, intro=__doc__)


def run_one(config) -> dict:
    """Train the student at init scale τ = config["scale"] in dimension config["d"]; return test loss."""
    import torch
    from nets import TwoLayer, train
    from nets.training import DivergenceError
    ds, X_train, X_test, y_train = common.teacher_student_tensors(config)
    tau, m = config["scale"], config["m"]
    torch.manual_seed(config["seed"])
    student = TwoLayer(config["d"], m, activation="relu", bias=False, init_scale=tau, symmetric=True)
    student = student.to(device=config["device"], dtype=torch.float64)
    lr = config["lr_factor"] * m / max(1.0, tau ** 2)
    row = {"n_train": len(ds.y_train), "lr": lr}
    try:
        history = train(student, X_train, y_train, loss="mse", optimizer="gd", lr=lr, steps=config["steps"],
                        seed=config["seed"], quiet=True)
    except DivergenceError as exc:
        return {**row, "diverged": True, "error": str(exc)}
    with torch.no_grad():
        test = student(X_test).cpu().numpy()[:, 0]
        train_pred = student(X_train).cpu().numpy()[:, 0]
    row["train_loss"] = 0.5 * float(np.mean((train_pred - ds.y_train) ** 2))
    row["test_loss"] = 0.5 * float(np.mean((test - ds.y_test) ** 2))
    row["final_batch_loss"] = history.losses[-1]
    return row
