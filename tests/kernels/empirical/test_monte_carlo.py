"""kernels.monte_carlo_kernel: seeded means and standard errors over inits, and the Monte Carlo test of
kernels.infinite_width — wide finite networks agree with their analytic kernels to the sampling error.

Tolerance of the agreement tests: |mean − analytic| ≤ 4·SE + max|K|/width, entry by entry, with SE the standard
error that monte_carlo_kernel reports. 4 SE: at most a few dozen entries are compared, so a correct kernel
fails with probability ≲ 1e-3. max|K|/width: the bias of a finite net's mean, O(1/width); measured for the
depth-2 ReLU MLP below at widths 16, 32, 64 with 2000-3000 inits, |bias|·width ≤ 0.5 of max|K| for both kernels
(within its own ±0.5-1.3 sampling error: the bias is not resolved), so the allowance of 1 is generous. A wrong
rule (a missing +b², a 'standard' fan-in off by a layer, a cross term in a residual sum) is off by ≥ 10%.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nets  # noqa: E402
from kernels import MonteCarloKernel, infinite_width, monte_carlo_kernel, stax  # noqa: E402


def _within(estimate, se, analytic, width) -> bool:
    return bool(np.all(np.abs(estimate - analytic) <= 4 * se + np.abs(analytic).max() / width))


def _agree(estimate, se, analytic, width, wrong):
    """The estimate agrees with the analytic kernel, and not with a kernel of a wrong rule (the test's power)."""
    scale = np.abs(analytic).max()
    assert _within(estimate, se, analytic, width), (
        f"max |Δ|/scale {np.abs(estimate - analytic).max() / scale:.3g}, max SE/scale {se.max() / scale:.3g}")
    assert not _within(estimate, se, wrong, width)


class PreActBlock(nn.Module):
    """x + conv2(relu(conv1(relu(x)))): the residual form with a closed-form kernel (its input is Gaussian)."""

    def __init__(self, c):
        super().__init__()
        self.relu1, self.conv1 = nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)
        self.relu2, self.conv2 = nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.relu2(self.conv1(self.relu1(x))))

    def stax_layer(self, read):
        branch = stax.serial(read("relu1"), read("conv1"), read("relu2"), read("conv2"))
        return stax.serial(stax.FanOut(2), stax.parallel(branch, stax.Identity()), stax.FanInSum())


