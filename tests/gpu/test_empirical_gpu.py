"""Empirical NTK on the GPU: a CUDA model returns a CuPy array in the model's dtype (zero-copy through DLPack)
equal to the CPU result.

Tolerance: in float64 both devices sum the same O(10²)-term products in different orders (cuBLAS vs MKL), so
they agree to ~1e-14 relative; 1e-10 leaves room while any missing term would be O(1). In float32 the same
argument gives ~1e-6; 1e-4 is used with TF32 switched off. With torch's defaults (cuDNN may use TF32 for
float32 convolutions: 10-bit mantissas, unit roundoff 2^-11 ≈ 4.9e-4) the README documents ~1e-3: that is
measured and reported (a MeasuredError warning in the test summary), and checked against 1e-2 (20 TF32 unit
roundoffs: the NTK sums products of two TF32-rounded Jacobians, each through a few layers).
"""
import warnings

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
torch = pytest.importorskip("torch")
nn = torch.nn

from kernels.empirical import empirical_ntk  # noqa: E402

METHODS = ["jacobian", "ntvp", "structured", "auto"]


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3))


def relative(a, b):
    a, b = cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else a, b
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cuda_model_returns_cupy_equal_to_cpu(method, dtype, rtol, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    net = cnn().to(dtype)
    x1 = torch.randn(5, 3, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(1))
    x2 = torch.randn(4, 3, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(2))
    expected = {out: empirical_ntk(net, x1, x2, output=out, method=method) for out in ("mean", "full")}
    net = net.cuda()
    for out in ("mean", "full"):
        got = empirical_ntk(net, x1.cuda(), x2.cuda(), output=out, method=method, block_size=3)
        assert isinstance(got, cupy.ndarray)
        assert got.dtype == np.dtype(str(dtype).replace("torch.", ""))
        assert relative(got, expected[out]) <= rtol


class MeasuredError(UserWarning):
    """A measured error reported in the test summary (gpu-check prints it), not a failure."""


def test_float32_with_torchs_default_tf32_is_within_what_the_readme_says():
    # TF32 left as torch sets it: what users get. The error against the float64 CPU kernel is measured.
    net = cnn()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    expected = empirical_ntk(cnn().double(), x.double())
    modes = (f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
             f"cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    errors = {}
    for method in METHODS:
        got = empirical_ntk(net.cuda(), x.cuda(), method=method)
        assert isinstance(got, cupy.ndarray) and got.dtype == np.float32
        errors[method] = relative(got, expected)
    warnings.warn(MeasuredError(f"float32 empirical NTK on CUDA with torch's TF32 defaults ({modes}): max relative "
                                f"error against float64 on the CPU " + ", ".join(f"{m} {e:.1e}" for m, e in
                                                                                errors.items())))
    assert max(errors.values()) <= 1e-2, errors


def test_a_torch_stream_around_empirical_ntk():
    # the Jacobian work is queued on a side stream; the DLPack hand-off to CuPy must wait for it (CuPy passes its
    # stream to __dlpack__), so the result equals the CPU's as on the default stream (float64: 1e-10)
    net = cnn().double().cuda()
    x = torch.randn(64, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    expected = empirical_ntk(cnn().double(), x)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = empirical_ntk(net, x.cuda(), method="structured")
        got_jacobian = empirical_ntk(net, x.cuda(), method="jacobian")
    cupy.cuda.Device().synchronize()
    assert relative(got, expected) <= 1e-10 and relative(got_jacobian, expected) <= 1e-10


def test_numpy_and_cupy_inputs_move_to_the_model_device():
    net = cnn().double().cuda()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    from_numpy = empirical_ntk(net, x)
    from_cupy = empirical_ntk(net, cupy.asarray(x))
    assert relative(from_numpy, cupy.asnumpy(from_cupy)) <= 1e-12


def test_cpu_tensor_with_cuda_model_is_an_error():
    net = cnn().cuda()
    with pytest.raises(ValueError, match="x1 is on device cpu but the model's parameters are on cuda"):
        empirical_ntk(net, torch.randn(2, 3, 8, 8))
