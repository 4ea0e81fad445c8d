"""Shared test configuration: the `slow`, `gpu` and `data` markers, and array namespaces to run generic code under.

``@pytest.mark.data("cifar10", ...)`` marks a test that reads a data set which does not ship with a dependency;
it is skipped, with a reason that says how to get the data, when ``compare.data.find`` does not find it (so
``LAZYKIT_DATA_DIR=<an empty folder>`` hides every data set, as on a fresh machine: `.ci/run` does that)."""
import numpy as np
import pytest

from kernels import backend


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def missing_data_reason(names) -> str | None:
    """Why a test that needs the data sets ``names`` must skip here (None when all are found)."""
    from compare import data
    missing = [name for name in names if data.find(name) is None]
    if not missing:
        return None
    dirs = ", ".join(str(d) for d in data.search_dirs())
    how = "; ".join(f"`python -m compare data install {name}`" for name in missing)
    return (f"data: {', '.join(missing)} not found (searched {dirs}); get it with {how}, "
            f"or point {data.ENV_DATA_DIR} at a folder holding it")


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
        needs = [name for mark in item.iter_markers("data") for name in mark.args]
        reason = missing_data_reason(needs) if needs else None
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


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
