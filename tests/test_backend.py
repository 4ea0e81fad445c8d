"""kernels.backend: device choice, dtype policy, validation and DLPack hand-offs."""
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


def test_check_array_accepts_torch_and_converts(rng):
    t = torch.from_numpy(rng.standard_normal((5, 2)))
    a = backend.check_array(t, "X")
    assert isinstance(a, np.ndarray) and a.shape == (5, 2) and a.dtype == np.float64


@pytest.mark.parametrize("bad, exc, message", [
    ([[1.0, 2.0]], TypeError, "X must be an array"),
    (3.0, TypeError, "X must be an array"),
    ("abc", TypeError, "X must be an array"),
    (np.array([[1, 2]]), TypeError, "X must have a real floating dtype"),
    (np.array([[1 + 2j]]), TypeError, "X must have a real floating dtype"),
    (np.array([[True]]), TypeError, "X must have a real floating dtype"),
    (np.array([[np.nan, 1.0]]), ValueError, "X contains NaN or inf"),
    (np.array([[np.inf, 1.0]]), ValueError, "X contains NaN or inf"),
    (np.zeros((0, 3)), ValueError, "X is empty"),
])
def test_bad_input_names_the_argument(bad, exc, message):
    with pytest.raises(exc, match=message):
        backend.check_array(bad, "X")


def test_check_array_ndim_and_cast(rng):
    with pytest.raises(ValueError, match="X must be 2-dimensional"):
        backend.check_array(rng.standard_normal(3), "X", ndim=2)
    ints = np.arange(6).reshape(3, 2)
    out = backend.check_array(ints, "X", dtype="float32")
    assert out.dtype == np.float32 and np.array_equal(out, ints)


def test_generic_checks_run_under_the_array_api(xp):
    # check_finite / check_floating use only the standard API: the same code serves NumPy and CuPy.
    x = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    assert backend.check_finite(x, "x") is x
    assert backend.check_floating(x, "x") is x
    with pytest.raises(ValueError, match="x contains NaN"):
        backend.check_finite(xp.asarray([1.0, float("nan")]), "x")
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        backend.check_floating(xp.asarray([1, 2]), "x")
    assert backend.check_array(x, "x").shape == (2, 2)


def test_dtype_policy_as_the_readme_states(rng):
    """README "Devices and dtypes": kernel functions keep a float input's dtype (float32 in → float32 out),
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
