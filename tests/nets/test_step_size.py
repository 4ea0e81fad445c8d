"""nets.step_size: λ_max of the empirical NTK by power iteration against the full eigendecomposition, the curvature
of the losses, and the heavy-ball stability limit checked by training on both sides of it."""
import numpy as np
import pytest
import torch
from torch import nn

from kernels import empirical_ntk
from nets import VGG, Lazy, kernel_step, loss_curvature, ntk_lambda_max, stability_limit, train


def _full_kernel(model, X):
    """Θ with its output blocks as an (n·O) × (n·O) matrix (kernels.empirical_ntk, output='full')."""
    K = np.asarray(empirical_ntk(model, X, output="full"))
    n, _, outputs, _ = K.shape
    return np.transpose(K, (0, 2, 1, 3)).reshape(n * outputs, n * outputs)


def _top_two(K):
    values = np.linalg.eigvalsh(K)
    return values[-1], values[-2]


def test_power_iteration_matches_the_full_eigendecomposition_of_an_mlp():
    """A float64 MLP with 3 outputs on 20 inputs: the 60 × 60 kernel's top eigenvalue. The Rayleigh quotient's
    error after k iterations is ~ (λ₂/λ₁)^(2k) of λ₁; the output blocks make the top modes nearly degenerate
    (measured λ₂/λ₁ = 0.964), so 3000 iterations (ratio^6000 ~ 1e-95); rtol=0 runs all of them. Allowed: 1e-10
    relative (float64 rounding of the products)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 3)).double()
    X = torch.randn(20, 5, dtype=torch.float64) + 0.5
    top, second = _top_two(_full_kernel(model, X))
    assert second / top < 0.97
    assert ntk_lambda_max(model, X, iters=3000, rtol=0.0) == pytest.approx(top, rel=1e-10)


def test_power_iteration_matches_the_full_kernel_of_a_small_vgg_and_ignores_frozen_copies():
    """VGG-11 at width 1/16 with 2 classes on 6 random images (12 × 12 kernel), float64: measured λ₂/λ₁ = 0.817,
    so 200 iterations leave an error ~ 0.817^400 ≈ 1e-35 of λ₁; allowed 1e-9 (rounding through 11 conv layers).
    A Lazy module's frozen copy has no trainable parameter, so its λ_max is its network's times α² (the NTK of
    α·(h − h₀) is α²·Θ_h)."""
    torch.manual_seed(1)
    net = VGG(11, width_factor=1 / 16, num_classes=2).double()
    X = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    top, second = _top_two(_full_kernel(net, X))
    assert second / top < 0.85
    assert ntk_lambda_max(net, X, iters=200, rtol=0.0) == pytest.approx(top, rel=1e-9)
    assert ntk_lambda_max(Lazy(net, 10.0), X, iters=200, rtol=0.0) == pytest.approx(100 * top, rel=1e-9)


def test_curvatures_are_the_sup_of_the_loss_hessians():
    """'mse' (½‖f − y‖²): Hessian I, top eigenvalue 1. Cross-entropy: diag(p) − ppᵀ, whose top eigenvalue is ½
    at two classes with p = ½ (logits (0, 0, −∞...)): computed here by autograd at logits (0, 0)."""
    logits = torch.zeros(2, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(
        lambda z: nn.functional.cross_entropy(z[None], torch.tensor([0])), logits)
    assert torch.linalg.eigvalsh(hessian)[-1].item() == pytest.approx(0.5, abs=1e-15)
    assert loss_curvature("cross_entropy") == 0.5 and loss_curvature("mse", loss_scale=0.2) == 0.2
    with pytest.raises(ValueError, match="loss"):
        loss_curvature("hinge")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_limit_separates_stable_from_divergent_heavy_ball_sgd(momentum):
    """A linear model f(x) = w·x on ½‖f − y‖²/B, one batch of B = 8: its Hessian XᵀX/B has the top eigenvalue
    λ_max(Θ)/B of the kernel Θ = XXᵀ, so heavy-ball GD is stable iff lr < 2(1 + β)·B/λ_max(Θ). Trained by
    nets.train at 0.95 and 1.05 times the limit for 400 steps: the top mode's amplitude changes per step by a
    factor near 1 at the limit, measured below 1e-3 of its start at 0.95 and above 1e3 at 1.05."""
    torch.manual_seed(2)
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.zeros(8, 1, dtype=torch.float64)
    limit = None
    losses = {}
    for factor in (0.95, 1.05):
        model = nn.Linear(3, 1, bias=False).double()
        nn.init.ones_(model.weight)
        if limit is None:
            limit = stability_limit(ntk_lambda_max(model, X, iters=100, rtol=0.0), 8, momentum, 1.0)
        history = train(model, X, y, loss="mse", optimizer="sgd", batch_size=8, lr=factor * limit,
                        momentum=momentum, steps=400, quiet=True)
        losses[factor] = history.losses[-1] / history.losses[0]
    assert losses[0.95] < 1e-3 and losses[1.05] > 1e3


def test_kernel_step_reports_the_ratio_to_the_limit_and_refuses_ambiguity():
    step = kernel_step(1000.0, 128, momentum=0.9, curvature=0.5, lr_factor=0.2)
    assert step.limit == pytest.approx(2 * 1.9 * 128 / (0.5 * 1000.0), rel=1e-15)
    assert step.ratio == pytest.approx(0.2) and not step.above_limit
    assert kernel_step(1000.0, 128, 0.9, 0.5, lr=2.0).above_limit
    assert set(step.as_row()) == {"lr_used", "lambda_max", "lr_limit", "lr_over_limit"}
    with pytest.raises(ValueError, match="exactly one of lr and lr_factor"):
        kernel_step(1000.0, 128, lr=0.1, lr_factor=0.5)
    with pytest.raises(ValueError, match="lambda_max"):
        stability_limit(0.0, 128)


def test_lambda_max_refuses_bad_input():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="non-empty"):
        ntk_lambda_max(model, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        ntk_lambda_max(model, torch.full((2, 3), float("nan")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ntk_lambda_max(model, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="requires grad"):
        ntk_lambda_max(model.requires_grad_(False), torch.ones(2, 3))
