"""nets.trained_kernel: effective rank, the kernel tracker through training, after-training kernel machines."""
import copy

import numpy as np
import pytest
import torch

from kernels import empirical_ntk
from nets import MLP, Lazy, Linearized, train
from nets.trained_kernel import KernelTracker, after_training_kernel_regression, effective_rank, trained_kernel


def _data(n=16, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64, generator=gen)
    return X, torch.sin(2 * X[:, :1]) + X[:, 1:2] ** 2


def test_effective_rank_of_known_spectra():
    # exp(H): n for the identity, 1 for rank one, 2^{...}: eigenvalues (1, 1, 2) give p = (¼, ¼, ½), H = 1.5 log 2
    assert effective_rank(np.eye(5)) == pytest.approx(5.0, rel=1e-12)
    v = np.arange(1.0, 5.0)
    assert effective_rank(np.outer(v, v)) == pytest.approx(1.0, rel=1e-9)
    assert effective_rank(np.diag([1.0, 1.0, 2.0])) == pytest.approx(2 ** 1.5, rel=1e-12)


def test_tracker_records_the_kernel_change_which_shrinks_with_alpha():
    # Same w₀, same time horizon: the kernel of a lazily trained net moves ~1/α as much (Chizat et al. 2019,
    # Theorem 2.2: ‖w − w₀‖ = O(1/α), and Θ is smooth in w). α = 1 vs α = 10: the change drops by ≥ 5×.
    X, y = _data()
    changes = {}
    for alpha in (1.0, 10.0):
        torch.manual_seed(0)
        lazy = Lazy(MLP(3, [128], 1, activation="tanh").double(), alpha)
        tracker = KernelTracker(lazy, X[:8], steps=[50, 100])
        history = train(lazy, X, y, lr=0.5, steps=100, callbacks=tracker, quiet=True)
        assert tracker.steps == [0, 50, 100] and history.stop_reason == "steps"
        assert tracker.changes[0] == 0.0 and 0 < tracker.changes[1] < tracker.changes[2]
        initial = copy.deepcopy(lazy.model_at_init).requires_grad_(True)   # the frozen copy of w₀
        np.testing.assert_allclose(tracker.kernels[0], empirical_ntk(initial, X[:8]), rtol=1e-12)
        changes[alpha] = tracker.changes[-1]
    assert changes[10.0] < changes[1.0] / 5
    assert 1.0 <= tracker.effective_ranks[-1] <= 8.0


def test_linearized_kernel_never_moves():
    X, y = _data()
    torch.manual_seed(0)
    lin = Linearized(MLP(3, [32], 1).double())
    tracker = KernelTracker(lin, X[:6], steps=20)
    train(lin, X, y, lr=0.5, steps=20, callbacks=tracker, quiet=True)
    assert tracker.changes == [0.0, 0.0]


def test_after_training_kernel_regression_interpolates_and_last_layer_is_the_feature_kernel():
    # Ridgeless KRR interpolates the training targets (to the Gram matrix's rounding, 1e-7). The last-layer
    # kernel of MLP (ntk parameterization, no readout bias) is (w²/width)·φ(x)·φ(x'), φ the hidden features.
    X, y = _data()
    X_test = torch.randn(5, 3, dtype=torch.float64)
    torch.manual_seed(0)
    net = MLP(3, [64], 1).double()
    train(net, X, y, lr=0.5, steps=50, quiet=True)
    for layers in ("all", "last"):
        fit, pred = after_training_kernel_regression(net, X, y, X_test, layers=layers)
        np.testing.assert_allclose(fit, y.numpy(), atol=1e-7)
        assert pred.shape == (5, 1)
    with torch.no_grad():
        phi = net.layers[:2](X)
    np.testing.assert_allclose(trained_kernel(net, X, layers="last"), 2.0 / 64 * (phi @ phi.T).numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="unknown layers 'first'"):
        trained_kernel(net, X, layers="first")
    with pytest.raises(ValueError, match=r"`steps\[0\]` must be an integer ≥ 1, got 0"):
        KernelTracker(net, X, steps=[0])
