"""kernels.solve.flow: kernel gradient flow of any loss vs the squared-loss closed form and vs the weight-space flow
of a linear model (the comparison with a trained `Linearized` network is in tests/nets/test_losses.py)."""
import re

import numpy as np
import pytest
import scipy.integrate

import kernels

from kernels.solve.flow import LOSSES, kernel_gradient_flow, loss_derivatives
from kernels.solve.ridge import EigenPath


def _features(n=24, m=8, p=15, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    Phi, Phi_test = rng.standard_normal((n, p)) / np.sqrt(p), rng.standard_normal((m, p)) / np.sqrt(p)
    labels = rng.integers(0, max(outputs, 2), n)
    return Phi, Phi_test, labels


def test_squared_loss_equals_the_eigen_path_closed_form():
    # f_t = K K⁻¹(I − e^{−tK/n}) y from f₀ = 0 (EigenPath), to 1e-8: the ODE's local error control (rtol 1e-10,
    # atol 1e-12 on the coefficients a, |a| ≲ t·|y|/n) keeps the accumulated error near 1e-10 for O(1) outputs.
    Phi, Phi_test, _ = _features()
    K, K_test = Phi @ Phi.T, Phi_test @ Phi.T
    y = np.random.default_rng(1).standard_normal((24, 2))
    for t in (0.5, 30.0, 400.0):
        result = kernel_gradient_flow(K, y, t, loss="mse", K_test=K_test)
        coef = EigenPath(K).dual_coef(y, t=t)
        np.testing.assert_allclose(result.train, K @ coef, rtol=0, atol=1e-8)
        np.testing.assert_allclose(result.test, K_test @ coef, rtol=0, atol=1e-8)
        assert result.train_loss == pytest.approx(0.5 * np.sum((K @ coef - y) ** 2) / 24, rel=1e-7)


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss != "hinge"])
def test_function_space_flow_equals_weight_space_flow_of_a_linear_model(loss):
    # For f_w = f₀ + Φ w the weight flow dw/dt = −Φᵀ∇ℓ/n (an ODE in p = 15 dimensions, integrated here
    # independently) and the dual flow da/dt = −∇ℓ/n with K = ΦΦᵀ give the same f_t = f₀ + Φ w_t = f₀ + K a_t
    # on train and test inputs; both integrations use rtol 1e-10, so 1e-7 leaves room for their errors.
    outputs = 3 if loss == "cross_entropy" else 2
    Phi, Phi_test, labels = _features(outputs=outputs)
    n = len(Phi)
    y = labels if loss == "cross_entropy" else (2.0 * (labels[:, None] == np.arange(outputs)) - 1.0)
    rng = np.random.default_rng(2)
    f0, f0_test = 0.3 * rng.standard_normal((n, outputs)), 0.3 * rng.standard_normal((8, outputs))
    t = 20.0

    def weight_rhs(_, w):
        f = f0 + Phi @ w.reshape(-1, outputs)
        return -(Phi.T @ loss_derivatives(f, y, loss, beta=3.0)[1]).reshape(-1) / n

    w = scipy.integrate.solve_ivp(weight_rhs, (0, t), np.zeros(15 * outputs), method="DOP853", rtol=1e-11,
                                  atol=1e-13).y[:, -1].reshape(-1, outputs)
    result = kernel_gradient_flow(Phi @ Phi.T, y, t, loss=loss, beta=3.0, K_test=Phi_test @ Phi.T, f0=f0,
                                  f0_test=f0_test)
    np.testing.assert_allclose(result.train, f0 + Phi @ w, rtol=0, atol=1e-7)
    np.testing.assert_allclose(result.test, f0_test + Phi_test @ w, rtol=0, atol=1e-7)
    # the same flow through the full (n·O, n·O) multi-output layout K ⊗ I (sample-major)
    full = kernel_gradient_flow(np.kron(Phi @ Phi.T, np.eye(outputs)), y, t, loss=loss, beta=3.0, f0=f0)
    np.testing.assert_allclose(full.train, result.train, rtol=0, atol=1e-7)


def test_hinge_euler_steps_are_gradient_descent_of_the_linear_model():
    # The hinge's default integrator: s Euler steps in dual space equal s GD steps w ← w − dt·Φᵀ∇ℓ/n of the
    # linear model f = Φw (the same arithmetic up to association: 1e-12).
    Phi, Phi_test, labels = _features()
    y, n, t, steps = 2.0 * labels[:, None] - 1.0, len(Phi), 30.0, 300
    w = np.zeros((15, 1))
    for _ in range(steps):
        w -= (t / steps) * Phi.T @ loss_derivatives(Phi @ w, y, "hinge")[1] / n
    result = kernel_gradient_flow(Phi @ Phi.T, y, t, loss="hinge", K_test=Phi_test @ Phi.T, steps=steps)
    assert result.message.startswith("300 Euler steps")
    np.testing.assert_allclose(result.train, Phi @ w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.test, Phi_test @ w, rtol=0, atol=1e-12)


