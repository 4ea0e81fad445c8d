"""GPU: kernels.gram with a CuPy kernel, in memory (no zarr needed; the stores are test_gram_store_gpu.py).

float64 on the GPU against float64 on the CPU: the same arithmetic up to the CUDA math functions' few ulp, so
agreement to 1e-12 relative.
"""
import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

from kernels import FullyConnected, gram  # noqa: E402


def test_gram_in_memory_on_the_gpu_matches_the_cpu():
    x = np.random.default_rng(0).standard_normal((700, 30))
    cpu = gram(FullyConnected(depth=3), x, tile=256, progress=False)
    on_gpu = gram(FullyConnected(depth=3, device="cuda"), cupy.asarray(x), tile=256, progress=False)
    assert isinstance(on_gpu, cupy.ndarray)                 # CuPy in, CuPy out
    np.testing.assert_allclose(cupy.asnumpy(on_gpu), cpu, rtol=1e-12, atol=1e-12)
