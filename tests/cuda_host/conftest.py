"""Fixtures for the CUDA-on-the-CPU tests (marker ``cuda_host``; the method is in host_cuda.py's docstring).

They need g++ and CuPy (its ElementwiseKernel source generator and NVRTC bindings) plus NVRTC and the CUDA
runtime headers: the ``cuda-host`` extra. Without them they skip, saying what is missing; with
LAZYKIT_REQUIRE_CUDA_HOST=1 (set by .ci/run) they fail instead, so CI cannot pass without running them.
"""
import importlib.util
import os
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("lazykit_host_cuda", Path(__file__).with_name("host_cuda.py"))
host_cuda = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(host_cuda)


def _unavailable(why: str):
    if os.environ.get("LAZYKIT_REQUIRE_CUDA_HOST") == "1":
        pytest.fail(f"LAZYKIT_REQUIRE_CUDA_HOST=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return host_cuda.temp_dir(tmp_path_factory)


@pytest.fixture
def host(build_dir, monkeypatch):
    """A HostCuPy stand-in installed as ``kernels.analytic._cuda.cupy``, and ``kernels.analytic.networks`` told to use
    the CUDA chains for NumPy tiles (n_jobs=1 in the tests: the host launch is serial and not thread-safe)."""
    why = host_cuda.missing()
    if why:
        _unavailable(why)
    from kernels.analytic import _cuda as _analytic_cuda
    from kernels.analytic import _numerics
    stand_in = host_cuda.HostCuPy(build_dir)
    monkeypatch.setattr(_analytic_cuda, "cupy", stand_in)
    monkeypatch.setattr(_numerics, "uses_cuda_kernels", lambda xp: True)
    for cached in (_analytic_cuda._fc_kernel, _analytic_cuda._window_module, _analytic_cuda._plain_module):
        cached.cache_clear()
    yield stand_in
    for cached in (_analytic_cuda._fc_kernel, _analytic_cuda._window_module, _analytic_cuda._plain_module):
        cached.cache_clear()


@pytest.fixture(scope="session")
def nvrtc():
    """The NVRTC half of host_cuda (skips without NVRTC and the CUDA headers)."""
    why = host_cuda.missing_nvrtc()
    if why:
        _unavailable(why)
    return host_cuda