def test_implicit_method_with_the_exact_jacobian_agrees_with_the_explicit_one():
    # Radau (order 5, implicit, exact Jacobian −diag(ℓ'')K/n) and DOP853 at rtol 1e-10 agree to ~1e-8.
    Phi, Phi_test, labels = _features()
    y = 2.0 * labels - 1.0
    K = Phi @ Phi.T
    a = kernel_gradient_flow(K, y, 50.0, loss="logistic")
    b = kernel_gradient_flow(K, y, 50.0, loss="logistic", method="Radau")
    np.testing.assert_allclose(b.train, a.train, rtol=0, atol=1e-7)


def test_bad_inputs_name_the_argument():
    K = np.eye(3)
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        kernel_gradient_flow(K, np.ones(3), 1.0, loss="huber")
    with pytest.raises(ValueError, match="labels -1 and \\+1"):
        kernel_gradient_flow(K, np.array([0.0, 1.0, 1.0]), 1.0, loss="hinge")
    with pytest.raises(ValueError, match="`t` must be a finite number ≥ 0"):
        kernel_gradient_flow(K, np.ones(3), -1.0)
    with pytest.raises(ValueError, match="K_train must be"):
        kernel_gradient_flow(np.eye(4), np.ones(3), 1.0)
    with pytest.raises(ValueError, match="integer class labels"):
        kernel_gradient_flow(K, np.ones(3), 1.0, loss="cross_entropy")
    with pytest.raises(ValueError, match="K_test must be"):
        kernel_gradient_flow(K, np.ones(3), 1.0, K_test=np.ones((2, 4)))
    with pytest.raises(ValueError, match="unknown method"):
        kernel_gradient_flow(K, np.ones(3), 1.0, method="leapfrog")


def test_a_stiff_explicit_flow_is_refused_at_once_and_radau_solves_it():
    # K = 1e6·I, n = 3: λ_max/n = 3.3e5, so DOP853 (stable for h·λ/n ≤ 6.39, 12 evaluations a step) needs
    # ≥ t·3.3e5/6.39·12 = 6.3e7 evaluations for t = 100, over max_nfev = 1e6; the exact flow of the squared loss
    # is f_t = (1 − e^{−tλ/n}) y = y to the last digit, which the implicit method reaches in a few steps.
    K, y = 1e6 * np.eye(3), np.array([1.0, -2.0, 0.5])
    with pytest.raises(ValueError, match=r"t=100 .*stiff.*method='Radau'"):
        kernel_gradient_flow(K, y, 100.0)
    flow = kernel_gradient_flow(K, y, 100.0, method="Radau")
    np.testing.assert_allclose(flow.train[:, 0], y, rtol=1e-9)


def test_the_evaluation_budget_stops_a_flow_that_runs_out():
    # K = I, n = 2, t = 10: the stability estimate asks for 10/(2·6.39)·12 ≈ 9.4 evaluations (under 20, so it is
    # not refused up front), but DOP853's step-size selection and first steps at rtol 1e-10 take more than 20
    K = np.eye(2)
    with pytest.raises(ValueError, match="max_nfev=20 evaluations before reaching t=10"):
        kernel_gradient_flow(K, np.array([1.0, -1.0]), 10.0, max_nfev=20)
    assert kernel_gradient_flow(K, np.array([1.0, -1.0]), 10.0).nfev > 20
    # Euler's cost is its `steps`, never cut short by max_nfev
    assert kernel_gradient_flow(K, np.array([1.0, -1.0]), 10.0, method="euler", steps=50, max_nfev=20).nfev == 50


def test_overflow_is_an_error_naming_the_inputs_not_inf():
    # Euler on the squared loss multiplies the error by (1 − dt·λ/n) each step: |1 − 1e300·1/1| overflows
    with pytest.raises(ValueError, match="overflowed.*raise steps"):
        kernel_gradient_flow(np.eye(1), np.ones(1), 1e300, method="euler", steps=2)
    with pytest.raises(ValueError, match="`steps` must be"):
        kernel_gradient_flow(np.eye(1), np.ones(1), 1.0, steps=10 ** 8)


