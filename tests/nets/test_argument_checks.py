"""nets refuses what would hang, silently mislead or fail late, in words that name the argument (issue #24)."""
import errno
import math

import numpy as np
import pytest
import torch

import nets
from nets import diagnostics
from nets.training_checks import MAX_FLOW_STEPS, check_options, flow_time_after


def _data(n=6, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=gen), torch.randn(n, dtype=torch.float64, generator=gen)


def _net(d=3):
    torch.manual_seed(0)
    return nets.MLP(d, [4]).double()


# ----------------------------------------------------------------------------------------------- hangs
def test_an_unreachable_inverse_flow_time_is_refused_with_the_reachable_time():
    # Σ_{t<N} lr/(1 + d·t) = (lr/d)·(ψ(N + 1/d) − ψ(1/d)), ψ(0.1) = −10.42: with lr = 0.1, d = 10, t = 0.5 needs
    # ψ(N) = 50 − 10.42, N ≈ e^39.6, and 10⁷ steps reach 0.01·(16.12 + 10.42) = 0.265. This looped for ever
    X, y = _data()
    with pytest.raises(ValueError, match=r"flow_time=0\.5 cannot be reached: .*lr/\(1 \+ lr_decay·t\).*about "
                                         r"e\^39\.6 .*reach only t = 0\.265"):
        nets.train(_net(), X, y, lr=0.1, lr_decay=10.0, lr_schedule="inverse", flow_time=0.5, quiet=True)


def test_a_tiny_constant_step_that_cannot_reach_flow_time_is_refused():
    X, y = _data()
    with pytest.raises(ValueError, match=r"flow_time=1 cannot be reached: .* needs 1e\+09 steps"):
        nets.train(_net(), X, y, lr=1e-9, flow_time=1.0, quiet=True)


def test_a_bounded_run_may_aim_beyond_its_reach():
    # steps=, epochs= or max_time= bound the run: flow_time is then only a limit among others
    X, y = _data()
    history = nets.train(_net(), X, y, lr=0.1, lr_decay=10.0, lr_schedule="inverse", flow_time=0.5, steps=5,
                         quiet=True)
    assert history.stop_reason == "steps"


def test_flow_time_after_is_the_exact_sum():
    # (lr/d)·(ψ(N + 1/d) − ψ(1/d)) = Σ_{t<N} lr/(1 + d·t), to rounding
    opts = check_options(loss="mse", beta=1.0, optimizer="gd", lr=0.3, momentum=0.0, lr_schedule="inverse",
                         lr_decay=0.7, lr_growth=1.1, lr_shrink=0.5, weight_decay=0.0, stop=None, margin=1.0,
                         loss_threshold=None, flow_time=None, max_time=None, seed=0, batch_size=None, augment=None,
                         epochs=None, steps=5)
    for n in (1, 7, 1000):
        assert flow_time_after(opts, n) == pytest.approx(sum(0.3 / (1 + 0.7 * t) for t in range(n)), rel=1e-13)
    assert flow_time_after(opts, MAX_FLOW_STEPS) == pytest.approx(0.3 / 0.7 * (math.log(0.7 * 1e7) + 0.5772), rel=0.02)


# ----------------------------------------------------------------------------------------------- paths
def test_an_unwritable_checkpoint_is_refused_before_training(tmp_path):
    # torch.save used to fail after all the training, with "Parent directory ... does not exist"
    X, y = _data()
    calls = []
    with pytest.raises(ValueError, match=r"`checkpoint` '/missing/dir/ck\.pt': its folder '/missing/dir' does not "
                                         "exist"):
        nets.train(_net(), X, y, steps=3, checkpoint="/missing/dir/ck.pt", callbacks=lambda *a: calls.append(1),
                   quiet=True)
    assert calls == []
    with pytest.raises(ValueError, match=r"`checkpoint` .* is a folder"):
        nets.train(_net(), X, y, steps=3, checkpoint=tmp_path, quiet=True)


def test_a_full_disk_while_checkpointing_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    X, y = _data()
    path = tmp_path / "ck.pt"
    nets.train(_net(), X, y, steps=2, checkpoint=path, quiet=True)
    saved = path.read_bytes()
    real_save = torch.save

    def full(obj, target, *args, **kwargs):
        real_save(obj, target, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ValueError, match=r"could not write the checkpoint .*ck\.pt' at step 3 \(\[Errno 28\] No space "
                                         r"left on device\); the previous checkpoint, if any, is intact") as info:
        nets.train(_net(), X, y, steps=4, checkpoint=path, checkpoint_every=1, quiet=True)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == saved and not (tmp_path / "ck.pt.tmp").exists()


# ----------------------------------------------------------------------------------------------- unclear errors
def test_the_wrong_feature_count_names_X():
    # was torch's "mat1 and mat2 shapes cannot be multiplied (4x5 and 3x4)"
    with pytest.raises(ValueError, match=r"^X of shape \(4, 5\) does not fit the module \(MLP\): mat1 and mat2"):
        nets.train(_net(), torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), steps=1,
                   quiet=True)


