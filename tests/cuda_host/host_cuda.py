"""Run lazykit's CUDA kernels without a GPU: compile them with NVRTC, and execute them on the host.

The GPU code has two halves, and each is checked here without a driver:

* **Compile (NVRTC).** Every source the project can launch, exactly as CuPy would hand it to NVRTC: a
  RawModule's code with its options and name expressions; for an ElementwiseKernel, the full source CuPy
  generates for one launch (CuPy's own ``_get_elementwise_kernel_code`` given the argument descriptors of
  that launch: dtypes, ndim, contiguity, 32-bit indexing), prefixed with CuPy's header include. The options
  are CuPy's (``assemble_cupy_compiler_options``, ``-ftz=true``, ``--device-as-default-execution-space``,
  ``-arch=sm_XX``), the architecture given instead of queried, so no device is needed. NVRTC returns the
  cubin (ptxas included) and the PTX, which :func:`ptx_float64_ops` scans for double-precision arithmetic.

* **Execute (host C++).** The launch code of ``kernels.analytic._cuda`` runs unchanged against
  :class:`HostCuPy`, a stand-in for the few ``cupy`` names it uses, whose arrays are NumPy arrays: the same
  allocation calls (``empty_like`` keeps order 'K' in NumPy as in CuPy, so a layout bug shows), strides,
  dtypes, grid/block arithmetic and argument lists. A kernel launch compiles the same CUDA source with
  ``g++`` behind a small shim header (``__global__``/``__device__`` erased, ``threadIdx``/``blockIdx``/
  ``blockDim``/``gridDim`` as globals, CUDA's overloaded math from ``<cmath>``, ``__dmul_rn``/``__fmul_rn``
  as products the compiler may not fuse) and calls it once per (block, thread), serially, with the
  argument buffer packed as ``cuLaunchKernel`` receives it. Before the call the packed size of every
  argument is checked against ``sizeof`` of the kernel's parameter, so an int64 passed for an ``int`` fails.
  A launch whose floating-point arguments are float32 runs with flush-to-zero and denormals-are-zero set in
  the MXCSR (restored after it), as ``-ftz=true`` makes the GPU's single precision; float64 keeps its
  denormals, as on the GPU (:func:`flushes_denormals`). NumPy between launches keeps denormals: lazykit's CUDA
  chains evaluate every dual in a kernel, so no float32 product of two small numbers happens outside one.
  ElementwiseKernel launches follow CuPy's ``__call__``: broadcasting, dtype resolution through the
  kernel's own ``_decide_params_type``, C-ordered outputs, CuPy's dimension reduction, block size 128 and a
  grid-stride loop; the shim supplies ``CArray``/``CIndexer`` with CuPy's memory layout.

What the host run cannot show: kernels using shared memory, barriers, warp intrinsics or atomics (none in
lazykit; the host build refuses such a source, which must then be modelled here or listed as GPU-only in
docs/gpu.md), and the exact GPU
rounding of transcendental functions. FMA contraction, which NVRTC applies by default (``--fmad=true``),
is imitated: on a CPU with FMA the host build (``-O2``) uses ``-mfma -ffp-contract=fast`` unless the options say
``--fmad=false``, so code that needs an uncontracted product fails here as on the GPU (GCC and NVVM may
contract different expressions, so this exposes the hazard, not the GPU's bit pattern).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np

ARCHS = ("80", "90")          # Ampere (A100) and Hopper (H100/H200)

SHIM = r"""
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>
#include <xmmintrin.h>
struct dim3 { unsigned int x, y, z; };
extern "C" { dim3 threadIdx, blockIdx, blockDim, gridDim; }
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
using std::sqrt; using std::atan2; using std::asin; using std::erf; using std::exp; using std::fabs;
using std::ilogb; using std::ldexp; using std::isfinite;
// CUDA's round-to-nearest products are never fused into an FMA; volatile keeps GCC from fusing them too.
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
// CuPy's CArray / CIndexer, same memory layout (data, size, shape[], strides[] in bytes).
template <typename T, int ndim, bool c_contiguous = false, bool index_32 = false, int core_ndim = 0>
struct CArray {
  T* data_; std::ptrdiff_t size_; std::ptrdiff_t shape_[ndim]; std::ptrdiff_t strides_[ndim];
  T& operator[](const std::ptrdiff_t (&idx)[ndim]) const {
    char* p = reinterpret_cast<char*>(data_);
    for (int d = 0; d < ndim; ++d) p += idx[d] * strides_[d];
    return *reinterpret_cast<T*>(p);
  }
};
template <int ndim, bool index_32 = false>
struct CIndexer {
  std::ptrdiff_t size_; std::ptrdiff_t shape_[ndim]; std::ptrdiff_t index_[ndim];
  std::ptrdiff_t size() const { return size_; }
  const std::ptrdiff_t (&get() const)[ndim] { return index_; }
  void set(std::ptrdiff_t i) {
    for (int d = ndim - 1; d > 0; --d) { index_[d] = i % shape_[d]; i /= shape_[d]; }
    index_[0] = i;
  }
};
#define CUPY_FOR(i, n) \
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<std::ptrdiff_t>(blockDim.x) * gridDim.x)
"""

LAUNCHER = r"""
template <typename... A, std::size_t... I>
static void lazykit_call(void (*f)(A...), void** args, std::index_sequence<I...>) {
  f(*static_cast<typename std::decay<A>::type*>(args[I])...);
}
template <typename... A>
static void lazykit_launch(void (*f)(A...), dim3 grid, dim3 block, void** args) {
  gridDim = grid; blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by)
  for (unsigned bx = 0; bx < grid.x; ++bx) for (unsigned tz = 0; tz < block.z; ++tz)
  for (unsigned ty = 0; ty < block.y; ++ty) for (unsigned tx = 0; tx < block.x; ++tx) {
    blockIdx = dim3{bx, by, bz}; threadIdx = dim3{tx, ty, tz};
    lazykit_call(f, args, std::index_sequence_for<A...>{});
  }
}
template <typename... A>
static int lazykit_sizes(void (*)(A...), std::size_t* out) {
  std::size_t s[] = {sizeof(typename std::decay<A>::type)..., 0};
  std::memcpy(out, s, sizeof...(A) * sizeof(std::size_t));
  return static_cast<int>(sizeof...(A));
}
// ftz: flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) for this launch only, as -ftz=true makes the
// GPU's single-precision arithmetic; the caller's mode is restored after it.
extern "C" void lazykit_host_launch(dim3 grid, dim3 block, void** args, int ftz) {
  unsigned int saved = _mm_getcsr();
  if (ftz) _mm_setcsr(saved | 0x8040u);
  lazykit_launch(&KERNEL, grid, block, args);
  _mm_setcsr(saved);
}
extern "C" int lazykit_host_sizes(std::size_t* out) { return lazykit_sizes(&KERNEL, out); }
"""


# What a serial host launch cannot honour: such a kernel must be modelled here or listed as GPU-only (docs/gpu.md).
NOT_MODELLED = re.compile(r"__shared__|__syncthreads|__syncwarp|__shfl|__ballot|__any_sync|__all_sync|"
                          r"\batomic[A-Z]\w*\(|cooperative_groups")


class Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


def missing() -> str:
    """Why the host-execution half cannot run here ('' when it can)."""
    if shutil.which("g++") is None:
        return "no host C++ compiler (g++) on PATH"
    try:
        import cupy._core._kernel  # noqa: F401  (CuPy's generator of ElementwiseKernel sources)
    except Exception as err:  # ImportError, or a broken install
        return f"CuPy is not importable ({err}); install the 'cuda-host' extra"
    return ""


def missing_nvrtc() -> str:
    """Why NVRTC compilation cannot run here ('' when it can)."""
    why = missing()
    if why:
        return why
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        from cupy._core import core
        core.assemble_cupy_compiler_options(())   # finds the CUDA runtime headers
    except Exception as err:
        return f"NVRTC or the CUDA headers are missing ({err}); install the 'cuda-host' extra"
    return ""


def _cpu_has_fma() -> bool:
    try:
        return " fma " in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------- host build
class _HostFunction:
    """One kernel of one source, built as a shared library and launched serially over (block, thread)."""

    def __init__(self, host, source: str, kernel: str, options: tuple):
        self.host, self.kernel = host, kernel
        self.lib = host.build(source, kernel, options)
        sizes = (ctypes.c_size_t * 64)()
        self.param_sizes = list(sizes[:self.lib.lazykit_host_sizes(sizes)])

    def launch(self, grid, block, packed: list, dtypes) -> None:
        """Launch over ``grid`` × ``block`` with the ``packed`` arguments, whose NumPy ``dtypes`` decide the
        denormal mode (:func:`flushes_denormals`)."""
        ftz = flushes_denormals(dtypes)
        if len(packed) != len(self.param_sizes):
            raise TypeError(f"{self.kernel}: {len(packed)} arguments for {len(self.param_sizes)} parameters")
        for k, (value, size) in enumerate(zip(packed, self.param_sizes)):
            if ctypes.sizeof(value) != size:
                raise TypeError(f"{self.kernel}: argument {k} has {ctypes.sizeof(value)} bytes, its parameter "
                                f"{size}")
        grid, block = (tuple(v) + (1,) * (3 - len(v)) for v in (grid, block))
        pointers = (ctypes.c_void_p * len(packed))(*[ctypes.addressof(v) for v in packed])
        self.host.launches.append((self.kernel, grid, block))
        self.lib.lazykit_host_launch(Dim3(*grid), Dim3(*block), pointers, int(ftz))


def flushes_denormals(dtypes) -> bool:
    """Whether a launch with arguments of these dtypes runs with flush-to-zero (FTZ/DAZ) on the host.

    CuPy compiles every kernel with ``-ftz=true``, which flushes single-precision denormal inputs and results to
    zero on the GPU; double precision keeps its denormals. The host's MXCSR mode covers both widths at once, so a
    launch whose floating-point arguments are all float32 runs with FTZ and DAZ set, one with float64 arguments
    without, and one mixing the two is refused (its float32 half would flush on the GPU, its float64 half not).
    """
    kinds = {np.dtype(d) for d in dtypes if np.dtype(d).kind == "f"}
    if kinds - {np.dtype(np.float32), np.dtype(np.float64)} or len(kinds) > 1:
        raise NotImplementedError(f"a launch with floating-point arguments of dtypes {sorted(map(str, kinds))}: "
                                  "the host models flush-to-zero per launch, for float32 or float64 alone")
    return kinds == {np.dtype(np.float32)}


def _kernel_scalar(value):
    """A kernel scalar as CuPy packs it: NumPy scalars keep their dtype; Python bool/int/float become
    bool/int64/float64."""
    if isinstance(value, (bool, np.bool_)):
        value = np.bool_(value)
    elif isinstance(value, int):
        value = np.int64(value)
    elif isinstance(value, float):
        value = np.float64(value)
    if not isinstance(value, np.generic):
        raise TypeError(f"unsupported kernel argument {type(value).__name__}")
    return value


def _scalar(value):
    """The bytes of a kernel scalar (:func:`_kernel_scalar`) as the argument buffer holds them."""
    value = _kernel_scalar(value)
    return (ctypes.c_char * value.dtype.itemsize).from_buffer_copy(value.tobytes())


class HostRawModule:
    """``cupy.RawModule(code=..., options=..., name_expressions=...)`` on the host."""

    def __init__(self, host, code: str, options=(), name_expressions=None, **kwargs):
        if kwargs.get("backend", "nvrtc") != "nvrtc" or kwargs.get("jitify"):
            raise NotImplementedError("only NVRTC without jitify is modelled")
        self.host, self.code, self.options = host, code, tuple(options)
        self.name_expressions = tuple(name_expressions or ())
        host.sources.append(dict(kind="RawModule", name=",".join(self.name_expressions), code=code,
                                 options=self.options, name_expressions=self.name_expressions))

    def get_function(self, name: str):
        if self.name_expressions and name not in self.name_expressions:
            raise KeyError(f"{name} is not among the name expressions {self.name_expressions}")
        if not self.host.execute:
            return lambda grid, block, args, shared_mem=0, stream=None: self.host.launches.append((name, grid, block))
        fn = _HostFunction(self.host, self.code, name, self.options)

        def call(grid, block, args, shared_mem=0, stream=None):
            if shared_mem:
                raise NotImplementedError("dynamic shared memory is not modelled on the host")
            packed = [(ctypes.c_void_p * 1)(a.ctypes.data) if isinstance(a, np.ndarray) else _scalar(a)
                      for a in args]
            fn.launch(grid, block, packed, [a.dtype if isinstance(a, np.ndarray) else _kernel_scalar(a).dtype
                                            for a in args])

        return call


def _pack_carray(a: np.ndarray):
    ndim = a.ndim
    fields = [("data", ctypes.c_void_p), ("size", ctypes.c_ssize_t), ("shape", ctypes.c_ssize_t * ndim),
              ("strides", ctypes.c_ssize_t * ndim)]
    struct = type(f"CArray{ndim}", (ctypes.Structure,), {"_fields_": fields})
    return struct(a.ctypes.data, a.size, (ctypes.c_ssize_t * ndim)(*a.shape), (ctypes.c_ssize_t * ndim)(*a.strides))


def _pack_cindexer(shape: tuple):
    ndim = len(shape)
    fields = [("size", ctypes.c_ssize_t)] + ([("shape", ctypes.c_ssize_t * ndim),
                                              ("index", ctypes.c_ssize_t * ndim)] if ndim else [])
    struct = type(f"CIndexer{ndim}", (ctypes.Structure,), {"_fields_": fields})
    size = int(np.prod(shape, dtype=np.int64))
    return struct(size, (ctypes.c_ssize_t * ndim)(*shape)) if ndim else struct(size)


def _reduce_dims(arrays: list, shape: tuple):
    """CuPy's ``_reduced_view_core``: merge axes that every array walks contiguously (all C-contiguous: one
    axis; a 2-D shape with any non-contiguous array is kept)."""
    if len(shape) <= 1 or not arrays:
        return arrays, shape
    strided = [a for a in arrays if not a.flags.c_contiguous]
    if not strided:
        size = arrays[0].size
        return [np.lib.stride_tricks.as_strided(a, (size,), (a.itemsize,)) for a in arrays], (size,)
    if len(shape) == 2:
        return arrays, shape
    vecshape, axes, last = list(shape), [], -1
    for ax in range(len(shape)):
        if vecshape[ax] == 1:
            continue
        if last < 0:
            last = ax
            continue
        if any(a.strides[ax] * vecshape[ax] != a.strides[last] for a in strided):
            axes.append(last)
        else:
            vecshape[ax] *= vecshape[last]
        last = ax
    if last >= 0:
        axes.append(last)
    if len(axes) == len(shape):
        return arrays, shape
    new_shape = tuple(vecshape[ax] for ax in axes)
    return [np.lib.stride_tricks.as_strided(a, new_shape, tuple(a.strides[ax] for ax in axes))
            for a in arrays], new_shape


def _index_32(a: np.ndarray) -> bool:
    return a.size * a.itemsize < 2 ** 31


class HostElementwiseKernel:
    """``cupy.ElementwiseKernel`` on the host: CuPy's own parameter parsing, type resolution and source
    generator, then the launch CuPy's ``__call__`` makes (``linear_launch``, block size 128)."""

    def __init__(self, host, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 **kwargs):
        import cupy
        self.host, self.reduce_dims = host, reduce_dims
        self.real = cupy.ElementwiseKernel(in_params, out_params, operation, name, reduce_dims, preamble,
                                           **kwargs)

    def __call__(self, *args):
        import cupy
        from cupy._core import _carray, _kernel
        from cupy._core import _scalar as cupy_scalar
        real = self.real
        if len(args) != real.nin:
            raise TypeError(f"{real.name}: {len(args)} arguments, expected {real.nin} (outputs are allocated)")
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
        ins = [np.broadcast_to(a, shape) if isinstance(a, np.ndarray) else a for a in args]
        in_types, out_types, type_map = real._decide_params_type(
            tuple(a.dtype if isinstance(a, np.ndarray) else None for a in args), ())
        ins = [a if isinstance(a, np.ndarray) else np.dtype(t).type(a) for a, t in zip(ins, in_types)]
        outs = [self.host.empty(shape, dtype=t) for t in out_types]      # CuPy's _ndarray_init: C order
        views = [a for a in ins + outs if isinstance(a, np.ndarray)]
        if self.reduce_dims:
            views, shape = _reduce_dims(views, shape)
        it = iter(views)
        inout = [next(it) if isinstance(a, np.ndarray) else a for a in ins + outs]
        infos = [_kernel._ArgInfo(1, cupy.ndarray, a.dtype, a.ndim, a.flags.c_contiguous, _index_32(a))
                 if isinstance(a, np.ndarray) else _kernel._ArgInfo(3, cupy_scalar.CScalar, a.dtype, 0, True, True)
                 for a in inout]
        size = int(np.prod(shape, dtype=np.int64))
        infos.append(_kernel._ArgInfo(2, _carray.Indexer, None, len(shape), True, size < 2 ** 31))
        code = _kernel._get_elementwise_kernel_code(tuple(infos), type_map, real.params, real.operation,
                                                    real.name, real.preamble, **real.kwargs)
        options = tuple(real.kwargs.get("options", ()))
        self.host.sources.append(dict(kind="ElementwiseKernel", name=real.name, code=code, options=options,
                                      name_expressions=(), elementwise=True,
                                      variant=(str(type_map), tuple(repr(i) for i in infos))))
        if size and self.host.execute:
            fn = _HostFunction(self.host, code, real.name, options)
            packed = [_pack_carray(a) if isinstance(a, np.ndarray) else _scalar(a) for a in inout]
            block = min(128, size)
            fn.launch(((size + 127) // 128,), (block,), packed + [_pack_cindexer(shape)],
                      [a.dtype for a in inout])
        return tuple(outs) if len(outs) > 1 else outs[0]


class HostCuPy(types.ModuleType):
    """A stand-in for the ``cupy`` module as ``kernels.analytic._cuda`` uses it, backed by NumPy memory.

    ``sources`` records every (source, options) a launch compiled, for :func:`nvrtc_compile`; ``launches``
    every (kernel, grid, block).
    """

    float32, float64, int32, int64 = np.float32, np.float64, np.int32, np.int64
    ndarray = np.ndarray

    def __init__(self, build_dir, execute: bool = True):
        super().__init__("cupy")
        self.execute = execute      # False: record sources only (outputs are zeros), for the NVRTC tests
        self.build_dir = Path(build_dir)
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.sources, self.launches, self._libs = [], [], {}
        self.fma = _cpu_has_fma()
        for name in ("empty", "empty_like", "zeros", "zeros_like", "ascontiguousarray", "asarray", "asnumpy",
                     "reshape"):
            setattr(self, name, getattr(np, "asarray" if name == "asnumpy" else name))
        if not execute:
            self.empty, self.empty_like = np.zeros, np.zeros_like
        self.ElementwiseKernel = lambda *a, **k: HostElementwiseKernel(self, *a, **k)
        self.RawModule = lambda code, options=(), name_expressions=None, **k: HostRawModule(
            self, code, options, name_expressions, **k)

    def build(self, source: str, kernel: str, options: tuple):
        """g++ build of ``source`` with the shim, exporting a serial launcher of ``kernel`` (cached by content)."""
        unsupported = NOT_MODELLED.search(re.sub(r"#include\s*<cupy/[^>]+>", "", source))
        if unsupported:
            raise NotImplementedError(f"{kernel} uses {unsupported.group(0)!r}, which the serial host launch does "
                                      "not model: model it in host_cuda.py or list the kernel as GPU-only")
        contract = "-ffp-contract=off" if "--fmad=false" in options or not self.fma else "-ffp-contract=fast"
        flags = ["-O2", "-std=c++14", "-shared", "-fPIC", contract] + (["-mfma"] if self.fma else [])
        text = SHIM + re.sub(r"#include\s*<cupy/[^>]+>", "", source) + LAUNCHER.replace("KERNEL", kernel)
        key = hashlib.sha256((text + " ".join(flags)).encode()).hexdigest()[:20]
        if key not in self._libs:
            cpp, lib = self.build_dir / f"{key}.cpp", self.build_dir / f"{key}.so"
            if not lib.exists():
                cpp.write_text(text)
                run = subprocess.run(["g++", *flags, str(cpp), "-o", str(lib)], capture_output=True, text=True)
                if run.returncode:
                    raise RuntimeError(f"host build of {kernel} failed:\n{run.stderr[-4000:]}")
            self._libs[key] = ctypes.CDLL(str(lib))
        return self._libs[key]


# ----------------------------------------------------------------------------------------------- NVRTC
def nvrtc_compile(entry: dict, arch: str):
    """(PTX, cubin) for one recorded source, compiled by NVRTC for ``sm_<arch>`` as CuPy compiles it.

    An ElementwiseKernel source gets CuPy's header include; both kinds get CuPy's assembled options and
    ``-arch=sm_<arch>``, CuPy's choice for an architecture NVRTC knows, so NVRTC runs ptxas too and returns a
    cubin (SASS); the PTX of the same program is kept for inspection. No device is needed: the architecture
    is given instead of queried.
    """
    from cupy._core import core
    from cupy.cuda import compiler
    from cupy_backends.cuda.libs import nvrtc
    code = entry["code"]
    if entry.get("elementwise"):
        code = "".join(f"#include <{h}>\n" for h in core._cupy_header_list) + code
    options = core.assemble_cupy_compiler_options(tuple(entry["options"]))
    options += ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")
    program = compiler._NVRTCProgram(code, "kern.cu", (), (), name_expressions=entry["name_expressions"] or None,
                                     method="cubin")
    cubin, _ = program.compile(options)
    ptx = nvrtc.getPTX(program.ptr)
    return (ptx.decode() if isinstance(ptx, bytes) else ptx), cubin


def ptx_functions(ptx: str) -> dict:
    """PTX split into its functions: {mangled name: body} for every ``.entry`` and ``.func``."""
    parts = re.split(r"^(?:\.visible\s+|\.weak\s+)*\.(?:entry|func)\s+(?:\([^)]*\)\s*)?", ptx, flags=re.M)
    return {re.match(r"[\w$]+", part).group(0): part for part in parts[1:]}


def ptx_float64_ops(ptx: str) -> list:
    """Double-precision instructions in PTX (arithmetic or conversions on .f64), one line each."""
    return [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line)
            and not line.strip().startswith(("//", ".", "ld.param", "st.param"))]


def assert_zeros_only_where_orthogonal(k, x1, x2=None, what="kernel"):
    """Exactly-zero entries of the (n1, n2) kernel ``k`` only where the inputs are orthogonal (x1_i·x2_j = 0 in
    float64, flattened): elsewhere a zero is the symptom of an underflow (a cross term flushed to 0), which the
    finite-value check of ``kernels.analytic._numerics.check_overflow`` cannot see."""
    a = np.reshape(np.asarray(x1, np.float64), (len(x1), -1))
    b = a if x2 is None else np.reshape(np.asarray(x2, np.float64), (len(x2), -1))
    zero = np.asarray(k) == 0
    unexplained = zero & (a @ b.T != 0)
    assert not unexplained.any(), (f"{what}: {int(unexplained.sum())} of {unexplained.size} entries are exactly 0 "
                                   f"where the inputs are not orthogonal, e.g. {np.argwhere(unexplained)[:3].tolist()}")


def temp_dir(tmp_path_factory):
    """One build folder per test session (LAZYKIT_HOST_CUDA_CACHE keeps builds across sessions)."""
    cached = os.environ.get("LAZYKIT_HOST_CUDA_CACHE")
    return Path(cached) if cached else tmp_path_factory.mktemp("host-cuda")
