"""The authors' protocol as options of nets: Xavier-normal init with zero biases, the per-epoch schedule, and the
Gaussian two-layer student of their GDfor2NN."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from nets import VGG, ResNet, TwoLayer, train


@pytest.mark.parametrize("cls", [VGG, ResNet])
def test_xavier_init_has_the_xavier_std_and_zero_biases(cls):
    """init='xavier', gain g: every conv and the head drawn from N(0, g²·2/(fan_in + fan_out)) (fan = channels ×
    filter area), biases 0. The sample std of N draws has relative standard error 1/√(2N); layers with N ≥ 10⁴
    weights are checked to 5% (more than 7 standard errors at N = 10⁴)."""
    torch.manual_seed(0)
    gain = 1.5
    net = cls(width_factor=0.5, num_classes=10, init="xavier", gain=gain)
    checked = 0
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach()
            area = w[0, 0].numel() if w.ndim == 4 else 1
            expected = gain * math.sqrt(2.0 / ((w.shape[1] + w.shape[0]) * area))
            if w.numel() >= 10_000:
                assert float(w.std()) == pytest.approx(expected, rel=0.05)
                checked += 1
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0
    assert checked >= 5


def test_kaiming_stays_the_default():
    """The default init is Kaiming-normal on the convs (std √(2/fan_in), 18,432 draws: 5% is 10 standard
    errors), the head at PyTorch's default (its bias is not zero); bad names and gains are refused."""
    torch.manual_seed(1)
    kaiming = VGG(width_factor=0.5, num_classes=10)
    conv = kaiming.features[4]   # conv, (identity norm), ReLU, pool, then this 32 → 64 conv, 3 × 3
    assert conv.weight.shape == (64, 32, 3, 3)
    assert float(conv.weight.std()) == pytest.approx(math.sqrt(2.0 / (32 * 9)), rel=0.05)
    assert torch.count_nonzero(kaiming.classifier.bias) > 0
    with pytest.raises(ValueError, match="init"):
        VGG(width_factor=0.5, init="he")
    with pytest.raises(ValueError, match="gain"):
        ResNet(width_factor=0.5, init="xavier", gain=0.0)


def test_per_epoch_schedule_is_constant_within_each_epoch():
    """lr_schedule='inverse_epoch': η = η₀/(1 + β·e) in epoch e, the authors' η₀/(1 + epoch/3); 10 samples in
    batches of 4 are 3 steps per epoch."""
    torch.manual_seed(2)
    X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    history = train(nn.Linear(3, 1).double(), X, y, optimizer="sgd", batch_size=4, lr=0.3, epochs=4,
                    lr_schedule="inverse_epoch", lr_decay=1 / 3, momentum=0.9, quiet=True)
    expected = [0.3 / (1 + e / 3) for e in range(4) for _ in range(3)]
    np.testing.assert_allclose(history.lrs, expected, rtol=1e-15)


def test_gaussian_two_layer_student_is_the_authors():
    """init='gaussian', normalize=False, symmetric: a_j, b_j ~ N(0, τ²), b_j = |b_j| on the first half, the second
    half the same units with −b_j, so the output Σ_j b_j relu(a_j·x) (no 1/m) is 0 at init. The entries' std is
    τ: 25·(d + 1) = 275 draws give a relative standard error 1/√550 = 4%; checked to 15%."""
    torch.manual_seed(3)
    tau = 0.3
    net = TwoLayer(10, 50, init_scale=tau, symmetric=True, init="gaussian", normalize=False).double()
    assert torch.equal(net.a[:25], net.a[25:]) and torch.equal(net.b[:25], -net.b[25:])
    assert bool((net.b[:25] >= 0).all())
    drawn = torch.cat([net.a[:25].flatten(), net.b[:25]])
    assert float(drawn.square().mean().sqrt()) == pytest.approx(tau, rel=0.15)
    x = torch.randn(7, 10, dtype=torch.float64)
    assert net(x).abs().max() < 1e-15
    with torch.no_grad():
        net.b.copy_(torch.randn(50, dtype=torch.float64))
    expected = torch.relu(x @ net.a.T) @ net.b
    torch.testing.assert_close(net(x)[:, 0], expected, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="init"):
        TwoLayer(3, 4, init="uniform")


def test_estimators_take_their_step_from_the_kernel():
    """lr='kernel': lr_factor times 2n/λ_max for full-batch GD on ½‖f − y‖² (momentum 0, curvature 1), with
    λ_max of the network's NTK at init on the standardised inputs; recorded in step_."""
    from nets import LazyNetRegressor
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    model = LazyNetRegressor(scale=10.0, width=32, lr="kernel", lr_factor=0.4, epochs=20, random_state=0).fit(X, y)
    step = model.step_
    assert step.ratio == pytest.approx(0.4, rel=1e-12) and step.limit == pytest.approx(2 * 40 / step.lambda_max)
    assert model.history_.lrs[0] == step.lr and model.history_.losses[-1] < model.history_.losses[0]
    with pytest.raises(ValueError, match="lr"):
        LazyNetRegressor(lr="fast", epochs=1).fit(X, y)