def test_loss_derivatives_checks_its_arguments():
    f = np.zeros((2, 3))
    with pytest.raises(ValueError, match="unknown loss"):
        loss_derivatives(f, np.ones((2, 3)), "huber")
    with pytest.raises(ValueError, match=r"y must hold 2 labels in \[0, 3\)"):
        loss_derivatives(f, np.array([0, 3]), "cross_entropy")
    with pytest.raises(ValueError, match="f must be 2-dimensional"):
        loss_derivatives(np.zeros(3), np.ones(3), "mse")
    values, grad, _ = loss_derivatives(f, np.array([0, 2]), "cross_entropy")
    np.testing.assert_allclose(values.sum(axis=1), np.log(3.0))   # −log softmax of equal outputs
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)


# ----------------------------------------------------------------------------------------------- issue #24
@pytest.mark.parametrize("method", ["RK45", "RK23", "DOP853"])
def test_a_collapsing_hinge_flow_is_stopped_early(method):
    # the hinge's derivative jumps at margin 1; an error-controlled method's step collapses there (to 1e-8 at
    # t ≈ 2.09 on these 8 points) and it spent all 10⁶ evaluations before its error. The pace is now measured
    # every 100 steps: the error comes after a few thousand evaluations and says how far it got
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3))
    K, y = X @ X.T + np.eye(8), np.sign(rng.standard_normal(8))
    with pytest.raises(ValueError, match=rf"method='{method}' reached t=2\.\d+ of t=100 after (\d+) evaluations.*"
                                         "the hinge's derivative jumps") as info:
        kernels.kernel_gradient_flow(K, y, 100.0, loss="hinge", method=method)
    evaluations = int(re.search(r"after (\d+) evaluations", str(info.value)).group(1))
    assert evaluations < 20_000
    # Euler, the hinge's default, integrates the same flow to the end
    assert kernels.kernel_gradient_flow(K, y, 100.0, loss="hinge").t == 100.0


def test_the_stepped_solver_matches_solve_ivp():
    # the flow steps solve_ivp's own solver object: the same steps, the same result, bit for bit
    import scipy.integrate
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 2))
    K, y = X @ X.T, np.sign(rng.standard_normal(6))
    result = kernels.kernel_gradient_flow(K, y, 3.0, loss="logistic", method="RK45")

    def rhs(_, a):
        return -kernels.loss_derivatives(K @ a[:, None], y[:, None], "logistic")[1][:, 0] / 6

    reference = scipy.integrate.solve_ivp(rhs, (0.0, 3.0), np.zeros(6), method="RK45", rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(result.coef[:, 0], reference.y[:, -1])
    assert result.nfev == reference.nfev


@pytest.mark.parametrize("loss", ["mse", "quadratic_hinge", "logistic", "softhinge", "hinge"])
def test_loss_derivatives_that_overflow_name_f(loss):
    # ½(f − y)² at |f| = 1e300 is 5e599: it was returned as inf. The hinge, logistic and soft hinge grow linearly
    # in the margin (log(1 + e^z) = z for large z): 1 + 1e300 is finite, and so are they
    f, y = np.full((2, 2), -1e300), np.ones((2, 2))
    if loss in ("mse", "quadratic_hinge"):
        with pytest.raises(ValueError, match=rf"loss='{loss}' overflows float64 at these outputs f"):
            kernels.loss_derivatives(f, y, loss)
    else:
        values, grad, _ = kernels.loss_derivatives(f, y, loss)
        np.testing.assert_allclose(values, 1e300, rtol=1e-15)
        np.testing.assert_allclose(grad, -1.0, rtol=1e-15)


def test_a_purely_relative_tolerance_is_refused():
    # the coefficients start at exactly 0: with atol = 0 scipy's step-size search never settled (one step looped
    # until all 10⁶ evaluations were spent, 16 s)
    K, y = np.eye(3) * 2.0, np.ones(3)
    with pytest.raises(ValueError, match=r"`atol` must be a finite number > 0, got 0\.0"):
        kernels.kernel_gradient_flow(K, y, 1.0, atol=0.0)


def test_a_step_that_never_settles_is_stopped(monkeypatch):
    # the atol = 0 flow, let through the argument check: scipy's first step-size search never ends (its error norm
    # divides by a zero scale); the right-hand side stops it after STEP_EVALUATIONS evaluations within one step
    from kernels.solve import flow
    monkeypatch.setattr(flow, "STEP_EVALUATIONS", 500)
    real = flow.check_scalar
    monkeypatch.setattr(flow, "check_scalar", lambda x, name, *a, **k: 0.0 if name == "atol" else real(x, name, *a, **k))
    with pytest.raises(ValueError, match=r"one step of method='DOP853' took more than 500 evaluations"):
        kernels.kernel_gradient_flow(np.eye(3) * 2.0, np.ones(3), 1.0, atol=0.0)
