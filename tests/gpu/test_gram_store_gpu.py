"""GPU: kernels.gram with a CuPy kernel into a GramStore (zarr, bundled by gpu-check), and the stored solver on it.

float64 on the GPU against float64 on the CPU: the same arithmetic up to the CUDA math functions' few ulp, so
agreement to 1e-12 relative; the stored float32 solve against a float64 solve to κ·(tol + 10·eps64).
"""
import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
pytest.importorskip("zarr")

from kernels import FullyConnected, gram  # noqa: E402
from kernels.solve.stored import solve_stored  # noqa: E402


def test_gram_store_from_the_gpu_matches_the_cpu(tmp_path):
    x = np.random.default_rng(0).standard_normal((700, 30))
    cpu = gram(FullyConnected(depth=3), x, tile=256, progress=False)
    stored = gram(FullyConnected(depth=3, device="cuda"), x, tile=256, store=tmp_path / "k.zarr", progress=False)
    np.testing.assert_allclose(stored.to_numpy(), cpu, rtol=1e-12, atol=1e-12)


def test_float32_gpu_store_solves_to_float64_accuracy(tmp_path):
    x = np.random.default_rng(1).standard_normal((600, 30)).astype(np.float32)
    store = gram(FullyConnected(depth=3, device="cuda"), x, tile=256, store=tmp_path / "k.zarr", progress=False)
    assert store.dtype == np.float32
    y = np.random.default_rng(2).standard_normal((600, 2))
    A = store.to_numpy().astype(np.float64) + 1e-2 * np.eye(600)
    solution = solve_stored(store, y, 1e-2, tol=1e-10)
    reference = np.linalg.solve(A, y)
    error = np.abs(solution.coef - reference).max() / np.abs(reference).max()
    assert solution.converged and error <= np.linalg.cond(A) * (1e-10 + 10 * np.finfo(np.float64).eps)
