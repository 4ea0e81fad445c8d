"""Kernel gradient flow of any training loss: the predictor of a linearized network trained by gradient flow.

A model linear in its parameters, f_w = f₀ + J(w − w₀), trained by gradient flow on R(f) = (1/n) Σ_i ℓ(f(x_i), y_i)
moves in function space by  df_t/dt = −K ∇ℓ(f_t) / n  with K = J Jᵀ its tangent kernel (Jacot, Gabriel & Hongler,
NeurIPS 2018, §4; for a `Lazy` model trained on R/α², K is the NTK of the inner network). Writing
f_t = f₀ + K a_t, the dual coefficients follow the ODE on the n training points

    da/dt = −∇ℓ(f₀ + K a) / n,   a₀ = 0,

and every other input follows from them: f_t(x*) = f₀(x*) + K(x*, X) a_t. For the squared loss this is the
closed form of `kernels.solvers.EigenPath` (f_t = K K⁻¹(I − e^{−tK/n}) y from f₀ = 0); for the other losses the
ODE is integrated by `scipy.integrate.solve_ivp` (default DOP853, an explicit Runge–Kutta method of order 8 with
local error control rtol = 1e-10, atol = 1e-12 on a; the implicit methods 'Radau', 'BDF', 'LSODA' get the exact
Jacobian −diag(ℓ'') K / n for element-wise losses, for stiff problems). The hinge's derivative jumps at z = 1,
where the flow slides along the margin and an error-controlled integrator's step collapses; its default is
therefore method='euler': `steps` equal steps a_{k+1} = a_k − (t/steps)·∇ℓ(f_k)/n, which is exactly full-batch
gradient descent of the linearized network with lr = t/steps (global error O(t/steps) against the flow).

Losses, the same as `nets.train` (margin z = y·f, y ∈ {−1, +1}, each output one-vs-rest): 'mse' ½(f − y)²,
'hinge' max(0, 1 − z), 'quadratic_hinge' ½max(0, 1 − z)², 'softhinge' log(1 + e^{β(1−z)})/β,
'logistic' log(1 + e^{−z}), 'cross_entropy' −log softmax(f)_y (integer labels). At the hinge's kink z = 1 the derivative
used is 0, as autograd's.
"""
from __future__ import annotations

import dataclasses
import numpy as np
import scipy.integrate
import scipy.special

from kernels import backend
from kernels.validation import check_array, check_choice, check_scalar

MARGIN_LOSSES = ("hinge", "quadratic_hinge", "softhinge", "logistic")
LOSSES = ("mse", "cross_entropy") + MARGIN_LOSSES
METHODS = ("DOP853", "RK45", "RK23", "Radau", "BDF", "LSODA", "euler")


def loss_derivatives(f, y, loss, beta=1.0):
    """(ℓ per entry, ∂ℓ/∂f, ∂²ℓ/∂f² or None) for outputs f (n, O) and targets y (n, O) (integer labels (n,) for
    'cross_entropy', whose Hessian is a block and is returned as None). ℓ summed over all entries and divided by n
    is the risk R."""
    if loss == "mse":
        return 0.5 * (f - y) ** 2, f - y, np.ones_like(f)
    if loss == "cross_entropy":
        log_p = scipy.special.log_softmax(f, axis=1)
        rows = np.arange(f.shape[0])
        values = np.zeros_like(f)
        values[rows, y] = -log_p[rows, y]
        grad = np.exp(log_p)
        grad[rows, y] -= 1.0
        return values, grad, None
    z = y * f
    if loss == "hinge":
        return np.maximum(0.0, 1.0 - z), -y * (z < 1.0), np.zeros_like(f)
    if loss == "quadratic_hinge":
        gap = np.maximum(0.0, 1.0 - z)
        return 0.5 * gap ** 2, -y * gap, (z < 1.0).astype(f.dtype)
    if loss == "softhinge":
        s = scipy.special.expit(beta * (1.0 - z))
        return np.logaddexp(0.0, beta * (1.0 - z)) / beta, -y * s, beta * s * (1.0 - s)
    if loss == "logistic":
        s = scipy.special.expit(-z)
        return np.logaddexp(0.0, -z), -y * s, s * (1.0 - s)
    check_choice(loss, "loss", LOSSES)


@dataclasses.dataclass(frozen=True)
class FlowResult:
    """Predictions of the kernel gradient flow at time t: `train` (n, O), `test` (m, O) or None, the dual
    coefficients `coef` (n, O), the final risk `train_loss`, and the integrator's `nfev` and `message`."""

    train: np.ndarray
    test: np.ndarray | None
    coef: np.ndarray
    t: float
    train_loss: float
    nfev: int
    message: str


def _outputs(K, n, outputs):
    """A function a (n, O) ↦ K a (n, O) for a scalar kernel (n, n) or a sample-major full kernel (n·O, n·O)."""
    if K.shape[1] == n:
        return lambda a: K @ a
    return lambda a: np.reshape(K @ np.reshape(a, -1), (-1, outputs))


