"""GPU: kernels with frozen layers (``trained_layers``) on CuPy run the rule chain and equal the CPU's.

float64 on both sides: agreement to rounding (1e-12 of the kernel's scale); the all-trained kernels, which
take the fused CUDA kernels, are compared as well so that the fallback is seen to change nothing else.
"""
import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

from kernels import Convolutional, FullyConnected  # noqa: E402


@pytest.mark.parametrize("trained", [None, [2, 3], [1]])
@pytest.mark.parametrize("make, shape", [
    (lambda t: FullyConnected(2, "relu", 1.3, 0.2, trained_layers=t), (9, 5)),
    (lambda t: Convolutional(2, "relu", 1.3, 0.2, readout="gap", trained_layers=t), (4, 2, 5, 5)),
    (lambda t: Convolutional(2, "erf", 1.3, 0.2, readout="flatten", parameterization="standard", width=8,
                             trained_layers=t), (4, 2, 5, 5)),
])
def test_frozen_layers_gpu_equals_cpu(make, shape, trained):
    x = np.random.default_rng(0).standard_normal(shape)
    kernel = make(trained)
    for got, want in zip(kernel.kernels(cupy.asarray(x)), kernel.kernels(x)):
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
