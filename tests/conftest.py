"""Shared test configuration: the `slow` and `gpu` markers, and array namespaces to run generic code under."""
import numpy as np
import pytest

from kernels import backend


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow")
    has_gpu = backend.gpu_available()
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    skip_gpu = pytest.mark.skip(reason="gpu: CuPy is not installed or sees no GPU")
    for item in items:
        if "/tests/gpu/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
        if item.get_closest_marker("slow") and not run_slow:
            item.add_marker(skip_slow)
        if item.get_closest_marker("gpu") and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator (tests draw random inputs, never zeros)."""
    return np.random.default_rng(0)


@pytest.fixture(params=["numpy", "array_api_strict"])
def xp(request):
    """Run backend-generic code under NumPy and under array-api-strict (the standard API CuPy supports)."""
    if request.param == "numpy":
        import array_api_compat.numpy as xp_numpy
        return xp_numpy
    return pytest.importorskip("array_api_strict")
