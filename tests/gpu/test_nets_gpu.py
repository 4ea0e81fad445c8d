"""nets on a CUDA GPU: Lazy, Linearized, train and the diagnostics agree with the CPU (float64); float32 with
torch's TF32 defaults within the ~1e-3 the README documents (measured and reported)."""
import copy
import warnings

import pytest
import torch

from nets import MLP, CNN, Lazy, Linearized, train
from nets.diagnostics import ntk_drift, scale_criterion, unchanged_activation_fraction

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch sees no CUDA device")


def _pair(make):
    torch.manual_seed(0)
    cpu = make().double()
    return cpu, copy.deepcopy(cpu).cuda()


def test_lazy_and_linearized_forward_match_cpu():
    # Same float64 weights and inputs: CPU and cuBLAS sum in different orders, so agreement to ~1e-12 relative.
    x = torch.randn(9, 5, dtype=torch.float64)
    cpu, gpu = _pair(lambda: MLP(5, [64, 64], 3))
    for wrap in (lambda m: Lazy(m, 10.0), lambda m: Linearized(Lazy(m, 10.0)), Linearized):
        a, b = wrap(cpu), wrap(gpu)
        with torch.no_grad():
            for p, q in zip([p for p in a.parameters() if p.requires_grad],
                            [q for q in b.parameters() if q.requires_grad]):
                p.add_(0.01)
                q.add_(0.01)
        torch.testing.assert_close(b(x.cuda()).cpu(), a(x).detach(), rtol=1e-10, atol=1e-12)


def test_training_on_gpu_matches_cpu():
    # 20 full-batch GD steps of a lazy CNN, float64: trajectories agree to 1e-9 (rounding differences of 1e-16
    # grow at most by the step map's Lipschitz constant per step, which is close to 1 at this learning rate).
    x, y = torch.randn(12, 2, 8, 8, dtype=torch.float64), torch.randn(12, 1, dtype=torch.float64)
    cpu, gpu = _pair(lambda: CNN(2, 16, 2))
    h_cpu = train(Lazy(cpu, 5.0), x, y, lr=0.5, steps=20, quiet=True)
    h_gpu = train(Lazy(gpu, 5.0), x.cuda(), y.cuda(), lr=0.5, steps=20, quiet=True)
    torch.testing.assert_close(torch.tensor(h_gpu.losses), torch.tensor(h_cpu.losses), rtol=1e-9, atol=1e-14)
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-9, atol=1e-12)


def test_diagnostics_on_gpu_match_cpu():
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    cpu, gpu = _pair(lambda: MLP(5, [32], 1, activation="relu"))
    lazy_cpu, lazy_gpu = Lazy(cpu, 2.0), Lazy(gpu, 2.0)
    train(lazy_cpu, x, y, lr=0.5, steps=10, quiet=True)
    train(lazy_gpu, x.cuda(), y.cuda(), lr=0.5, steps=10, quiet=True)
    assert ntk_drift(lazy_gpu, x.cuda()) == pytest.approx(ntk_drift(lazy_cpu, x), rel=1e-8)
    assert unchanged_activation_fraction(lazy_gpu, x.cuda()) == unchanged_activation_fraction(lazy_cpu, x)
    a, b = scale_criterion(cpu, x, y, iters=40), scale_criterion(gpu, x.cuda(), y.cuda(), iters=40)
    assert b.kappa == pytest.approx(a.kappa, rel=1e-8)


class MeasuredError(UserWarning):
    """A measured error reported in the test summary (gpu-check prints it), not a failure."""


def test_float32_cnn_forward_and_gradients_with_torchs_default_tf32():
    # cuDNN may use TF32 (unit roundoff 2^-11 ≈ 4.9e-4) for float32 convolutions by default: a CNN's outputs
    # and gradients against float64 on the CPU are measured, and checked against 1e-2 (20 TF32 roundoffs)
    torch.manual_seed(0)
    cpu = CNN(3, 16, 2).double()
    gpu = copy.deepcopy(cpu).float().cuda()
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    out_cpu, out_gpu = cpu(x), gpu(x.float().cuda())
    out_cpu.square().sum().backward()
    out_gpu.square().sum().backward()
    forward = float((out_gpu.double().cpu() - out_cpu).abs().max() / out_cpu.abs().max())
    grads = max(float((q.grad.double().cpu() - p.grad).abs().max() / p.grad.abs().max())
                for p, q in zip(cpu.parameters(), gpu.parameters()) if p.grad is not None)
    warnings.warn(MeasuredError(f"float32 CNN on CUDA with torch's TF32 defaults (cudnn.allow_tf32="
                                f"{torch.backends.cudnn.allow_tf32}): forward {forward:.1e}, gradients {grads:.1e} "
                                "max relative error against float64 on the CPU"))
    assert forward <= 1e-2 and grads <= 1e-2