def test_huge_inputs_do_not_blame_the_learning_rate():
    # the loss is inf before any update: no lr is too large; was "The learning rate lr=0.1 is probably too large"
    X, y = _data()
    with pytest.raises(ValueError, match=r"the training loss is inf before any update: .*max \|X\| = \d\.\d+e\+300"
                       ) as info:
        nets.train(_net(), X * 1e300, y, steps=2, quiet=True)
    assert "lr" not in str(info.value)
    with pytest.raises(nets.DivergenceError, match="lr=1e\\+06 is probably too large"):   # a real divergence
        nets.train(_net(), X, y, lr=1e6, steps=50, quiet=True)


def test_margin_stop_with_the_squared_loss_names_stop_not_the_hinge():
    X, y = _data()
    with pytest.raises(ValueError, match=r"^stop='margin' with loss='mse' needs y to hold labels -1 and \+1") as info:
        nets.train(_net(), X, y, steps=2, stop="margin", quiet=True)
    assert "hinge" not in str(info.value)


@pytest.mark.parametrize("steps, match", [
    ("12", r"`steps` must be a step number >= 1 or a list of them .*str '12'"),
    (True, r"`steps` must be a step number >= 1 or a list of them .*bool True"),
    ([1.5], r"`steps\[0\]` must be an integer ≥ 1, got 1\.5"),
    ([2, True], r"`steps\[1\]` must be an integer ≥ 1, got True"),
    ([], r"`steps` must list at least one step"),
])
def test_kernel_tracker_steps(steps, match):
    # "12" was iterated as the steps 1 and 2, [1.5] recorded step 1, True raised "'bool' object is not iterable"
    X, _ = _data()
    with pytest.raises((TypeError, ValueError), match=match):
        nets.KernelTracker(_net(), X, steps=steps)
    assert nets.KernelTracker(_net(), X, steps=np.array([3, 1, 3])).record_at == {1, 3}


def test_after_training_regression_names_ridge():
    X, y = _data()
    with pytest.raises(ValueError, match=r"^`ridge` must be a finite number ≥ 0, got -1"):
        nets.after_training_kernel_regression(_net(), X, y, X[:2], ridge=-1)


def test_lazy_net_on_a_missing_cuda_names_device():
    X, y = _data()
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device='cuda' was requested but this torch build sees no CUDA GPU"):
        nets.LazyNetRegressor(device="cuda", epochs=1).fit(X.numpy(), y.numpy())


# ----------------------------------------------------------------------------------------------- accepted invalid
@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_two_layer_flags_must_be_booleans(flag):
    with pytest.raises(TypeError, match=r"`symmetric` must be True or False"):
        nets.TwoLayer(2, 4, symmetric=flag)
    with pytest.raises(TypeError, match=r"`bias` must be True or False"):
        nets.TwoLayer(2, 4, bias=flag)


@pytest.mark.parametrize("readout, size, match", [
    ("gap", -1, r"`image_size` must be None or \(H, W\)"),
    ("flatten", 4, r"`image_size` must be None or \(H, W\), two positive integers, got int 4"),
    ("flatten", (4, -4), r"`image_size\[1\]` must be an integer ≥ 1, got -4"),
    ("gap", "32", r"`image_size` must be None or \(H, W\)"),
    ("flatten", None, r"readout='flatten' needs image_size=\(H, W\)"),
])
def test_cnn_image_size(readout, size, match):
    # image_size=-1 was accepted (and ignored by 'gap'); image_size=4 failed with "'int' has no len()"
    with pytest.raises((TypeError, ValueError), match=match):
        nets.CNN(1, readout=readout, image_size=size)
    assert nets.CNN(1, channels=2, readout="flatten", image_size=[4, 4])(torch.ones(1, 1, 4, 4)).shape == (1, 1)


# ----------------------------------------------------------------------------------------------- silent results
def test_lazy_net_regressor_standardises_huge_targets_exactly():
    # y·1e200: its squares overflowed the standard deviation (inf) and every prediction was NaN. Standardising
    # a / 2^e is exact, so the fit on y·1e200 predicts 1e200 times the fit on y (to rounding)
    X, y = (a.numpy() for a in _data())
    small = nets.LazyNetRegressor(width=8, epochs=5, random_state=0).fit(X, y).predict(X)
    huge = nets.LazyNetRegressor(width=8, epochs=5, random_state=0).fit(X, y * 1e200).predict(X)
    np.testing.assert_allclose(huge / 1e200, small, rtol=1e-12)
    big_x = nets.LazyNetRegressor(width=8, epochs=5, random_state=0).fit(X * 1e300, y).predict(X * 1e300)
    np.testing.assert_allclose(big_x, small, rtol=1e-12)


def test_diagnostics_on_huge_inputs_are_finite_or_named():
    X, _ = _data()
    f, g = _net(), _net()
    # outputs of 1e200-scale inputs are finite but their squares are not: the RMS distance is still finite
    torch.manual_seed(1)
    g = nets.MLP(3, [4]).double()
    value = diagnostics.function_distance(f, g, X * 1e200)
    assert math.isfinite(value) and value == pytest.approx(diagnostics.function_distance(f, g, X) * 1e200, rel=1e-12)
    with pytest.raises(ValueError, match=r"X is too large for the module's float32"):
        diagnostics.function_distance(nets.MLP(3, [4]), nets.MLP(3, [4]), X * 1e300)
    lazy = nets.Lazy(_net(), 10.0)
    with pytest.raises(ValueError, match=r"probe"):
        diagnostics.ntk_drift(lazy, X * 1e300)
