"""nets.models options: the new activations match kernels' quadrature functions by name, readout scales match
kernels.FullyConnected, and b_std = 0 creates no inert bias parameters."""
import math

import numpy as np
import pytest
import torch

from kernels import FullyConnected, empirical_ntk
from kernels.analytic.duals import _named_functions
from nets import MLP
from nets.diagnostics import relative_weight_change
from nets.lazy import Lazy
from nets.models import activation_module


@pytest.mark.parametrize("name", ["softplus", "gelu", "swish", "tanh"])
def test_activation_modules_are_the_kernels_functions_of_the_same_name(name):
    # the same function to float64 rounding, far into both tails (softplus without torch's cut-off at 20)
    x = torch.linspace(-40, 40, 801, dtype=torch.float64)
    expected = _named_functions()[name][0](x.numpy())
    np.testing.assert_allclose(activation_module(name)(x).numpy(), expected, rtol=1e-14, atol=1e-300)


def test_gelu_mlp_with_readout_scales_matches_the_analytic_nngp_monte_carlo():
    # One hidden gelu layer (b_std 0.2) and a readout with its own scales (w 0.7, b 0.3): given the hidden
    # layer the readout outputs are i.i.d. N(0, (0.7²/n)·Σ_i φ(u_i)φ(u_i') + 0.3²), whose mean is the NNGP.
    # 20 networks × 512 outputs = 10240 samples: standard error ≈ √(2/10240) = 1.4% of K(x,x), plus the hidden
    # layer's fluctuation (≈ 0.5%); tolerance 6% of the largest diagonal entry.
    x = np.random.default_rng(0).standard_normal((3, 6))
    torch.manual_seed(3)
    outs = []
    with torch.no_grad():
        for _ in range(20):
            net = MLP(6, [2048], 512, activation="gelu", b_std=0.2, readout_w_std=0.7, readout_b_std=0.3).double()
            outs.append(net(torch.as_tensor(x)).numpy())
    f = np.concatenate(outs, axis=1)
    kernel = FullyConnected(depth=1, activation="gelu", b_std=0.2, readout_w_std=0.7, readout_b_std=0.3)
    expected = np.asarray(kernel.nngp(x))
    np.testing.assert_allclose(f @ f.T / f.shape[1], expected, atol=0.06 * np.diag(expected).max())
    # the readout rule K ← w_r²·K_hidden + b_r², against the default readout (w = √2, b = 0.2): exact
    default = np.asarray(FullyConnected(depth=1, activation="gelu", b_std=0.2).nngp(x))
    np.testing.assert_allclose(expected, 0.7 ** 2 / 2 * (default - 0.2 ** 2) + 0.3 ** 2, rtol=1e-12)


def test_readout_scales_in_the_empirical_ntk_converge_to_the_analytic_ntk():
    # Width 2048, one hidden swish layer: the empirical NTK is within O(1/√width) ≈ 2% of the analytic one
    # (3 networks averaged); we allow 8% of the largest entry. The readout's scales enter Θ as
    # Θ ← K + w_r²·Θ (+ b_r²): an error in them would move Θ by ≫ 8%.
    x = np.random.default_rng(1).standard_normal((4, 5))
    torch.manual_seed(5)
    make = lambda: MLP(5, [2048], 1, activation="swish", b_std=0.1, readout_w_std=0.5, readout_b_std=1.0)  # noqa
    thetas = [np.asarray(empirical_ntk(make().double(), x)) for _ in range(3)]
    expected = np.asarray(FullyConnected(depth=1, activation="swish", b_std=0.1, readout_w_std=0.5,
                                         readout_b_std=1.0).ntk(x))
    np.testing.assert_allclose(np.mean(thetas, axis=0), expected, atol=0.08 * np.abs(expected).max())


def test_zero_b_std_creates_no_bias_parameters_in_the_ntk_parameterization():
    # MLP(bias=True, b_std=0) (the default): b_std·b is zero with zero gradient, so no parameter is created and
    # ‖w₀‖ counts weights only. In the standard parameterization a zero-initialised bias trains: it stays.
    net = MLP(4, [8, 8], 1).double()
    assert [name for name, _ in net.named_parameters() if "bias" in name] == []
    assert sum(p.numel() for p in net.parameters()) == 4 * 8 + 8 * 8 + 8
    standard = MLP(4, [8], 1, parameterization="standard")
    assert [name for name, _ in standard.named_parameters() if "bias" in name] == ["layers.0.bias", "layers.2.bias"]
    with_bias = MLP(4, [8], 1, b_std=0.1, readout_b_std=None)
    assert [name for name, _ in with_bias.named_parameters() if "bias" in name] == ["layers.0.bias"]
    lazy = Lazy(net, 1.0)
    with torch.no_grad():
        lazy.model.layers[0].weight.add_(1.0)
    w0 = math.sqrt(sum(float((p ** 2).sum()) for p in lazy.model_at_init.parameters()))
    assert relative_weight_change(lazy) == pytest.approx(math.sqrt(32) / w0, rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(activation="rellu"), "unknown activation .rellu.; valid: relu, erf, tanh, softplus, gelu, swish"),
    (dict(readout_w_std=-1.0), "readout_w_std"),
    (dict(readout_b_std="zero"), "readout_b_std"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(3, [4], 1, **kwargs)


def test_analytic_readout_options_are_validated_and_cloned():
    with pytest.raises(ValueError, match="readout_w_std"):
        FullyConnected(readout_w_std=0.0)
    with pytest.raises(ValueError, match="readout_b_std"):
        FullyConnected(readout_b_std=-1.0)
    kernel = FullyConnected(depth=1, readout_w_std=0.5, readout_b_std=None)
    assert kernel.get_params()["readout_w_std"] == 0.5
    assert kernel.set_params(readout_w_std=1.0)._readout == (1.0, None)
