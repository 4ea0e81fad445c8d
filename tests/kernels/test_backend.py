"""kernels.backend: device choice, dtype policy and DLPack hand-offs."""
import numpy as np
import pytest
import torch

from kernels import backend


def test_auto_is_cpu_without_gpu():
    # This suite's default machine has no GPU; "auto" must then pick the CPU, and "cuda" must refuse.
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    assert backend.resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="device='cuda'"):
        backend.resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "CUDA:0", "", None, 0])
def test_unknown_device_names_the_argument(bad):
    with pytest.raises(ValueError, match="device must be one of"):
        backend.resolve_device(bad)


def test_dtype_policy():
    assert backend.default_dtype("cpu") == "float64"
    assert backend.resolve_dtype(None, "cpu") == "float64"
    assert backend.resolve_dtype(np.float32, "cpu") == "float32"
    assert backend.resolve_dtype(torch.float64, "cpu") == "float64"
    assert backend.resolve_dtype("float32", "cpu") == "float32"
    with pytest.raises(TypeError, match="dtype must be one of"):
        backend.resolve_dtype("int32", "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_to_numpy_is_zero_copy_and_keeps_dtype(dtype):
    t = torch.randn(4, 3, dtype=dtype)
    a = backend.from_torch(t)
    assert a.dtype == np.dtype(str(dtype).replace("torch.", ""))
    t[0, 0] = 123.0  # the view sees writes to the tensor: no copy was made
    assert a[0, 0] == 123.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_to_torch_is_zero_copy_and_keeps_dtype(dtype, rng):
    a = rng.standard_normal((3, 2)).astype(dtype)
    t = backend.to_torch(a)
    assert t.dtype == getattr(torch, np.dtype(dtype).name)
    a[1, 1] = -7.0
    assert float(t[1, 1]) == -7.0


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_thread_map_calls_every_item_and_raises(n_jobs):
    from kernels.backend import thread_map
    seen = []
    thread_map(seen.append, range(7), n_jobs)
    assert sorted(seen) == list(range(7))

    def fail(item):
        if item == 3:
            raise RuntimeError("item 3")
    with pytest.raises(RuntimeError, match="item 3"):
        thread_map(fail, range(5), n_jobs)


def test_dtype_policy_as_the_readme_states(rng):
    """docs/devices.md: kernel functions keep a float input's dtype (float32 in → float32 out),
    refuse integers unless dtype= asks for a cast; the estimators cast everything to float64 on the CPU."""
    from kernels import RBF, FullyConnected, KernelRegressor
    x = rng.standard_normal((6, 3))
    for kernel in (FullyConnected(depth=2).ntk, RBF()):
        assert kernel(x.astype(np.float32)).dtype == np.float32
        assert kernel(x).dtype == np.float64
        with pytest.raises(TypeError, match="x1 must have a real floating dtype .* pass dtype="):
            kernel(np.arange(18).reshape(6, 3))
    cast = FullyConnected(depth=2, dtype="float64")
    assert cast.ntk(x.astype(np.float32)).dtype == np.float64
    assert cast.ntk(np.arange(18).reshape(6, 3)).dtype == np.float64
    ints = np.arange(18).reshape(6, 3)
    model = KernelRegressor().fit(ints, x[:, 0])
    assert model.predict(ints).dtype == np.float64 and model.predict(x.astype(np.float32)).dtype == np.float64
