"""Kernel gradient flow of any training loss: the predictor of a linearized network trained by gradient flow.

A model linear in its parameters, f_w = f₀ + J(w − w₀), trained by gradient flow on R(f) = (1/n) Σ_i ℓ(f(x_i), y_i)
moves in function space by  df_t/dt = −K ∇ℓ(f_t) / n  with K = J Jᵀ its tangent kernel (Jacot, Gabriel & Hongler,
NeurIPS 2018, §4; for a `Lazy` model trained on R/α², K is the NTK of the inner network). Writing
f_t = f₀ + K a_t, the dual coefficients follow the ODE on the n training points

    da/dt = −∇ℓ(f₀ + K a) / n,   a₀ = 0,

and every other input follows from them: f_t(x*) = f₀(x*) + K(x*, X) a_t. For the squared loss this is the
closed form of `kernels.solve.ridge.EigenPath` (f_t = K K⁻¹(I − e^{−tK/n}) y from f₀ = 0); for the other losses the
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

# the losses lazykit trains nets on (nets.train) and flows kernel predictors on: defined here once
MARGIN_LOSSES = ("hinge", "quadratic_hinge", "softhinge", "logistic")
LOSSES = ("mse", "cross_entropy") + MARGIN_LOSSES
METHODS = ("DOP853", "RK45", "RK23", "Radau", "BDF", "LSODA", "euler")
MAX_OUTPUTS = 100_000      # outputs (classes) a flow may have: the label 10**12 is a mistake, not 10**12 classes
MAX_STEPS = 10 ** 7        # Euler steps: beyond this, an error-controlled method is the faster way
# (stages per step, the h·λ < 0 at which the method leaves its stability region on the real axis): the root of
# |R(z)| = 1, R(z) = 1 + z·bᵀ(I − zA)⁻¹𝟙, computed from scipy's Butcher tableaus (2.513, 3.307, 6.394)
EXPLICIT_STABILITY = {"RK23": (3, 2.51), "RK45": (6, 3.30), "DOP853": (12, 6.39)}


def loss_derivatives(f, y, loss, beta=1.0):
    """(ℓ per entry, ∂ℓ/∂f, ∂²ℓ/∂f² or None) for outputs f (n, O) and targets y (n, O) (integer labels (n,) for
    'cross_entropy', whose Hessian is a block and is returned as None). ℓ summed over all entries and divided by n
    is the risk R."""
    check_choice(loss, "loss", LOSSES)
    beta = check_scalar(beta, "beta", float, min_val=0, include_boundaries="neither")
    f = backend.to_numpy(check_array(f, "f", ndim=2, dtype="float64"))
    y = _checked_targets(y, loss, f.shape)
    return _derivatives(f, y, loss, beta)


def _checked_targets(y, loss, shape):
    """y as the loss needs it for outputs of ``shape`` (n, O): labels (n,) in [0, O) or values (n, O)."""
    if loss == "cross_entropy":
        labels = _labels(y)
        if labels.shape[0] != shape[0] or labels.max() >= shape[1]:
            raise ValueError(f"y must hold {shape[0]} labels in [0, {shape[1]}) for f of shape {shape}, got "
                             f"{labels.shape[0]} labels up to {labels.max()}")
        return labels
    y = backend.to_numpy(check_array(y, "y", dtype="float64"))
    if y.size != shape[0] * shape[1] or y.shape[0] != shape[0]:
        raise ValueError(f"y must have the shape of f {shape} (or (n,) for one output), got {y.shape}")
    return _checked_signs(y.reshape(shape), loss)


def _checked_signs(y, loss):
    """y, after checking that a margin loss gets only labels ±1."""
    if loss in MARGIN_LOSSES and not np.all(np.abs(y) == 1.0):
        raise ValueError(f"y must hold labels -1 and +1 for loss={loss!r} (one-vs-rest columns for several "
                         f"outputs), got values {np.unique(y)[:5]}")
    return y


def _labels(y):
    labels = np.asarray(backend.to_numpy(y) if backend.is_array(y) else y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0:
        raise ValueError(f"y must be 1-D integer class labels >= 0 for loss='cross_entropy', got {labels!r:.80}")
    if labels.max() >= MAX_OUTPUTS:
        raise ValueError(f"y holds the label {labels.max()}, which would make {labels.max() + 1} outputs; labels "
                         f"must be below {MAX_OUTPUTS} (number the classes 0, 1, ...)")
    return labels


def _derivatives(f, y, loss, beta):
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
    raise AssertionError(loss)   # unreachable: loss was checked against LOSSES


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
        labels = _labels(y)
        n = labels.shape[0]
        outputs = int(labels.max()) + 1
        if f0 is not None:
            f0 = backend.to_numpy(check_array(f0, "f0", dtype="float64"))
            if f0.shape[0] != n:
                raise ValueError(f"f0 must have one row per label in y ({n}), got shape {f0.shape}")
            outputs = f0.reshape(n, -1).shape[1]
            if labels.max() >= outputs:
                raise ValueError(f"labels in y must lie in [0, {outputs}) for f0 with {outputs} outputs")
        y = labels
    else:
        y = backend.to_numpy(check_array(y, "y", dtype="float64"))
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (n,) or (n, outputs), got {y.shape}")
        y = _checked_signs(y.reshape(y.shape[0], -1), loss)
        n, outputs = y.shape
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
                         method=None, rtol=1e-10, atol=1e-12, steps=1000, max_nfev=1_000_000):
    """Integrate da/dt = −∇ℓ(f₀ + K a)/n from a = 0 to time `t` and predict on the training and test inputs.

    K_train: (n, n), one kernel shared by all outputs, or the full (n·O, n·O) multi-output kernel, sample-major
    (row i·O + o). K_test: K(x*, X) of the same layout, or None. f0, f0_test: the model's outputs at
    initialisation (default 0, as for a `Lazy` model). y: targets (n,) or (n, O) (±1 for the margin losses,
    integer labels (n,) for 'cross_entropy'). t: the flow time (for a network trained with learning rate lr for
    s steps of full-batch gradient descent, t = lr·s). method: a `solve_ivp` method with tolerances rtol/atol,
    or 'euler' with `steps` fixed steps (at most 10⁷); None means 'euler' for the hinge and 'DOP853' otherwise.
    max_nfev: evaluations of the right-hand side an error-controlled method may spend. An explicit method is
    stable only for steps h ≤ c·n/(ℓ''·λ_max(K)) (c from its tableau); a squared-loss flow that would need more
    (large t·λ_max/n) is refused at once, any flow that runs out stops; both errors suggest method='Radau'.
    Returns a `FlowResult`; raises ValueError when the flow overflows, exceeds max_nfev or the integrator fails.
    """
    check_choice(loss, "loss", LOSSES)
    method = check_choice(method, "method", METHODS + (None,)) or ("euler" if loss == "hinge" else "DOP853")
    t = check_scalar(t, "t", float, min_val=0)
    atol = check_scalar(atol, "atol", float, min_val=0)
    beta, rtol = (check_scalar(v, name, float, min_val=0, include_boundaries="neither")
                  for v, name in ((beta, "beta"), (rtol, "rtol")))
    steps = check_scalar(steps, "steps", int, min_val=1, max_val=MAX_STEPS)
    max_nfev = check_scalar(max_nfev, "max_nfev", int, min_val=1)
    K_train, y, f0, K_test, f0_test, n, outputs = _check_inputs(K_train, y, loss, f0, K_test, f0_test)
    apply = _outputs(K_train, n, outputs)
    if method in EXPLICIT_STABILITY and t > 0 and loss == "mse":
        _refuse_stiff(K_train, t, n, method, max_nfev)
    calls, budget = 0, max_nfev if method != "euler" else None     # Euler's cost is `steps`, fixed in advance

    def rhs(_, a):
        nonlocal calls
        calls += 1
        if budget is not None and calls > budget:
            raise _OutOfEvaluations
        f = f0 + apply(np.reshape(a, (n, outputs)))
        return -np.reshape(_derivatives(f, y, loss, beta)[1], -1) / n

    jac = None
    if method in ("Radau", "BDF", "LSODA") and loss != "cross_entropy":
        full = K_train if K_train.shape[0] == n * outputs else np.kron(K_train, np.eye(outputs))

        def jac(_, a):
            f = f0 + apply(np.reshape(a, (n, outputs)))
            return -np.reshape(_derivatives(f, y, loss, beta)[2], -1)[:, None] * full / n

    a = np.zeros(n * outputs)
    nfev, message = 0, "t = 0: nothing to integrate"
    with np.errstate(over="ignore", invalid="ignore"):      # overflow is reported below, by argument
        if t > 0 and method == "euler":
            dt = t / steps
            for _ in range(steps):
                a = a + dt * rhs(None, a)
                if not np.all(np.isfinite(a)):
                    break
            nfev, message = steps, f"{steps} Euler steps of {dt:g}"
        elif t > 0:
            options = {} if jac is None else {"jac": jac}
            try:
                solution = scipy.integrate.solve_ivp(rhs, (0.0, t), a, method=method, rtol=rtol, atol=atol,
                                                     **options)
            except _OutOfEvaluations:
                raise ValueError(f"kernel_gradient_flow: method={method!r} used max_nfev={max_nfev} evaluations "
                                 f"before reaching t={t:g}; the flow is stiff or non-smooth there: use "
                                 "method='Radau' (or 'euler' for the hinge), a smaller t, or raise max_nfev") from None
            except (ArithmeticError, np.linalg.LinAlgError) as error:     # an implicit step met inf/NaN
                raise ValueError(f"kernel_gradient_flow: the integrator (method={method!r}) broke down before t={t:g} "
                                 f"({error}); scale K_train, f0 or y down, or lower t") from error
            if not solution.success:
                raise ValueError(f"kernel_gradient_flow: the integrator (method={method!r}) failed before t={t:g}: "
                                 f"{solution.message}; try method='Radau', looser rtol/atol or a smaller t")
            a, nfev, message = solution.y[:, -1], int(solution.nfev), solution.message
        coef = np.reshape(a, (n, outputs))
        train = f0 + apply(coef)
        test = None if K_test is None else f0_test + _outputs(K_test, n, outputs)(coef)
        train_loss = float(np.sum(_derivatives(train, y, loss, beta)[0]) / n)
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(train)) and np.isfinite(train_loss)
            and (test is None or np.all(np.isfinite(test)))):
        hint = (f"Euler steps of t/steps = {t / steps:g} are beyond gradient descent's stable step; raise steps or "
                "lower t" if method == "euler" else "scale K_train, f0 or y down, or lower t")
        raise ValueError(f"kernel_gradient_flow overflowed (non-finite outputs) with K_train up to "
                         f"{float(np.max(np.abs(K_train))):.3g} at t={t:g}: {hint}")
    return FlowResult(train=train, test=test, coef=coef, t=t, train_loss=train_loss, nfev=nfev, message=message)


class _OutOfEvaluations(Exception):
    """Raised inside the right-hand side when ``max_nfev`` is spent (solve_ivp has no evaluation limit)."""


def _refuse_stiff(K, t, n, method, max_nfev):
    """Refuse an explicit method on the squared loss when its stability limit alone needs more than ``max_nfev``
    evaluations.

    The squared loss's flow is linear, da/dt = −(K a − y)/n, so an explicit method is stable only for
    h·λ_max(K)/n ≤ c and needs ≥ t·λ/(n·c) steps for λ ≤ λ_max(K), here the norm ‖Kv‖ of a few power iterations
    (a lower bound: a flow is refused only when it surely needs more). The other losses' curvature ℓ'' decays as
    the margins grow, and with it the stiffness, so for them only the running count applies.
    """
    stages, limit = EXPLICIT_STABILITY[method]
    v = np.random.default_rng(0).standard_normal(K.shape[0])
    lam = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(20):
            w = K @ (v / np.linalg.norm(v))
            lam = float(np.linalg.norm(w))
            if not np.isfinite(lam) or lam == 0.0:
                break
            v = w
        needed = t * lam / (n * limit) * stages
    if needed > max_nfev or not np.isfinite(needed):
        raise ValueError(f"kernel_gradient_flow: t={t:g} with λ_max(K_train)/n ≥ {lam / n:.3g} is a stiff flow: "
                         f"method={method!r} would need at least {needed:.3g} evaluations (max_nfev={max_nfev}); "
                         "use method='Radau' or 'BDF' (implicit, with the exact Jacobian), or a smaller t")