class DownBlock(nn.Module):
    """conv2(relu(conv1_stride2(x))) + conv1x1_stride2(x): a downsampling residual block."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.relu = nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU()
        self.conv2, self.shortcut = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1, stride=2)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x))) + self.shortcut(x)

    def stax_layer(self, read):
        branch = stax.serial(read("conv1"), read("relu"), read("conv2"))
        return stax.serial(stax.FanOut(2), stax.parallel(branch, read("shortcut")), stax.FanInSum())


class NoSkipBlock(PreActBlock):
    """A wrong reading of PreActBlock: its kernel without the identity branch (K_f instead of K_f + K_x)."""

    def stax_layer(self, read):
        return stax.serial(read("relu1"), read("conv1"), read("relu2"), read("conv2"))


def residual_cnn(c, outputs=1, block=PreActBlock):
    """PyTorch's default init throughout ('standard' parameterization): conv, a residual block, an average pool,
    a downsampling residual block, ReLU, global average pool, linear."""
    return nn.Sequential(nn.Conv2d(2, c, 3, padding=1), block(c), nn.AvgPool2d(2), DownBlock(c), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, outputs)).double()


def mlp(width, outputs=1, w_std=2 ** 0.5):
    return nets.MLP(5, [width, width], d_out=outputs, activation="relu", w_std=w_std, b_std=0.1).double()


# ----------------------------------------------------------------------------------------------- agreement
def test_wide_mlp_agrees_with_its_infinite_width_kernel(rng):
    # NTK: one output (the empirical NTK costs a backward pass per output); NNGP: 256 outputs, forward passes
    # only, whose covariance averages 256 output units per init. Measured: |Δ| ≤ 0.05 of the scale, SE ≈ 0.03;
    # the kernel of weights 8% off (w_std 1.3 instead of √2) is 0.4 away.
    width, x = 256, rng.standard_normal((5, 5))
    nngp, ntk = infinite_width(mlp(width)).kernels(x)
    wrong = infinite_width(mlp(width, w_std=1.3)).kernels(x)
    est = monte_carlo_kernel(lambda: mlp(width), 32).estimate(x, get="ntk")
    _agree(est.ntk, est.ntk_stderr, ntk, width, wrong[1])
    est = monte_carlo_kernel(lambda: mlp(width, 256), 32).estimate(x, get="nngp")
    _agree(est.nngp, est.nngp_stderr, nngp, width, wrong[0])


def test_wide_residual_cnn_with_pooling_agrees_with_its_infinite_width_kernel(rng):
    # Every new rule at once: 'standard' convs at the module's widths (PyTorch's default init), a pre-activation
    # residual sum, a 2×2 average pool (pixel-pair variances: a ReLU follows), a stride-2 block with a 1×1
    # stride-2 shortcut, global average pooling. Measured: |Δ| ≤ 0.06 of the scale, SE ≈ 0.03, allowance
    # 4 SE + 1/48 ≈ 0.14; the kernel without the residual identity branch is 0.3 away.
    c, x = 48, rng.standard_normal((3, 2, 8, 8))
    nngp, ntk = infinite_width(residual_cnn(c)).kernels(x)
    wrong = infinite_width(residual_cnn(c, block=NoSkipBlock)).kernels(x)
    est = monte_carlo_kernel(lambda: residual_cnn(c), 16).estimate(x, get="ntk")
    _agree(est.ntk, est.ntk_stderr, ntk, c, wrong[1])
    est = monte_carlo_kernel(lambda: residual_cnn(c, 128), 24).estimate(x, get="nngp")
    _agree(est.nngp, est.nngp_stderr, nngp, c, wrong[0])


@pytest.mark.slow
def test_wider_residual_cnn_agrees_more_closely(rng):
    # measured: |Δ| ≤ 0.02 of the scale, SE ≈ 0.015-0.02
    c, x = 128, rng.standard_normal((4, 2, 8, 8))
    nngp, ntk = infinite_width(residual_cnn(c)).kernels(x)
    wrong = infinite_width(residual_cnn(c, block=NoSkipBlock)).kernels(x)
    est = monte_carlo_kernel(lambda: residual_cnn(c), 64).estimate(x, get="ntk")
    _agree(est.ntk, est.ntk_stderr, ntk, c, wrong[1])
    est = monte_carlo_kernel(lambda: residual_cnn(c, 256), 64).estimate(x, get="nngp")
    _agree(est.nngp, est.nngp_stderr, nngp, c, wrong[0])


# ----------------------------------------------------------------------------------------------- the estimator
def test_estimates_are_seeded_means_with_standard_errors(rng):
    x = rng.standard_normal((3, 5))
    mc = monte_carlo_kernel(lambda: mlp(16, 4), 5, seed=7)
    e = mc.estimate(x)
    again = monte_carlo_kernel(lambda: mlp(16, 4), 5, seed=7).estimate(x)
    np.testing.assert_array_equal(e.ntk, again.ntk)                      # seeded: reproducible
    assert not np.array_equal(e.ntk, monte_carlo_kernel(lambda: mlp(16, 4), 5, seed=8).estimate(x).ntk)
    # the mean and the standard error of the per-init kernels, computed here from the seeded modules themselves
    from kernels import empirical_ntk
    samples = np.stack([empirical_ntk(mc.module(s), x) for s in range(5)])
    np.testing.assert_allclose(e.ntk, samples.mean(0), rtol=1e-12)
    np.testing.assert_allclose(e.ntk_stderr, samples.std(0, ddof=1) / math.sqrt(5), rtol=1e-10, atol=1e-14)
    outs = []
    for s in range(5):
        with torch.no_grad():
            f = mc.module(s).eval()(torch.as_tensor(x)).numpy()
        outs.append(f @ f.T / 4)
    np.testing.assert_allclose(e.nngp, np.mean(outs, 0), rtol=1e-12)
    assert e.n_samples == 5 and np.array_equal(mc.ntk(x), e.ntk) and np.array_equal(mc(x, get="nngp"), e.nngp)
    assert isinstance(mc, MonteCarloKernel) and mc.estimate(x, get="nngp").ntk is None


def test_bad_arguments_are_named(rng):
    x = rng.standard_normal((3, 5))
    with pytest.raises(TypeError, match="module_fn must be a function returning a fresh torch.nn.Module"):
        monte_carlo_kernel(mlp(4), 4)
    with pytest.raises(ValueError, match="`n_samples` must be an integer ≥ 2"):
        monte_carlo_kernel(lambda: mlp(4), 1)
    with pytest.raises(TypeError, match="module_fn must return a torch.nn.Module, got int"):
        monte_carlo_kernel(lambda: 3, 2).estimate(x)
    with pytest.raises(ValueError, match="unknown get 'cov'; valid: nngp, ntk"):
        monte_carlo_kernel(lambda: mlp(4), 2).estimate(x, get="cov")
    with pytest.raises(ValueError, match=r"outputs \(n, O\) or \(n,\), got outputs of shape \(3, 2, 2\)"):
        monte_carlo_kernel(lambda: nn.Sequential(nn.Linear(5, 4), nn.Unflatten(1, (2, 2))).double(), 2).estimate(
            x, get="nngp")
