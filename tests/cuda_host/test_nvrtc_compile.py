"""Every CUDA source lazykit can launch compiles with NVRTC to SASS for sm_80 and sm_90 (no driver needed),
float32 variants contain no float64 arithmetic, and the θ = 0 products are the unfusable ``mul.rn`` (method:
host_cuda.py).

The sources are those the launch code actually produces: the public kernels run through the CUDA chains on
a recording stand-in, over 5 × 3 inputs in tiles of 2, so the elementwise kernel meets every layout it can
(2-D with both variance operands broadcast, 1×n, n×1, and 1×1, which CuPy reduces to 1-D), for each
closed-form dual family and dtype; an image stack (conv, activation, pooling, conv, GAP) records the window
RawModule of each dual family and the pooling/readout RawModule, each with both dtypes as name expressions.
"""
import re

import numpy as np
import pytest

from kernels import FullyConnected, stax

pytestmark = pytest.mark.cuda_host

FAMILIES = {"relu": "abrelu", "step": "step", "identity": "identity", "erf": "erf"}   # one source each
LAYOUTS = 4
PRODUCT = re.compile(r"mul\.rn(?:\.ftz)?\.f(32|64)")


@pytest.fixture(scope="module")
def sources(nvrtc, tmp_path_factory):
    from kernels.analytic import _numerics
    from kernels.analytic import _cuda as _analytic_cuda
    host = nvrtc.HostCuPy(tmp_path_factory.mktemp("record"), execute=False)
    mp = pytest.MonkeyPatch()
    mp.setattr(_analytic_cuda, "cupy", host)
    mp.setattr(_numerics, "uses_cuda_kernels", lambda xp: True)
    for cached in _analytic_cuda.COMPILED:
        cached.cache_clear()
    rng = np.random.default_rng(0)
    try:
        for activation in FAMILIES:
            for dtype in ("float32", "float64"):
                FullyConnected(2, activation, block_size=2, n_jobs=1, dtype=dtype, cpu_impl="reference").kernels(
                    rng.standard_normal((5, 3)), rng.standard_normal((3, 3)))
                act = stax.Activation(activation)
                stax.serial(stax.Conv(4, (3, 3), padding="SAME"), act, stax.AvgPool((2, 2), padding="SAME"),
                            stax.Conv(4, (2, 2), strides=(2, 1), padding="SAME"), act, stax.GlobalAvgPool(),
                            stax.Dense(1)).set_params(block_size=2, n_jobs=1, dtype=dtype, cpu_impl="reference") \
                    .kernels(rng.standard_normal((3, 2, 5, 4)))
    finally:
        mp.undo()
        for cached in _analytic_cuda.COMPILED:
            cached.cache_clear()
    unique = {}
    for entry in host.sources:
        unique.setdefault((entry["code"], entry["options"], entry["name_expressions"]), entry)
    return list(unique.values())


def test_every_launch_variant_is_recorded(sources):
    elementwise = [s for s in sources if s["kind"] == "ElementwiseKernel" and "fc_block" in s["name"]]
    variances = [s for s in sources if s["kind"] == "ElementwiseKernel" and "variance" in s["name"]]
    raw = [s for s in sources if s["kind"] == "RawModule"]
    assert len(elementwise) == len(FAMILIES) * 2 * LAYOUTS            # families × dtypes × layouts
    # the variances after each activation (FC and conv alike): contiguous arrays, which CuPy reduces to 1-D
    assert len(variances) == len(FAMILIES) * 2
    assert len(elementwise) + len(variances) + len(raw) == len(sources)
    window = "window_block<float>,window_block<double>"
    plain = "pool_block<float>,pool_block<double>,readout_block<float>,readout_block<double>"
    assert sorted(s["name"] for s in raw) == [plain] + [window] * len(FAMILIES)
    ndims = {re.search(r"CIndexer<(\d)", s["code"]).group(1) for s in elementwise}
    assert ndims == {"1", "2"}


@pytest.mark.parametrize("arch", ["80", "90"])
def test_compiles_and_float32_stays_float32(nvrtc, sources, arch):
    for entry in sources:
        ptx, cubin = nvrtc.nvrtc_compile(entry, arch)
        assert f".target sm_{arch}" in ptx and cubin[:4] == b"\x7fELF"      # PTX and the SASS ptxas made of it
        functions = nvrtc.ptx_functions(ptx)
        if entry["kind"] == "ElementwiseKernel":
            is_float = "typedef float T;" in entry["code"]
            blocks = {entry["name"]: ptx} if is_float else {}
            needs_product = {entry["name"]: "32" if is_float else "64"}
        else:   # one PTX function per template instantiation: float32 ones carry "IfE" in the mangled name
            blocks = {name: body for name, body in functions.items() if "IfE" in name}
            needs_product = {name: "32" if "IfE" in name else "64" for name in functions if "window_block" in name}
            assert len(needs_product) == (2 if "window_block" in entry["name"] else 0), functions.keys()
        for name, body in blocks.items():
            assert nvrtc.ptx_float64_ops(body) == [], f"{entry['name']} ({name}) uses float64 in float32"
        if entry["kind"] == "ElementwiseKernel" and not is_float:
            assert nvrtc.ptx_float64_ops(ptx), "the float64 scan sees nothing in a float64 kernel"
        # the dual families that form s (abrelu, step), where k12 is a cross term (a variance kernel's
        # dual(v, v, v) may share its two identical products)
        if "atan2(s, k12)" in entry["code"] and "variance" not in entry["name"]:
            for name, width in needs_product.items():     # b = √(k11·k22) from an unfused product (s² factored)
                body = functions.get(name, ptx)
                assert PRODUCT.findall(body).count(width) >= 1, f"{name}: no mul.rn.f{width} for b"
