"""nets.losses: the margin losses' formulas, one-vs-rest, the 1/α² scale under Lazy, agreement with the NumPy
derivatives of kernels.solve.flow, and the kernel predictor of the logistic loss vs a trained Linearized net."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from kernels.solve.flow import kernel_gradient_flow, loss_derivatives
from nets import MLP, Lazy, Linearized, train
from nets.losses import LOSSES, MARGIN_LOSSES, match_output, risk


def test_margin_losses_at_known_margins():
    # margins z = y·f = (2, 0.5, −1): hinge (0, .5, 2), quadratic hinge ½(0, .25, 4), logistic log(1 + e^{−z}),
    # softhinge (β = 2) log(1 + e^{2(1−z)})/2; the risk is the mean over the three samples.
    f = torch.tensor([[2.0], [-0.5], [-1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    z = [2.0, 0.5, -1.0]
    expected = {
        "hinge": sum(max(0.0, 1 - v) for v in z) / 3,
        "quadratic_hinge": sum(0.5 * max(0.0, 1 - v) ** 2 for v in z) / 3,
        "logistic": sum(math.log1p(math.exp(-v)) for v in z) / 3,
        "softhinge": sum(math.log1p(math.exp(2 * (1 - v))) / 2 for v in z) / 3,
    }
    for loss, value in expected.items():
        assert risk(f, y, loss, beta=2.0).item() == pytest.approx(value, rel=1e-14)


def test_softhinge_has_no_cutoff_and_tends_to_the_hinge():
    # torch's softplus switches to x above 20; ours is exact: at β(1−z) = 30, log(1+e^30)/β − (1−z) = log1p(e^−30)/β.
    f, y = torch.tensor([[-2.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    assert risk(f, y, "softhinge", beta=10.0).item() - 3.0 == pytest.approx(math.log1p(math.exp(-30)) / 10, rel=1e-6)
    assert risk(f, y, "softhinge", beta=1e4).item() == pytest.approx(risk(f, y, "hinge").item(), rel=1e-12)


def test_one_vs_rest_for_several_outputs():
    # integer labels c with C = 3 outputs: targets +1 on output c, −1 elsewhere, losses summed over outputs.
    torch.manual_seed(0)
    f = torch.randn(5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0])
    y = match_output(f, labels, "logistic")
    assert torch.equal(y, 2.0 * torch.eye(3, dtype=torch.float64)[labels] - 1.0)
    by_hand = sum(math.log1p(math.exp(-float(y[i, k] * f[i, k]))) for i in range(5) for k in range(3)) / 5
    assert risk(f, y, "logistic").item() == pytest.approx(by_hand, rel=1e-13)


@pytest.mark.parametrize("loss", LOSSES)
def test_torch_losses_match_the_numpy_derivatives_of_kernels(loss):
    # nets.losses (autograd) and kernels.solve.flow (closed-form derivatives) implement the same risk:
    # equal values and ∂R/∂f = ∂ℓ/∂f / n, to float64 rounding (1e-12).
    torch.manual_seed(1)
    f = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    target = labels if loss == "cross_entropy" else match_output(f, labels, loss if loss != "mse" else "hinge")
    value = risk(f, target, loss, beta=2.5)
    value.backward()
    values, grad, _ = loss_derivatives(f.detach().numpy(), target.numpy(), loss, beta=2.5)
    assert value.item() == pytest.approx(values.sum() / 7, rel=1e-12)
    np.testing.assert_allclose(f.grad.numpy(), grad / 7, rtol=0, atol=1e-12)


@pytest.mark.parametrize("loss", MARGIN_LOSSES)
def test_each_margin_loss_is_divided_by_alpha_squared_under_lazy(loss):
    # One GD step of Lazy(net, α = 100) moves w by lr·∇R(h_α)/α²: compare with the hand-computed gradient.
    torch.manual_seed(0)
    X = torch.randn(10, 3, dtype=torch.float64)
    y = torch.where(X[:, 0] > 0, 1.0, -1.0).double()
    lazy = Lazy(MLP(3, [8], 1).double(), 100.0)
    for p in lazy.model.parameters():   # move off w₀ so that h_α ≠ 0 and every loss has a non-trivial gradient
        p.data.add_(0.003 * torch.randn_like(p))
    before = [p.detach().clone() for p in lazy.model.parameters()]
    grads = torch.autograd.grad(risk(lazy(X), y, loss, beta=2.0), list(lazy.model.parameters()))
    history = train(lazy, X, y, loss=loss, beta=2.0, lr=0.5, steps=1, quiet=True)
    assert history.loss_scale == pytest.approx(1e-4, rel=1e-15)
    for p, w, g in zip(lazy.model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), w - 0.5 * 1e-4 * g, rtol=0, atol=1e-14)


@pytest.mark.parametrize("loss", MARGIN_LOSSES)
def test_each_margin_loss_trains_normally_and_lazily(loss):
    # Linearly separable ±1 data: 200 GD steps reduce the training loss by at least half for the plain net and
    # for Lazy(net, 10) (whose loss starts at ℓ(0), e.g. log 2 for the logistic loss).
    torch.manual_seed(0)
    X = torch.randn(30, 3, dtype=torch.float64)
    y = torch.where(X[:, 0] - X[:, 1] > 0, 1.0, -1.0).double()
    for module in (MLP(3, [64], 1).double(), Lazy(MLP(3, [64], 1).double(), 10.0)):
        history = train(module, X, y, loss=loss, lr=1.0, steps=200, quiet=True)
        assert history.losses[-1] < 0.5 * history.losses[0]


def test_margin_losses_refuse_zero_one_labels_for_a_single_output():
    X, y = torch.randn(6, 2, dtype=torch.float64), torch.tensor([0.0, 1.0] * 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"labels -1 and \+1 for loss='hinge'"):
        train(nn.Linear(2, 1).double(), X, y, loss="hinge", steps=1, quiet=True)
    with pytest.raises(ValueError, match="integer class labels or ±1 labels"):
        train(nn.Linear(2, 1).double(), X, y + 0.5, loss="logistic", steps=1, quiet=True)


def test_logistic_flow_matches_a_trained_linearized_network():
    """The kernel predictor of the logistic loss vs `Linearized` trained by full-batch GD for the same time t.

    With the empirical NTK Θ of the network at w₀ the linearized net's outputs follow, exactly, the kernel GD
    f_{k+1} = f_k − lr·Θ∇ℓ(f_k)/n (checked first, to 1e-10: float64 rounding). GD is the Euler method of the
    flow df/dt = −Θ∇ℓ(f)/n, whose global error at fixed t is O(lr): here lr·λ_max(Θ)/n = 0.02 gives a
    difference below 2.5e-3 (measured 1.5e-3, relative to max|f|), and halving lr halves it (ratio 2 ± 0.2),
    so the gap is the discretisation error and nothing else. The integrator's own error (rtol 1e-10) is negligible.
    """
    from kernels import empirical_ntk
    torch.manual_seed(0)
    n, d = 20, 4
    X = torch.randn(n, d, dtype=torch.float64)
    X_test = torch.randn(6, d, dtype=torch.float64)
    y = torch.where(X[:, 0] + 0.5 * X[:, 1] > 0, 1.0, -1.0).double()
    net = MLP(d, [32], 1, activation="tanh").double()
    K = np.asarray(empirical_ntk(net, X), dtype=np.float64)
    K_test = np.asarray(empirical_ntk(net, X_test, X), dtype=np.float64)
    with torch.no_grad():
        f0, f0_test = net(X).numpy(), net(X_test).numpy()
    lam = np.linalg.eigvalsh(K)[-1]
    t = 3.0 * n / lam
    flow = kernel_gradient_flow(K, y.numpy(), t, loss="logistic", K_test=K_test, f0=f0, f0_test=f0_test)
    errors = []
    for factor in (0.02, 0.01):
        lr = factor * n / lam
        steps = int(round(t / lr))
        lin = Linearized(net)
        history = train(lin, X, y, loss="logistic", lr=lr, steps=steps, quiet=True)
        assert history.flow_time == pytest.approx(t, rel=1e-9)
        with torch.no_grad():
            out, out_test = lin(X).numpy(), lin(X_test).numpy()
        if factor == 0.02:   # the net is exactly kernel GD with Θ (validates Θ, f0 and the time convention)
            f = f0.copy()
            for _ in range(steps):
                f = f - lr * K @ loss_derivatives(f, y.numpy()[:, None], "logistic")[1] / n
            np.testing.assert_allclose(out, f, rtol=0, atol=1e-10)
        scale = np.abs(flow.train).max()
        errors.append(max(np.abs(out - flow.train).max(), np.abs(out_test - flow.test).max()) / scale)
    assert errors[0] < 2.5e-3
    assert errors[0] / errors[1] == pytest.approx(2.0, abs=0.2)
