"""nets.training: exact GD iterates, the 1/α² objective, Theorem 2.2 rates, schedules, seeding, checkpoints, errors."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from nets import DivergenceError, Lazy, Linearized, MLP, TwoLayer, train
from nets.diagnostics import function_distance, parameter_distance, unchanged_activation_fraction
from nets.training import random_crop_flip


def _data(n=12, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=gen), torch.randn(n, dtype=torch.float64, generator=gen)


def test_gd_iterates_of_a_linear_model_match_the_closed_form():
    # f(x) = w·x, loss (1/2n)‖Xw − y‖²: w ← w − lr·Xᵀ(Xw − y)/n, with momentum μ: v ← μv + g, w ← w − lr·v
    # (torch.optim.SGD's convention). Float64, 25 steps: agreement to 1e-12.
    X, y = _data()
    net = nn.Linear(3, 1, bias=False).double()
    w = net.weight.detach().numpy()[0].copy()
    history = train(net, X, y, lr=0.3, momentum=0.5, steps=25, quiet=True)
    Xn, yn, v = X.numpy(), y.numpy(), np.zeros(3)
    losses = []
    for _ in range(25):
        r = Xn @ w - yn
        losses.append(0.5 * r @ r / len(yn))
        v = 0.5 * v + Xn.T @ r / len(yn)
        w = w - 0.3 * v
    np.testing.assert_allclose(net.weight.detach().numpy()[0], w, rtol=1e-12)
    np.testing.assert_allclose(history.losses, losses, rtol=1e-12)
    assert history.steps == list(range(25)) and history.wall_time > 0 and history.accuracies == []


def test_lazy_objective_is_divided_by_alpha_squared():
    # One GD step on R(h_α)/α² moves w by −lr·(1/α²)·α·Jᵀ(h_α − y)/n = −(lr/α)·Jᵀ(h_α − y)/n; at init h_α = 0,
    # so the step is exactly 1/α times the step of plain GD on the centred model at α = 1. The step is read as
    # w₁ − w₀, which carries rounding eps·|w| ≈ 1e-15 (|w| ≲ 3); times α = 50: tolerance 2e-13.
    X, y = _data()
    steps = {}
    for alpha in (1.0, 50.0):
        torch.manual_seed(0)
        net = MLP(3, [8], 1, activation="tanh").double()
        w0 = [p.detach().clone() for p in net.parameters()]
        history = train(Lazy(net, alpha), X, y, lr=0.1, steps=1, quiet=True)
        assert history.loss_scale == pytest.approx(alpha ** -2, rel=1e-15)
        steps[alpha] = torch.cat([(p.detach() - q).flatten() for p, q in zip(net.parameters(), w0)])
    torch.testing.assert_close(steps[50.0] * 50.0, steps[1.0], rtol=0, atol=2e-13)
    lin = Linearized(Lazy(MLP(3, [8], 1).double(), 4.0))
    assert train(lin, X, y, lr=0.1, steps=1, quiet=True).loss_scale == 1 / 16
    assert train(lin, X, y, lr=0.1, steps=1, quiet=True, loss_scale=2.0).loss_scale == 2.0


def test_theorem_2_2_rates_on_a_two_layer_relu_network():
    """Chizat, Oyallon & Bach (2019), Theorem 2.2, at a fixed horizon T under gradient flow on R(h_α)/α²:
    sup_t ‖w_α(t) − w₀‖ = O(1/α), ‖w_α(T) − w̄_α(T)‖ = O(1/α²), ‖h_α(T) − h̄_α(T)‖ = O(1/α).

    Two-layer ReLU network (1/m)·Σ b_j relu(a_j·x), m = 40, τ = √m, centred by `Lazy`; full-batch GD with
    the same lr and steps for every α (the 1/α² objective makes h_α's speed independent of α, so the horizon
    T = lr·steps = 2 is the same for all). Float64 (at α = 1000 the parameter gap is ~1e-9).
    The theorem assumes Dh Lipschitz. A ReLU network is smooth (polynomial in w) while no unit changes sign on
    a training input, so we assert that no activation pattern changes, for every α: when one does (at α = 1 on
    other draws), the α = 1 point leaves the asymptotic line and the fitted h-slope moves by up to 0.5.
    Fitted log-log slopes must be within ±0.15 of −1, −2, −1 (on crossing-free draws they come within 0.05).
    """
    X, y = _data(n=5, d=3, seed=0)
    alphas = [1.0, 10.0, 100.0, 1000.0]
    sup_moves, param_gaps, function_gaps = [], [], []
    for alpha in alphas:
        torch.manual_seed(1)
        net = TwoLayer(3, 40, init_scale=math.sqrt(40)).double()
        lazy, lin = Lazy(net, alpha), Linearized(Lazy(net, alpha))
        w0 = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        sup = [0.0]

        def track(step, module, history):
            w = torch.cat([p.detach().flatten() for p in net.parameters()])
            sup[0] = max(sup[0], float((w - w0).norm()))

        train(lazy, X, y, lr=0.2, steps=10, callbacks=[track], quiet=True)
        train(lin, X, y, lr=0.2, steps=10, quiet=True)
        sup_moves.append(sup[0])
        param_gaps.append(parameter_distance(lazy, lin))
        function_gaps.append(function_distance(lazy, lin, X))
        assert unchanged_activation_fraction(lazy, X) == 1.0
    log_alpha = np.log(alphas)
    slopes = [np.polyfit(log_alpha, np.log(gaps), 1)[0] for gaps in (sup_moves, param_gaps, function_gaps)]
    np.testing.assert_allclose(slopes, [-1.0, -2.0, -1.0], atol=0.15)


def test_inverse_schedule_and_history():
    X, y = _data()
    history = train(nn.Linear(3, 1).double(), X, y, lr=0.2, steps=6, lr_schedule="inverse", lr_decay=0.5,
                    quiet=True)
    np.testing.assert_allclose(history.lrs, [0.2 / (1 + 0.5 * t) for t in range(6)], rtol=1e-15)


def _images(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 6, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _sgd_run(seed, **kwargs):
    X, y = _images()
    net = _cnn()
    history = train(net, X, y, loss="cross_entropy", optimizer="sgd", batch_size=5, epochs=3, lr=0.05,
                    momentum=0.9, augment=random_crop_flip(1), seed=seed, quiet=True, **kwargs)
    return net, history


def test_sgd_runs_are_deterministic_given_the_seed():
    net_a, hist_a = _sgd_run(seed=3)
    net_b, hist_b = _sgd_run(seed=3)
    net_c, _ = _sgd_run(seed=4)
    assert all(torch.equal(p, q) for p, q in zip(_params(net_a), _params(net_b)))
    assert hist_a.losses == hist_b.losses and len(hist_a.accuracies) == 12  # 3 epochs × ceil(16/5) batches
    assert not all(torch.equal(p, q) for p, q in zip(_params(net_a), _params(net_c)))


def test_resume_from_checkpoint_is_bit_for_bit(tmp_path):
    uninterrupted, hist_full = _sgd_run(seed=5, lr_schedule="inverse", lr_decay=0.1)
    path = tmp_path / "run.pt"

    def interrupt(step, module, history):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _sgd_run(seed=5, lr_schedule="inverse", lr_decay=0.1, checkpoint=str(path), checkpoint_every=3,
                 callbacks=[interrupt])
    assert torch.load(path, weights_only=True)["step"] == 6   # the last checkpoint before the interruption
    resumed, hist_resumed = _sgd_run(seed=5, lr_schedule="inverse", lr_decay=0.1, checkpoint=str(path),
                                     checkpoint_every=3)
    assert all(torch.equal(p, q) for p, q in zip(_params(uninterrupted), _params(resumed)))
    assert hist_resumed.losses == hist_full.losses and hist_resumed.steps == list(range(12))
    assert not (tmp_path / "run.pt.tmp").exists()
    with pytest.raises(ValueError, match="seed: saved 5 vs now 6"):
        _sgd_run(seed=6, lr_schedule="inverse", lr_decay=0.1, checkpoint=str(path))


def test_callback_can_stop_training():
    X, y = _data()
    history = train(nn.Linear(3, 1).double(), X, y, lr=0.1, steps=50, quiet=True,
                    callbacks=lambda step, module, history: step == 4)
    assert len(history.losses) == 4


def test_cross_entropy_fits_separable_data():
    X, _ = _data(n=40, d=2)
    y = (X[:, 0] > 0).long()
    torch.manual_seed(0)
    history = train(MLP(2, [32], 2).double(), X, y, loss="cross_entropy", lr=1.0, steps=200, quiet=True)
    assert history.accuracies[-1] == 1.0 and history.losses[-1] < history.losses[0]


def test_divergence_names_step_loss_and_hint():
    X, y = _data()
    torch.manual_seed(0)
    with pytest.raises(DivergenceError, match=r"step \d+: loss = (nan|inf).*lr=1e\+06.*alpha=10"):
        train(Lazy(MLP(3, [16], 1).double(), 10.0), X, y, lr=1e6, steps=50, quiet=True)


def test_random_crop_flip_without_padding_only_mirrors():
    batch = torch.randn(8, 3, 5, 5)
    out = random_crop_flip(0)(batch, torch.Generator().manual_seed(0))
    for image, result in zip(batch, out):
        assert torch.equal(result, image) or torch.equal(result, image.flip(-1))
    padded = random_crop_flip(2)(batch, torch.Generator().manual_seed(0))
    assert padded.shape == batch.shape and not torch.equal(padded, batch)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(loss="huber"), ValueError, "unknown loss 'huber'; valid: mse, cross_entropy, hinge"),
    (dict(optimizer="adam"), ValueError, "unknown optimizer 'adam'; valid: gd, sgd"),
    (dict(lr_schedule="cosine"), ValueError, "unknown lr_schedule 'cosine'; valid: constant, inverse, inverse_epoch, adaptive"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=math.nan), ValueError, "lr"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(steps=None), ValueError, "exactly one of epochs and steps"),
    (dict(epochs=2), ValueError, "exactly one of epochs and steps"),
    (dict(batch_size=4), ValueError, "full-batch"),
    (dict(optimizer="sgd"), ValueError, "batch_size"),
    (dict(optimizer="sgd", batch_size=13), ValueError, "batch_size"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(loss_scale=-1.0), ValueError, "loss_scale"),
    (dict(augment=3), TypeError, "augment"),
])
def test_bad_arguments(kwargs, error, message):
    X, y = _data()
    args = dict(steps=2, quiet=True)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        train(nn.Linear(3, 1).double(), X, y, **args)


def test_bad_data():
    X, y = _data()
    net = nn.Linear(3, 2).double()
    with pytest.raises(ValueError, match="same number of samples, got 12 and 11"):
        train(net, X, y[:11], steps=1, quiet=True)
    with pytest.raises(ValueError, match="X contains NaN"):
        train(net, X.clone().fill_(math.nan), y, steps=1, quiet=True)
    labels = torch.tensor([0, 1, 2] * 4)
    with pytest.raises(ValueError, match=r"labels in y must lie in \[0, 2\).*\[0, 2\]"):
        train(net, X, labels, loss="cross_entropy", steps=1, quiet=True)
    with pytest.raises(ValueError, match="integer class labels"):
        train(net, X, y, loss="cross_entropy", steps=1, quiet=True)
    with pytest.raises(ValueError, match="outputs have shape"):
        train(net, X, y, steps=1, quiet=True)
    with pytest.raises(ValueError, match="non-empty"):
        train(net, X[:0], y[:0], steps=1, quiet=True)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        train(lambda x: x, X, y, steps=1, quiet=True)


def test_mse_accepts_one_dimensional_outputs():
    # A module returning (N,) and one returning (N, 1) see the same loss (1/2n)‖f − y‖² (no broadcasting to N×N).
    X, y = _data()
    torch.manual_seed(0)
    column = nn.Linear(3, 1).double()
    flat = nn.Sequential(copy.deepcopy(column), nn.Flatten(0))
    a = train(column, X, y, lr=0.1, steps=3, quiet=True)
    b = train(flat, X, y, lr=0.1, steps=3, quiet=True)
    assert a.losses == b.losses


def test_checkpoint_every_zero_is_refused(tmp_path):
    # 0 is not "unset": it is an invalid interval and must be named in the error, not silently replaced.
    net = MLP(3, [4], 1).double()
    X, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="`checkpoint_every` must be an integer ≥ 1, got 0"):
        train(net, X, y, lr=0.1, steps=2, checkpoint=tmp_path / "ck.pt", checkpoint_every=0, quiet=True)


def test_training_module_and_train_function_have_distinct_names():
    """`import nets.training` gives the module and `nets.train` stays the function, whatever the import order."""
    import importlib

    import nets
    module = importlib.import_module("nets.training")
    assert callable(nets.train) and nets.train is module.train
    assert module.__name__ == "nets.training" and module.History is nets.History
