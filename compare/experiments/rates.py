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

from compare.experiments import common

EXPERIMENT = "rates"
DATASETS = ("teacher-student",)

PRESETS = {
    "quick": dict(hardware="a CPU", d=10, m=200, activation="tanh", n_train=100, n_test=200,
                  scales=[1.0, 10.0, 100.0, 1000.0], steps=200, lr_factor=0.5, seeds=1),
    "full": dict(hardware="a CPU", d=10, m=1000, activation="tanh", n_train=200, n_test=500,
                 scales=[1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0], steps=1000, lr_factor=0.5, seeds=3),
    "paper": dict(hardware="a CPU", d=10, m=1000, activation="tanh", n_train=200, n_test=1000,
                  scales=[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0], steps=5000,
                  lr_factor=0.5, seeds=5),
}


def add_arguments(parser):
    common.add_common_arguments(parser, EXPERIMENT, DATASETS, "teacher-student", PRESETS)


def plan(preset: dict, args, device: str):
    base = {"experiment": EXPERIMENT, "dataset": args.dataset, "model": "two_layer", "method": "lazy",
            "device": device, **{k: v for k, v in preset.items() if k not in ("seeds", "scales")}}
    configs = [{**base, "scale": a, "seed": s} for s in range(preset["seeds"]) for a in preset["scales"]]
    return configs, base


def run(args) -> int:
    return common.execute(args, EXPERIMENT, PRESETS, DATASETS, plan, run_one, intro=__doc__)


def run_one(config) -> dict:
    """Train Lazy(net, α) and Linearized(Lazy(net, α)) from the same w₀ for the same steps; their distances."""
    import torch
    from kernels import empirical_ntk
    from nets import Lazy, Linearized, TwoLayer, diagnostics, train
    _, X_train, X_test, y_train = common.teacher_student_tensors(config)
    torch.manual_seed(config["seed"])
    net = TwoLayer(config["d"], config["m"], activation=config["activation"], init_scale=config["m"] ** 0.5)
    net = net.to(device=config["device"], dtype=torch.float64)
    lam_max = float(np.linalg.eigvalsh(np.asarray(empirical_ntk(net, X_train)))[-1])
    lr = config["lr_factor"] * len(X_train) / lam_max
    lazy = Lazy(net, config["scale"])
    linearized = Linearized(lazy)   # built before training: its own copy of w₀, same starting point
    sup = [0.0]

    def track(step, module, history):
        sup[0] = max(sup[0], diagnostics.relative_weight_change(module))

    for module, callbacks in ((lazy, (track,)), (linearized, ())):
        train(module, X_train, y_train, loss="mse", optimizer="gd", lr=lr, steps=config["steps"],
              seed=config["seed"], callbacks=callbacks, quiet=True)
    return {"n_train": len(X_train), "lr": lr, "t": lr * config["steps"], "weight_distance": sup[0],
            "param_distance": diagnostics.parameter_distance(lazy, linearized),
            "function_distance": diagnostics.function_distance(lazy, linearized, X_test)}
