"""nets.train: stop rules and limits, the adaptive step, the Lazy frozen-output cache, and finding Lazy inside."""
import copy

import pytest
import torch
from torch import nn

from nets import MLP, Lazy, Linearized, train
from nets.losses import margins


def _separable(n=30, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64, generator=gen)
    return X, torch.where(X[:, 0] - X[:, 1] > 0, 1.0, -1.0).double()


def _net(seed=0, width=64):
    torch.manual_seed(seed)
    return MLP(3, [width], 1).double()


def test_stop_margin_stops_at_the_first_step_where_every_margin_exceeds_m():
    X, y = _separable()
    net = _net()
    history = train(net, X, y, loss="hinge", lr=1.0, steps=5000, stop="margin", margin=1.0, quiet=True)
    assert history.stop_reason == "margin" and 0 < len(history.steps) < 5000
    with torch.no_grad():
        assert bool((margins(net(X), y) > 1.0).all())
    # one step earlier the rule did not hold: the hinge loss before the last update was still positive
    assert history.losses[-1] > 0


def test_stop_loss_and_the_multi_class_margin_of_cross_entropy():
    X, y = _separable()
    net = _net()
    history = train(net, X, y, loss="mse", lr=0.5, steps=1000, stop="loss", loss_threshold=0.12, quiet=True)
    assert history.stop_reason == "loss" and history.losses[-1] >= 0.12
    with torch.no_grad():
        assert 0.5 * float(((net(X)[:, 0] - y) ** 2).mean()) < 0.12
    # cross-entropy: the margin is f_y − max_{k≠y} f_k
    torch.manual_seed(0)
    net = MLP(3, [64], 2).double()
    labels = (y > 0).long()
    history = train(net, X, labels, loss="cross_entropy", lr=1.0, steps=2000, stop="margin", margin=0.5, quiet=True)
    assert history.stop_reason == "margin"
    with torch.no_grad():
        out = net(X)
    assert bool((out.gather(1, labels[:, None]) - out.gather(1, 1 - labels[:, None]) > 0.5).all())


def test_sgd_checks_stop_rules_on_the_whole_training_set_after_each_epoch():
    X, y = _separable()
    net = _net()
    history = train(net, X, y, loss="logistic", optimizer="sgd", batch_size=10, lr=0.5, epochs=500, stop="loss",
                    loss_threshold=0.2, quiet=True)
    assert history.stop_reason == "loss" and len(history.steps) % 3 == 0   # 3 minibatches per epoch
    with torch.no_grad():
        assert float(torch.nn.functional.softplus(-y * net(X)[:, 0]).mean()) < 0.2


def test_limits_flow_time_max_time_steps_and_callbacks():
    X, y = _separable()
    # flow_time: steps of lr = 0.3 and a last step of 0.1 to land on t = 1 exactly
    history = train(_net(), X, y, lr=0.3, flow_time=1.0, quiet=True)
    assert history.stop_reason == "flow_time" and history.lrs == pytest.approx([0.3, 0.3, 0.3, 0.1], rel=1e-12)
    assert history.flow_time == pytest.approx(1.0, rel=1e-12)
    assert train(_net(), X, y, lr=0.1, steps=3, quiet=True).stop_reason == "steps"
    assert train(_net(), X, y, lr=0.1, max_time=1e-9, quiet=True).stop_reason == "max_time"
    history = train(_net(), X, y, lr=0.1, steps=9, callbacks=lambda step, m, h: step == 2, quiet=True)
    assert history.stop_reason == "callback" and len(history.steps) == 2
    with pytest.raises(ValueError, match="stop='loss' needs loss_threshold"):
        train(_net(), X, y, steps=2, stop="loss", quiet=True)
    with pytest.raises(ValueError, match="unknown stop 'gap'"):
        train(_net(), X, y, steps=2, stop="gap", quiet=True)
    with pytest.raises(ValueError, match="labels -1 and \\+1"):
        train(_net(), X, y * 2, steps=2, stop="margin", quiet=True)


def test_adaptive_step_reaches_the_small_step_gd_solution_in_fewer_steps():
    """Adaptive full-batch GD vs plain GD at a fixed small step, both until the training loss is below 1e-12, on an
    over-parameterized linear model f = Xw (20 samples, 40 features). Every GD iterate stays in w₀ + rowspace(X)
    whatever the step sizes, and there the interpolant is unique: the two runs end at the same w up to their
    residuals, ‖Δw‖ ≤ (‖r_a‖ + ‖r_b‖)/σ_min(X) with ‖r‖ < √(2n·1e-12) ≈ 6e-6 and σ_min(X) ≈ 1.5, so test
    predictions (‖x*‖ ≈ 6) agree to 1e-4."""
    gen = torch.Generator().manual_seed(0)
    X, X_test = (torch.randn(m, 40, dtype=torch.float64, generator=gen) for m in (20, 8))
    y = torch.randn(20, dtype=torch.float64, generator=gen)
    sigma_min = float(torch.linalg.svdvals(X / 20 ** 0.5)[-1])   # the GD Hessian is XᵀX/n
    lr = 0.5 / float(torch.linalg.svdvals(X / 20 ** 0.5)[0]) ** 2
    results = {}
    for schedule in ("constant", "adaptive"):
        torch.manual_seed(1)
        model = nn.Linear(40, 1, bias=False).double()
        history = train(model, X, y, lr=lr, lr_schedule=schedule, steps=50000, stop="loss", loss_threshold=1e-12,
                        quiet=True)
        assert history.stop_reason == "loss"
        with torch.no_grad():
            results[schedule] = (model(X_test), history)
    assert sigma_min > 0.2
    torch.testing.assert_close(results["adaptive"][0], results["constant"][0], rtol=0, atol=1e-4)
    plain, adaptive = results["constant"][1], results["adaptive"][1]
    assert len(adaptive.steps) < len(plain.steps) / 2
    assert max(adaptive.lrs) > lr and adaptive.rejected_steps > 0
    assert all(b <= a for a, b in zip(adaptive.losses, adaptive.losses[1:]))   # accepted steps never increase R