def _check_inputs(K_train, y, loss, f0, K_test, f0_test):
    K_train = backend.to_numpy(check_array(K_train, "K_train", ndim=2))
    if K_train.shape[0] != K_train.shape[1]:
        raise ValueError(f"K_train must be a square Gram matrix, got shape {K_train.shape}")
    if loss == "cross_entropy":
        labels = np.asarray(backend.to_numpy(y) if backend.is_array(y) else y)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0:
            raise ValueError(f"y must be 1-D integer class labels >= 0 for loss='cross_entropy', got {labels!r:.80}")
        n = labels.shape[0]
        outputs = int(labels.max()) + 1 if f0 is None else np.asarray(backend.to_numpy(f0)).reshape(n, -1).shape[1]
        if labels.max() >= outputs:
            raise ValueError(f"labels in y must lie in [0, {outputs}) for f0 with {outputs} outputs")
        y = labels
    else:
        y = backend.to_numpy(check_array(y, "y", dtype="float64"))
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (n,) or (n, outputs), got {y.shape}")
        y = y.reshape(y.shape[0], -1)
        n, outputs = y.shape
        if loss in MARGIN_LOSSES and not np.all(np.abs(y) == 1.0):
            raise ValueError(f"y must hold labels -1 and +1 for loss={loss!r} (one-vs-rest columns for several "
                             f"outputs), got values {np.unique(y)[:5]}")
    if K_train.shape[0] not in (n, n * outputs):
        raise ValueError(f"K_train must be (n, n) or (n*outputs, n*outputs) with n = {n}, outputs = {outputs}, "
                         f"got {K_train.shape}")

    def start(f, rows, name):
        if f is None:
            return np.zeros((rows, outputs))
        f = backend.to_numpy(check_array(f, name, dtype="float64"))
        if f.size != rows * outputs:
            raise ValueError(f"{name} must have {rows} rows and {outputs} outputs, got shape {f.shape}")
        return f.reshape(rows, outputs)

    f0 = start(f0, n, "f0")
    if K_test is not None:
        K_test = backend.to_numpy(check_array(K_test, "K_test", ndim=2))
        if K_test.shape[1] != K_train.shape[1] or K_test.shape[0] % (K_train.shape[1] // n):
            raise ValueError(f"K_test must be K(x*, X) with {K_train.shape[1]} columns (like K_train), got "
                             f"{K_test.shape}")
        f0_test = start(f0_test, K_test.shape[0] // (K_train.shape[1] // n), "f0_test")
    return K_train, y, f0, K_test, f0_test, n, outputs


def kernel_gradient_flow(K_train, y, t, *, loss="mse", beta=1.0, K_test=None, f0=None, f0_test=None,
                         method=None, rtol=1e-10, atol=1e-12, steps=1000):
    """Integrate da/dt = −∇ℓ(f₀ + K a)/n from a = 0 to time `t` and predict on the training and test inputs.

    K_train: (n, n), one kernel shared by all outputs, or the full (n·O, n·O) multi-output kernel, sample-major
    (row i·O + o). K_test: K(x*, X) of the same layout, or None. f0, f0_test: the model's outputs at
    initialisation (default 0, as for a `Lazy` model). y: targets (n,) or (n, O) (±1 for the margin losses,
    integer labels (n,) for 'cross_entropy'). t: the flow time (for a network trained with learning rate lr for
    s steps of full-batch gradient descent, t = lr·s). method: a `solve_ivp` method with tolerances rtol/atol,
    or 'euler' with `steps` fixed steps; None means 'euler' for the hinge and 'DOP853' otherwise.
    Returns a `FlowResult`; raises RuntimeError when the integrator fails.
    """
    check_choice(loss, "loss", LOSSES)
    method = check_choice(method, "method", METHODS + (None,)) or ("euler" if loss == "hinge" else "DOP853")
    t = check_scalar(t, "t", float, min_val=0)
    atol = check_scalar(atol, "atol", float, min_val=0)
    beta, rtol = (check_scalar(v, name, float, min_val=0, include_boundaries="neither")
                  for v, name in ((beta, "beta"), (rtol, "rtol")))
    K_train, y, f0, K_test, f0_test, n, outputs = _check_inputs(K_train, y, loss, f0, K_test, f0_test)
    apply = _outputs(K_train, n, outputs)

    def rhs(_, a):
        f = f0 + apply(np.reshape(a, (n, outputs)))
        return -np.reshape(loss_derivatives(f, y, loss, beta)[1], -1) / n

    jac = None
    if method in ("Radau", "BDF", "LSODA") and loss != "cross_entropy":
        full = K_train if K_train.shape[0] == n * outputs else np.kron(K_train, np.eye(outputs))

        def jac(_, a):
            f = f0 + apply(np.reshape(a, (n, outputs)))
            return -np.reshape(loss_derivatives(f, y, loss, beta)[2], -1)[:, None] * full / n

    a = np.zeros(n * outputs)
    nfev, message = 0, "t = 0: nothing to integrate"
    if t > 0 and method == "euler":
        steps = check_scalar(steps, "steps", int, min_val=1)
        dt = float(t) / int(steps)
        for _ in range(int(steps)):
            a = a + dt * rhs(None, a)
        nfev, message = int(steps), f"{int(steps)} Euler steps of {dt:g}"
    elif t > 0:
        options = {} if jac is None else {"jac": jac}
        solution = scipy.integrate.solve_ivp(rhs, (0.0, float(t)), a, method=method, rtol=rtol, atol=atol,
                                             **options)
        if not solution.success:
            raise RuntimeError(f"kernel_gradient_flow: the integrator ({method}) failed: {solution.message}")
        a, nfev, message = solution.y[:, -1], int(solution.nfev), solution.message
    coef = np.reshape(a, (n, outputs))
    train = f0 + apply(coef)
    test = None if K_test is None else f0_test + _outputs(K_test, n, outputs)(coef)
    train_loss = float(np.sum(loss_derivatives(train, y, loss, beta)[0]) / n)
    return FlowResult(train=train, test=test, coef=coef, t=float(t), train_loss=train_loss, nfev=nfev,
                      message=message)
