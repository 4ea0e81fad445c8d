"""GPU backend: "auto" picks CuPy, DLPack hand-offs between CUDA tensors and CuPy arrays are zero-copy."""
import numpy as np
import pytest

from kernels import backend, validation

cupy = pytest.importorskip("cupy")
torch = pytest.importorskip("torch")


def test_auto_picks_cuda_and_float32():
    assert backend.resolve_device("auto") == "cuda"
    assert backend.default_dtype("auto") == "float32"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_tensor_to_cupy_zero_copy(dtype):
    t = torch.randn(4, 3, dtype=dtype, device="cuda")
    a = backend.from_torch(t)
    assert isinstance(a, cupy.ndarray) and a.dtype == np.dtype(str(dtype).replace("torch.", ""))
    t[0, 0] = 5.0
    assert float(a[0, 0]) == 5.0
    back = backend.to_torch(a)
    assert back.device.type == "cuda" and back.data_ptr() == t.data_ptr()


def test_check_array_moves_between_devices():
    x = np.random.default_rng(0).standard_normal((3, 2))
    on_gpu = validation.check_array(x, "x", device="cuda")
    assert isinstance(on_gpu, cupy.ndarray)
    np.testing.assert_array_equal(backend.to_numpy(on_gpu), x)
    with pytest.raises(ValueError, match="x contains NaN"):
        validation.check_array(cupy.asarray([1.0, float("nan")]), "x")