def test_adaptive_step_needs_full_batch_plain_gd():
    X, y = _separable()
    with pytest.raises(ValueError, match="adaptive.*optimizer='gd'"):
        train(_net(), X, y, optimizer="sgd", batch_size=5, lr_schedule="adaptive", steps=2, quiet=True)
    with pytest.raises(ValueError, match="adaptive.*momentum=0"):
        train(_net(), X, y, momentum=0.9, lr_schedule="adaptive", steps=2, quiet=True)


def test_lazy_cache_evaluates_the_frozen_network_once_and_is_exact():
    X, y = _separable()
    lazy = Lazy(_net(), 10.0)
    twin = copy.deepcopy(lazy)
    calls = []
    lazy.model_at_init.register_forward_hook(lambda *args: calls.append(1))
    cached = train(lazy, X, y, lr=0.5, steps=6, quiet=True)
    assert len(calls) == 1
    # an identity augmentation turns the cache off (inputs no longer fixed): the same losses, bit for bit
    plain = train(twin, X, y, lr=0.5, steps=6, augment=lambda batch, gen: batch.clone(), quiet=True)
    assert cached.losses == plain.losses


def test_lazy_cache_is_invalidated_when_the_inputs_or_the_frozen_network_change():
    X, _ = _separable()
    lazy = Lazy(_net(), 3.0)
    with torch.no_grad():
        for p in lazy.model.parameters():
            p.add_(0.01)
    fresh = lambda x: 3.0 * (lazy.model(x) - lazy.model_at_init(x))   # noqa: E731
    with torch.no_grad(), lazy.cache_initial(X):
        torch.testing.assert_close(lazy(X), fresh(X), rtol=0, atol=0)
        X.mul_(2.0)                                   # in place: the version counter moves
        torch.testing.assert_close(lazy(X), fresh(X), rtol=0, atol=0)
        other = X[:5].clone()                         # another tensor
        torch.testing.assert_close(lazy(other), fresh(other), rtol=0, atol=0)
        next(lazy.model_at_init.parameters()).add_(1.0)   # the frozen copy modified in place
        torch.testing.assert_close(lazy(X), fresh(X), rtol=0, atol=0)
    assert lazy._cache is None


def test_lazy_found_inside_containers_sets_the_loss_scale():
    X, y = _separable()
    history = train(nn.Sequential(Lazy(_net(), 100.0)), X, y, lr=0.1, steps=1, quiet=True)
    assert history.loss_scale == pytest.approx(1e-4, rel=1e-15)
    history = train(Linearized(nn.Sequential(Lazy(_net(), 10.0))), X, y, lr=0.1, steps=1, quiet=True)
    assert history.loss_scale == pytest.approx(1e-2, rel=1e-15)


def test_lazy_modules_with_different_scales_are_refused_unless_loss_scale_is_given():
    X, y = _separable()
    nested = Lazy(Lazy(_net(), 2.0), 3.0)
    with pytest.raises(ValueError, match=r"different scales \[2.0, 3.0\].*loss_scale"):
        train(nested, X, y, lr=0.1, steps=1, quiet=True)
    assert train(nested, X, y, lr=0.1, steps=1, loss_scale=1 / 36, quiet=True).loss_scale == pytest.approx(1 / 36)


def test_adaptive_step_lands_on_flow_time_and_never_goes_below_lr():
    # hinge (not smooth): steps that increase the loss are retried smaller, but never below lr; with flow_time the
    # accepted steps add up to t exactly.
    X, y = _separable()
    history = train(_net(), X, y, loss="hinge", lr=0.05, lr_schedule="adaptive", flow_time=20.0, quiet=True)
    assert history.stop_reason == "flow_time" and history.flow_time == pytest.approx(20.0, rel=1e-12)
    assert min(history.lrs[:-1]) >= 0.05 and max(history.lrs) > 0.05


def test_adaptive_run_resumes_from_a_checkpoint_bit_for_bit(tmp_path):
    # The adaptive step size is part of the checkpoint: 30 steps in two calls (stopped by a callback at 12,
    # then resumed) give the very same parameters and step sizes as 30 steps in one call.
    X, y = _separable()
    torch.manual_seed(0)
    one = nn.Linear(3, 1).double()
    two = copy.deepcopy(one)
    full = train(one, X, y, lr=0.05, lr_schedule="adaptive", steps=30, quiet=True)
    path = tmp_path / "ck.pt"
    first = train(two, X, y, lr=0.05, lr_schedule="adaptive", steps=30, checkpoint=path, quiet=True,
                  callbacks=lambda step, m, h: step == 12)
    assert first.stop_reason == "callback" and len(first.steps) == 12
    resumed = train(two, X, y, lr=0.05, lr_schedule="adaptive", steps=30, checkpoint=path, quiet=True)
    assert resumed.lrs == full.lrs and resumed.stop_reason == "steps"
    for a, b in zip(one.parameters(), two.parameters()):
        assert torch.equal(a, b)
