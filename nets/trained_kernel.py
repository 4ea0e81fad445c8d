"""The tangent kernel through training: its change and effective rank at chosen steps, and the kernel machines
built from the kernel of the trained network.

For a network h with parameters w, Θ_t(x, x') = Σ_p ∂h(x)/∂w_p · ∂h(x')/∂w_p at w_t (`kernels.empirical_ntk`).
In the lazy regime Θ_t stays at Θ₀ (Jacot et al. 2018; Chizat, Oyallon & Bach 2019): the relative change
‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F → 0 as α → ∞. In the feature regime it moves, and regression with the trained network's kernel
("after-training kernel": Fort et al., NeurIPS 2020; Long, 2021) often beats regression with Θ₀.
The effective rank of a PSD kernel is exp(H(p)), H the Shannon entropy of p_i = λ_i / Σ_j λ_j (Roy & Vetterli,
EUSIPCO 2007): n for K ∝ I, 1 for a rank-one kernel.

For a `Lazy` module h_α = α(h − h(w₀)) the kernel used is that of its trainable network h (Θ_{h_α} = α²·Θ_h: the α²
cancels in the relative change, the effective rank and ridgeless regression). A `Linearized` module's kernel is
Θ₀ at every step.
"""
import copy

import numpy as np
import torch
from torch import nn

from kernels import empirical_ntk, krr_solve, to_numpy
from nets.lazy import Lazy, Linearized

LAYERS = ("all", "last")


def effective_rank(K):
    """exp(entropy of the normalised eigenvalues) of a symmetric PSD matrix (negative rounding clipped to 0)."""
    eigenvalues = np.clip(np.linalg.eigvalsh(np.asarray(to_numpy(K), dtype=np.float64)), 0.0, None)
    total = eigenvalues.sum()
    if total <= 0:
        raise ValueError("effective_rank needs a nonzero positive semi-definite kernel")
    p = eigenvalues[eigenvalues > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _network(module):
    if isinstance(module, Lazy):
        return module.model
    if isinstance(module, Linearized):
        return module.model_at_init   # its Jacobian is fixed at w₀
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return module


def _last_layer_only(network):
    """A copy of `network` in which only the parameters of its last module owning parameters are trainable."""
    network = copy.deepcopy(network)
    owners = [m for m in network.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    if not owners:
        raise ValueError("the network has no trainable parameter")
    network.requires_grad_(False)
    for p in owners[-1].parameters(recurse=False):
        p.requires_grad_(True)
    return network


def trained_kernel(module, x1, x2=None, layers="all", output="mean"):
    """Θ_t(x1, x2) of the module's network now, over all its trainable parameters ('all') or those of its last
    layer only ('last': the kernel of the learned features, φ(x)·φ(x') scaled as the readout), as a NumPy array;
    `output` as in `kernels.empirical_ntk`."""
    if layers not in LAYERS:
        raise ValueError(f"unknown layers {layers!r}; valid: {', '.join(map(repr, LAYERS))}")
    network = _network(module)
    if isinstance(module, Linearized):
        network = copy.deepcopy(network)
        trainable = set(module.names)
        for name, p in network.named_parameters():
            p.requires_grad_(name in trainable)
    if layers == "last":
        network = _last_layer_only(network)
    return np.asarray(to_numpy(empirical_ntk(network, x1, x2, output=output)))


class KernelTracker:
    """A `nets.train` callback recording, at the chosen steps, the kernel Θ_t on `probe` inputs, its relative change
    ‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F and its effective rank. Θ₀ is taken when the tracker is made (build it before `train`).

    Attributes, one entry per recorded step (step 0 included): `steps`, `kernels`, `changes`, `effective_ranks`.
    """

    def __init__(self, module, probe, steps, layers="all"):
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
            steps = [steps]
        steps = sorted({int(s) for s in steps})
        if not steps or steps[0] < 1:
            raise ValueError(f"steps must list step numbers >= 1 (updates done), got {steps!r}")
        self.probe, self.layers, self.record_at = probe, layers, set(steps)
        initial = trained_kernel(module, probe, layers=layers)
        self._norm0 = float(np.linalg.norm(initial))
        self.steps, self.kernels, self.changes, self.effective_ranks = [0], [initial], [0.0], [effective_rank(initial)]

    def __call__(self, step, module, history):
        if step in self.record_at:
            self.record(step, module)
        return False

    def record(self, step, module):
        """Record Θ at `step` now (e.g. at the step where a stop rule ended training); a step already recorded
        is left as it is."""
        if step in self.steps:
            return
        kernel = trained_kernel(module, self.probe, layers=self.layers)
        self.steps.append(step)
        self.kernels.append(kernel)
        self.changes.append(float(np.linalg.norm(kernel - self.kernels[0])) / self._norm0)
        self.effective_ranks.append(effective_rank(kernel))


def after_training_kernel_regression(module, X_train, y_train, X_test, layers="all", ridge=0.0):
    """Kernel regression with the kernel of the trained network: c = (Θ_T(X, X) + ridge·I)⁻¹ y, predictions
    Θ_T(·, X)·c on the training and test inputs (`kernels.solve.ridge.krr_solve`; ridge 0 is the min-norm
    interpolant). y_train: (n,) or (n, O), each column regressed with the output-averaged kernel."""
    X_train, X_test = (torch.as_tensor(x) for x in (X_train, X_test))
    K_train = trained_kernel(module, X_train, layers=layers)
    K_test = trained_kernel(module, X_test, X_train, layers=layers)
    y_train = to_numpy(y_train) if torch.is_tensor(y_train) else y_train
    coef = krr_solve(K_train, np.asarray(y_train, dtype=K_train.dtype), alpha=ridge)
    return K_train @ coef, K_test @ coef
