"""CuPy kernels for the analytic kernels on the GPU (closed-form activations only), one thread per output.

* ``fc_block``: one fused ElementwiseKernel per hidden layer — the activation's dual followed by the next
  Dense rule — so a layer reads (k12, Θ) once and writes them once.
* ``activation_variance``: the variances after an activation, ``dual(v, v, v)`` (one ElementwiseKernel).
* ``window_block``: a RawKernel for a convolution over a tile of image pairs (B1 × B2 pairs; every pixel pair, or
  matching pixels): the aligned window mean of K and Θ (any window, strides, zero pads), the affine rule, then,
  optionally, the activation's dual. With ``x2=None`` only tiles on or above the diagonal are launched.
* ``pool_block``: average or sum pooling of a pixel-pair tile (every pixel pair of the two windows, the 'window',
  'edges' or 'none' norm).
* ``readout_block``: the readout's partial sums of a pixel-pair tile ('gap'/'gsp': over the first pixel of each
  pair; 'flatten': the matching pixels), summed over the last pixel by the array namespace.

``replacements(network)`` offers them to ``kernels.analytic.rules.run`` in place of the rule pairs [activation,
Dense] (vector tiles) and [Conv, activation] whose activation has a closed form, and of the single rows Conv,
AvgPool/SumPool and readout (branches run their rows through the same chain); they read the hyperparameters
(scales, parameterization, fan-in, window, strides, padding, norm, trained flag, dual) from the rows they
replace, and leave 'CIRCULAR' padding to the reference rules. Each is checked against its NumPy reference —
``dense_rule(activation_rule(state))``, ``activation_rule(conv_rule(state))``, ``conv_rule``, ``avg_pool_rule``
and ``readout_rule`` in ``kernels.analytic.rules`` — on a GPU by tests/gpu/test_analytic_gpu.py, and without one by
tests/cuda_host (every source compiled by NVRTC, and executed on the host through this module's launch code).

θ = 0 exactly on a pinned diagonal. There k12 = k11 = k22 bitwise (the same variance entry), so
s² = k11·k22 − k12² must be exactly 0. Written that way, NVRTC contracts it into an FMA by default
(``--fmad=true``), fma(−k12, k12, round(k11·k22)), leaving the rounding error of k11·k22 (about 1e-16·k², so
θ ≈ 1e-8 and NTK errors ≈ 1e-9), and near-identical inputs cancel catastrophically whatever the FMAs. The
duals therefore form s² as (b − |k12|)·(b + |k12|) with b = √(k11·k22), the arithmetic of the CPU engines
(``duals._clamped``): no product left to contract, exactly 0 once k12 is snapped to ±b, and accurate near it.
b's product is written ``__dmul_rn`` / ``__fmul_rn`` ("will never be merged into a single multiply-add
instruction", CUDA Math API reference), the rest of the kernel keeps its FMAs. The step dual is 0 where a
variance is 0 (φ(0) = 0), as ``duals._step_nngp``.

No underflow in float32. CuPy compiles with ``-ftz=true``, so a float32 product below FLT_MIN ≈ 1.2e-38 is
0 on the GPU. The duals multiply two variances: √(k11·k22) and s = k11·k22 − k12² vanish once the variances
fall below ≈ 1e-19 (erf with w_std = 0.5 at depth 40; |x| ≈ 1e-15 with a bias or the 'standard'
parameterization, which the CPU's input rescaling does not cover), snapping k12 to ±0 or θ to 0: all
off-diagonal NNGP entries exactly 0, the NTK 7–25% off. Each dual therefore works on k11·4^(−m1), k22·4^(−m2),
k12·2^(−m1−m2), with m = ⌊log2(k)/2⌋ (``lazykit_half_exponent``), so its products lie near [1, 16), and restores
the result's degree (ReLU family: ×2^(m1+m2); step: degree 0; erf rescales its clamp bound only, its other
terms are sums with 1). Powers of two are exact, so wherever the unscaled formulas did not underflow the
ReLU family's and step's results are bitwise unchanged (measured on 4000 entries with k in [1e-15, 1e15], both
dtypes; θ = 0 on a pinned diagonal included: k12 = k11 = k22 get the same exponent), and erf's differ in the
last bit of a few NTK factors.
√k11·√k22 was the other candidate: it keeps the bound but not s (the ReLU family and step still flush it), and
√k·√k ≠ k (k = 2), so a pinned diagonal would lose θ = 0. The variances after an activation are computed from
the same source (``activation_variance``: ``dual(v, v, v)``) rather than by CuPy ufuncs, which flush v² too.
New kernels inherit this by calling ``dual`` from ``_dual_source``. Tests: tests/cuda_host/test_underflow.py.

Outputs are allocated in C order (``cupy.empty(shape)``), the order the kernels write; ``empty_like``
would copy the layout of a permuted input view.
"""
from __future__ import annotations

import functools

import cupy
import numpy

from kernels import backend
from kernels.analytic import rules

# Dual activations in CUDA: the same formulas as kernels.analytic.duals (closed forms only), evaluated on
# k11·4^(−m1), k22·4^(−m2), k12·2^(−m1−m2) (exact power-of-two rescaling, module docstring).
# The ReLU family and step share the rescaling, the clamp of k12 to ±b (b = √(k11·k22)) and s = √(k11·k22 − k12²)
# from the factored s² = (b − |k12|)(b + |k12|), as the CPU engines (duals._clamped).
_RESCALED_ANGLE = """
    int m1 = lazykit_half_exponent(k11), m2 = lazykit_half_exponent(k22);
    k11 = ldexp(k11, -2 * m1); k22 = ldexp(k22, -2 * m2); k12 = ldexp(k12, -(m1 + m2));
    T bound = sqrt(lazykit_mul_rn(k11, k22));
    T near = bound * (T(1) - T(16) * (sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16)));
    k12 = k12 > near ? bound : (k12 < -near ? -bound : k12);
    T a = fabs(k12), s = (bound - a) * (bound + a);
    s = s > T(0) ? sqrt(s) : T(0);"""
_DUALS = {
    "abrelu": _RESCALED_ANGLE + """
    T th = atan2(s, k12);
    T cs = (T(1) + slope * slope) / T(2 * LAZYKIT_PI), cc = T(2) * slope / T(2 * LAZYKIT_PI);
    dot = cs * (T(LAZYKIT_PI) - th) + cc * th;
    nngp = ldexp((cs - cc) * s + k12 * dot, m1 + m2);   // degree one in k12, √k11, √k22""",
    "step": _RESCALED_ANGLE + """
    // degree zero: nothing to restore; φ(0) = 0, so 0 where a variance is 0 (duals._step_nngp)
    nngp = k11 > T(0) && k22 > T(0) ? (T(LAZYKIT_PI) - atan2(s, k12)) / T(2 * LAZYKIT_PI) : T(0);
    dot = T(0);""",
    "identity": """
    nngp = k12;
    dot = T(1);""",
    "erf": """
    int m1 = lazykit_half_exponent(k11), m2 = lazykit_half_exponent(k22);
    T bound = ldexp(sqrt(ldexp(k11, -2 * m1) * ldexp(k22, -2 * m2)), m1 + m2);   // √(k11·k22), no underflow
    T near = bound * (T(1) - T(16) * (sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16)));
    k12 = k12 > near ? bound : (k12 < -near ? -bound : k12);
    T a = fabs(k12), gap = (bound - a) * (bound + a);   // may flush to 0 only below FLT_MIN, beside 1 in dot
    gap = gap > T(0) ? gap : T(0);
    T r = T(2) * k12 / (sqrt(T(1) + T(2) * k11) * sqrt(T(1) + T(2) * k22));
    nngp = T(2 / LAZYKIT_PI) * asin(r > T(1) ? T(1) : (r < T(-1) ? T(-1) : r));
    dot = T(4 / LAZYKIT_PI) / sqrt(T(1) + T(2) * (k11 + k22) + T(4) * gap);""",
}


def _dual_source(name: str) -> str:
    body = _DUALS["abrelu" if name in ("relu", "leaky_relu", "abs") else name]
    return ("#define LAZYKIT_PI 3.14159265358979323846\n"   # NVRTC does not promise M_PI
            # products never fused into an FMA: s is exactly 0 where k12 = k11 = k22 (module docstring)
            "__device__ inline float lazykit_mul_rn(float a, float b) { return __fmul_rn(a, b); }\n"
            "__device__ inline double lazykit_mul_rn(double a, double b) { return __dmul_rn(a, b); }\n"
            # m = floor(log2(v) / 2), so v·4^(−m) lies in [1, 4); 0 for 0, a (flushed) denormal, inf and NaN
            "template <typename T> __device__ inline int lazykit_half_exponent(T v) {\n"
            "  if (!(v > T(0)) || !isfinite(v)) return 0;\n"
            "  int e = ilogb(v); return (e - (e < 0)) / 2; }\n"
            "template <typename T> __device__ void dual(T k12, T k11, T k22, T slope, T &nngp, T &dot) {"
            + body + "\n}\n")


@functools.lru_cache(maxsize=None)
def _fc_kernel(name: str):
    return cupy.ElementwiseKernel(
        "T k12, T ntk, T k11, T k22, T slope, T w2, T b2, T fan_in, T ntk_bias, int32 standard, T trained",
        "T k12_out, T ntk_out",
        """
        T n, f;
        dual(k12, k11, k22, slope, n, f);
        T k = w2 * n + b2;
        ntk_out = w2 * ntk * f + trained * (standard ? fan_in * n + ntk_bias : k);
        k12_out = k;
        """,
        f"lazykit_fc_block_{name}", preamble=_dual_source(name))


@functools.lru_cache(maxsize=None)
def _variance_kernel(name: str):
    return cupy.ElementwiseKernel(
        "T v, T slope", "T out", "T n, f; dual(v, v, v, slope, n, f); out = n;", f"lazykit_variance_{name}",
        preamble=_dual_source(name))



def _scalars(layer, dtype):
    """(w², b², n_in, the 'standard' NTK's bias term, standard?, trained?) of a Dense or Conv layer, in ``dtype``."""
    b2, bias = layer.bias_terms
    return (dtype(layer.w_std ** 2), dtype(b2), dtype(layer.fan_in or 0), dtype(bias),
            numpy.int32(layer.parameterization == "standard"), dtype(1.0 if layer.trained else 0.0))


def _kernel_name(dual) -> str:
    return dual.name if dual.name in _DUALS else "abrelu"


def activation_variance(activation, v):
    """E[φ(u)²] for u ~ N(0, v) from the dual source, ``dual(v, v, v)`` (CuPy): the variances after an activation
    in the same arithmetic as its cross terms. Reference: ``rules.activation_variance`` (whose CuPy ufuncs flush
    v² to zero below FLT_MIN in float32)."""
    return _variance_kernel(_kernel_name(activation.dual))(v, v.dtype.type(activation.dual.slope))


def fc_block(activation, dense, k12, ntk, k11, k22):
    """Fused activation + next Dense on a tile: returns (k12, ntk) after both (CuPy).

    ``activation`` and ``dense`` are the two ``kernels.analytic.rules.Layer`` rows replaced; ``k11``, ``k22``
    the variances before the activation. Reference: ``rules.dense_rule(rules.activation_rule(state))``.
    """
    t = k12.dtype.type
    w2, b2, fan, bias, standard, trained = _scalars(dense, t)
    return _fc_kernel(_kernel_name(activation.dual))(
        k12, ntk, k11, k22, t(activation.dual.slope), w2, b2, fan, bias, standard, trained)



_WINDOW_SOURCE = r"""
template <typename T>
__global__ void window_block(const T* k12, const T* ntk, const T* var1, const T* var2, T* k12_out, T* ntk_out,
                             int b1, int b2, int h, int w, int ho, int wo, int fh, int fw, int sh, int sw, int lh,
                             int lw, int pairs, T w2, T b2sq, T fan_in, T ntk_bias, int standard, T trained,
                             int with_ntk, int act, T slope, int pin, int self_pairs, long long total) {
    long long idx = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (idx >= total) return;
    // output layout (B1, B2, Ho, Wo[, Ho, Wo]): idx -> (i, j, p1 = (y1, x1)[, p2 = (y2, x2)]); matching pixels: p2 = p1
    long long rest = idx;
    int x2 = 0, y2 = 0;
    if (pairs) { x2 = rest % wo; rest /= wo; y2 = rest % ho; rest /= ho; }
    int x1 = rest % wo; rest /= wo;
    int y1 = rest % ho; rest /= ho;
    if (!pairs) { x2 = x1; y2 = y1; }
    int j = rest % b2; int i = rest / b2;
    long long pixels = (long long)h * w;
    long long pair = ((long long)i * b2 + j) * (pairs ? pixels * pixels : pixels);
    T sk = 0, st = 0;
    for (int a = 0; a < fh; ++a) {               // both pixels move together: K~(s·p − lo + a, s·q − lo + a)
        int u1 = y1 * sh - lh + a, u2 = y2 * sh - lh + a;
        if (u1 < 0 || u1 >= h || u2 < 0 || u2 >= h) continue;
        for (int c = 0; c < fw; ++c) {
            int v1 = x1 * sw - lw + c, v2 = x2 * sw - lw + c;
            if (v1 < 0 || v1 >= w || v2 < 0 || v2 >= w) continue;
            long long at = pair + (pairs ? ((long long)u1 * w + v1) * pixels + (long long)u2 * w + v2
                                         : (long long)u1 * w + v1);
            sk += k12[at];
            if (with_ntk) st += ntk[at];
        }
    }
    T area = T(fh * fw);
    sk /= area; st /= area;
    T kc = w2 * sk + b2sq;                       // the affine rule (rules.dense_rule)
    T tc = w2 * st + trained * (standard ? fan_in * sk + ntk_bias : kc);
    if (act) {
        T k11 = var1[((long long)i * ho + y1) * wo + x1];
        T k22 = var2[((long long)(self_pairs ? i : j) * ho + y2) * wo + x2];
        // same input, same pixel: θ = 0 exactly
        if (pin && (self_pairs || i == j) && y1 == y2 && x1 == x2) kc = k11;
        T n, f;
        dual(kc, k11, k22, slope, n, f);
        kc = n; tc *= f;
    }
    k12_out[idx] = kc;
    if (with_ntk) ntk_out[idx] = tc;
}
"""

_PLAIN_SOURCE = r"""
template <typename T>
__global__ void pool_block(const T* k12, const T* ntk, T* k12_out, T* ntk_out, int b, int h, int w, int ho, int wo,
                           int fh, int fw, int sh, int sw, int lh, int lw, int norm, int with_ntk, long long total) {
    long long idx = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (idx >= total) return;
    // layout (B1·B2, Ho, Wo, Ho, Wo): every pixel pair of the two windows, K~(s·P − lo + a, s·Q − lo + c)
    long long rest = idx;
    int x2 = rest % wo; rest /= wo;
    int y2 = rest % ho; rest /= ho;
    int x1 = rest % wo; rest /= wo;
    int y1 = rest % ho; long long pair = rest / ho;
    long long pixels = (long long)h * w;
    long long base = pair * pixels * pixels;
    T sk = 0, st = 0;
    int n_y1 = 0, n_x1 = 0, n_y2 = 0, n_x2 = 0;   // real (unpadded) pixels in each window, per axis
    for (int a = 0; a < fh; ++a) {
        int u1 = y1 * sh - lh + a, u2 = y2 * sh - lh + a;
        n_y1 += (u1 >= 0 && u1 < h); n_y2 += (u2 >= 0 && u2 < h);
    }
    for (int c = 0; c < fw; ++c) {
        int v1 = x1 * sw - lw + c, v2 = x2 * sw - lw + c;
        n_x1 += (v1 >= 0 && v1 < w); n_x2 += (v2 >= 0 && v2 < w);
    }
    for (int a1 = 0; a1 < fh; ++a1) {
        int u1 = y1 * sh - lh + a1;
        if (u1 < 0 || u1 >= h) continue;
        for (int c1 = 0; c1 < fw; ++c1) {
            int v1 = x1 * sw - lw + c1;
            if (v1 < 0 || v1 >= w) continue;
            long long row = base + ((long long)u1 * w + v1) * pixels;
            for (int a2 = 0; a2 < fh; ++a2) {
                int u2 = y2 * sh - lh + a2;
                if (u2 < 0 || u2 >= h) continue;
                for (int c2 = 0; c2 < fw; ++c2) {
                    int v2 = x2 * sw - lw + c2;
                    if (v2 < 0 || v2 >= w) continue;
                    sk += k12[row + (long long)u2 * w + v2];
                    if (with_ntk) st += ntk[row + (long long)u2 * w + v2];
                }
            }
        }
    }
    T divisor = norm == 0 ? T(fh * fw) * T(fh * fw)       // 'window': w per axis and pixel
              : norm == 1 ? T(n_y1 * n_x1) * T(n_y2 * n_x2) // 'edges': the real pixels of both windows
              : T(1);                                        // 'none': a sum pool
    k12_out[idx] = sk / divisor;
    if (with_ntk) ntk_out[idx] = st / divisor;
}

template <typename T>
__global__ void readout_block(const T* k, T* out, int pixels, int diagonal, long long total) {
    long long idx = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (idx >= total) return;
    // layout (B1·B2, P, P) with P = H·W pixels: out[pair, q] = Σ_p k[pair, p, q] (neighbouring threads read
    // neighbouring q), or the matching pixel k[pair, q, q]
    long long pair = idx / pixels;
    int q = idx % pixels;
    const T* base = k + pair * (long long)pixels * pixels;
    if (diagonal) { out[idx] = base[(long long)q * pixels + q]; return; }
    T s = 0;
    for (int p = 0; p < pixels; ++p) s += base[(long long)p * pixels + q];
    out[idx] = s;
}
"""

_THREADS = 256


def _expressions(*kernels) -> tuple:
    return tuple(f"{k}<{t}>" for k in kernels for t in ("float", "double"))


@functools.lru_cache(maxsize=None)
def _window_module(name: str):
    return cupy.RawModule(code=_dual_source(name) + _WINDOW_SOURCE, options=("--std=c++14",),
                          name_expressions=_expressions("window_block"))


@functools.lru_cache(maxsize=None)
def _plain_module():
    return cupy.RawModule(code=_PLAIN_SOURCE, options=("--std=c++14",),
                          name_expressions=_expressions("pool_block", "readout_block"))


# every compiled-kernel cache of this module (the host tests clear them when they swap ``cupy``)
COMPILED = (_fc_kernel, _variance_kernel, _window_module, _plain_module)


def _type_name(a) -> str:
    return "double" if a.dtype == cupy.float64 else "float"


def _launch(fn, total: int, args: tuple):
    fn(((total + _THREADS - 1) // _THREADS,), (_THREADS,), args + (cupy.int64(total),))


def _geometry(layer, h: int, w: int) -> tuple:
    """(ho, wo, fh, fw, sh, sw, lo_h, lo_w) of a Conv or pooling row on an h × w input."""
    (ho, lh, _), (wo, lw, _) = (rules.axis_geometry(n, f, s, layer.padding, axis) for axis, (n, f, s) in
                                enumerate(zip((h, w), layer.window, layer.strides)))
    return (ho, wo) + tuple(layer.window) + tuple(layer.strides) + (lh, lw)


def window_block(conv, k12, ntk, pairs: bool, activation=None, var1=None, var2=None, pin: bool = False,
                 self_pairs: bool = False):
    """A conv row on a tile (CuPy RawKernel): the aligned window mean of k12 (and ntk, unless None), the affine
    rule, then, with ``activation`` (a row whose dual is in FUSED_DUALS), its dual at the variances var1
    (B1, Ho, Wo), var2 (B2, Ho, Wo) after the conv (``pin``: same input, same pixel reads var1; ``self_pairs``:
    k12 holds pixel pairs of each image with itself, (B, 1, …), and var2 is indexed by the image too).

    ``pairs``: k12 is (B1, B2, H, W, H, W) (every pixel pair) rather than (B1, B2, H, W) (matching pixels).
    Reference: ``rules.conv_rule`` and, with the activation, ``rules.activation_rule`` after it. Returns
    (k12, ntk) after the row(s) (ntk None when it was)."""
    b1, b2, h, w = k12.shape[0], k12.shape[1], k12.shape[2], k12.shape[3]
    geometry = _geometry(conv, h, w)
    ho, wo = geometry[:2]
    t = k12.dtype.type
    w2, bsq, fan, bias, standard, trained = _scalars(conv, t)
    shape = (b1, b2, ho, wo) + ((ho, wo) if pairs else ())
    k_in = cupy.ascontiguousarray(k12)
    t_in = k_in if ntk is None else cupy.ascontiguousarray(ntk)
    k_out = cupy.empty(shape, dtype=k12.dtype)      # C order, as the kernel writes (not empty_like)
    t_out = k_out if ntk is None else cupy.empty(shape, dtype=k12.dtype)
    v1 = k_in if activation is None else cupy.ascontiguousarray(var1)
    v2 = k_in if activation is None else cupy.ascontiguousarray(var2)
    name = "identity" if activation is None else _kernel_name(activation.dual)
    slope = t(0.0 if activation is None else activation.dual.slope)
    fn = _window_module(name).get_function(f"window_block<{_type_name(k12)}>")
    _launch(fn, int(numpy.prod(shape)),
            (k_in, t_in, v1, v2, k_out, t_out, cupy.int32(b1), cupy.int32(b2), cupy.int32(h), cupy.int32(w))
            + tuple(cupy.int32(g) for g in geometry) + (cupy.int32(pairs), w2, bsq, fan, bias, standard, trained,
                                                        cupy.int32(ntk is not None), cupy.int32(activation is not None),
                                                        slope, cupy.int32(pin), cupy.int32(self_pairs)))
    return k_out, None if ntk is None else t_out


def pool_block(pool, k12, ntk):
    """Average (sum) pooling of a pixel-pair tile (B1, B2, H, W, H, W) (CuPy RawKernel): every pixel pair of the
    two windows, divided by the row's ``pool_norm``. Reference: ``rules.avg_pool_rule``. Returns (k12, ntk)."""
    b1, b2, h, w = k12.shape[0], k12.shape[1], k12.shape[2], k12.shape[3]
    geometry = _geometry(pool, h, w)
    ho, wo = geometry[:2]
    shape = (b1, b2, ho, wo, ho, wo)
    k_in = cupy.ascontiguousarray(k12)
    t_in = k_in if ntk is None else cupy.ascontiguousarray(ntk)
    k_out = cupy.empty(shape, dtype=k12.dtype)
    t_out = k_out if ntk is None else cupy.empty(shape, dtype=k12.dtype)
    fn = _plain_module().get_function(f"pool_block<{_type_name(k12)}>")
    _launch(fn, int(numpy.prod(shape)),
            (k_in, t_in, k_out, t_out, cupy.int32(b1 * b2), cupy.int32(h), cupy.int32(w))
            + tuple(cupy.int32(g) for g in geometry)
            + (cupy.int32(rules.POOL_NORMS.index(pool.pool_norm)), cupy.int32(ntk is not None)))
    return k_out, None if ntk is None else t_out


def readout_block(k, mode: str):
    """The readout of a pixel-pair array (B1, B2, H, W, H, W) (CuPy RawKernel for the partial sums over the first
    pixel, or the matching pixels; the namespace sums the rest): 'gap' the mean of every pixel pair, 'gsp' their
    sum, 'flatten' the mean of matching pixels. Reference: ``rules.readout_rule``. Returns (B1, B2)."""
    b1, b2, pixels = k.shape[0], k.shape[1], k.shape[2] * k.shape[3]
    part = cupy.empty((b1, b2, pixels), dtype=k.dtype)
    fn = _plain_module().get_function(f"readout_block<{_type_name(k)}>")
    _launch(fn, part.size, (cupy.ascontiguousarray(k), part, cupy.int32(pixels), cupy.int32(mode == "flatten")))
    total = backend.get_namespace(part).sum(part, axis=2)
    return total / float({"gap": pixels * pixels, "gsp": 1, "flatten": pixels}[mode])


# ----------------------------------------------------------------------------------------------- rows and pairs
def _pair_variances(k12, v) -> bool:
    """``v`` holds same-input pixel pairs (., ., H, W, H, W) of a pixel-pair tile (``rules``' two layouts)."""
    return k12.ndim == 6 and v is not None and v.ndim == 6 and tuple(v.shape[2:]) == tuple(k12.shape[2:])


def _variances(k12, v, second: bool):
    """(images, kind, restore): the variances ``v`` as (B, 1, …) images, 'pairs' or 'pixels', and the function that
    lays out a result of new pixel dimensions (H', W') as ``v`` was laid out."""
    b = v.shape[1] if second else v.shape[0]
    if _pair_variances(k12, v):
        h, w = v.shape[2], v.shape[3]
        images = cupy.reshape(cupy.ascontiguousarray(v), (b, 1, h, w, h, w))

        def restore(a):
            return cupy.reshape(a, ((1, b) if second else (b, 1)) + a.shape[2:])

        return images, "pairs", restore
    if k12.ndim == 6:      # per pixel on a pixel-pair tile: rows (B1, 1, H, W, 1, 1), columns (1, B2, 1, 1, H, W)
        h, w = (v.shape[4], v.shape[5]) if second else (v.shape[2], v.shape[3])
    else:                  # matching pixels: (B1, 1, H, W), (1, B2, H, W)
        h, w = v.shape[2], v.shape[3]
    images = cupy.reshape(cupy.ascontiguousarray(v), (b, 1, h, w))

    def restore(a):
        ho, wo = a.shape[2], a.shape[3]
        if k12.ndim == 6:
            return cupy.reshape(a, (1, b, 1, 1, ho, wo) if second else (b, 1, ho, wo, 1, 1))
        return cupy.reshape(a, (1, b, ho, wo) if second else (b, 1, ho, wo))

    return images, "pixels", restore


def _pixel_views(images, kind: str):
    """(B, H, W) per-pixel variances, C order, of variance images (B, 1, H, W[, H, W])."""
    b, h, w = images.shape[0], images.shape[2], images.shape[3]
    if kind == "pixels":
        return cupy.reshape(images, (b, h, w))
    flat = cupy.reshape(images, (b, h * w * h * w))
    return cupy.reshape(cupy.ascontiguousarray(flat[:, ::h * w + 1]), (b, h, w))


_IDENTITY = rules.conv(0, 1.0, None, "ntk", 1, False)     # a 1 × 1 window, w = 1, no bias, frozen: K unchanged


def _conv_row(network, state, conv, pin, activation=None):
    """Replaces Conv (and the activation after it) in ``rules.run``: ``window_block`` on the tile and on its
    variances (per pixel, or pixel pairs of each image with itself); the variances of an activation by the
    reference rule (per pixel) or ``window_block`` on the pair variances themselves (pinned: θ = 0 at p = q)."""
    k12, k11, k22, ntk = state
    pairs = k12.ndim == 6
    variances = []
    for v, second in ((k11, False), (k22, True)):
        if v is None:
            variances.append(None)
            continue
        images, kind, restore = _variances(k12, v, second)
        images, _ = window_block(conv, images, None, kind == "pairs")
        variances.append((images, kind, restore))
    views = [None if v is None else _pixel_views(v[0], v[1]) for v in variances]
    k12, ntk = window_block(conv, k12, ntk, pairs, activation, *views, pin=pin)
    out = []
    for v, view in zip(variances, views):
        if v is None:
            out.append(None)
            continue
        images, kind, restore = v
        if activation is not None:
            if kind == "pairs":
                images, _ = window_block(_IDENTITY, images, None, True, activation, view, view, pin=True,
                                         self_pairs=True)
            else:
                images = activation_variance(activation, images)
        out.append(restore(images))
    return k12, out[0], out[1], ntk


def _conv_pair(network, state, conv, activation, pin):
    """Replaces [Conv, activation] in ``rules.run`` (``_conv_row`` with the dual fused in)."""
    return _conv_row(network, state, conv, pin, activation)


def _pool_row(network, state, pool, pin):
    """Replaces AvgPool/SumPool in ``rules.run`` on a pixel-pair tile: ``pool_block`` on the tile and on
    pixel-pair variances (per-pixel variances cannot be pooled: None, as ``rules.avg_pool_rule``)."""
    k12, k11, k22, ntk = state
    k12, ntk = pool_block(pool, k12, ntk)
    out = []
    for v, second in ((k11, False), (k22, True)):
        if not _pair_variances(state[0], v):
            out.append(None)
            continue
        images, _, restore = _variances(state[0], v, second)
        out.append(restore(pool_block(pool, images, None)[0]))
    return k12, out[0], out[1], ntk


def _readout_row(network, state, readout, pin):
    """Replaces the readout in ``rules.run`` on a pixel-pair tile (``readout_block`` on K, Θ and pixel-pair
    variances); matching-pixel tiles (a mean of H·W numbers) and per-pixel variances keep the reference rule."""
    k12, k11, k22, ntk = state
    mode = readout.readout or ("gap" if network.full_spatial else "flatten")
    if k12.ndim != 6:
        return rules.readout_rule(state, network.full_spatial, readout.readout)
    out = []
    for v, second in ((k11, False), (k22, True)):
        if v is None:
            out.append(None)
        elif _pair_variances(k12, v):
            images, _, _ = _variances(k12, v, second)
            r = readout_block(images, mode)
            out.append(cupy.reshape(r, (1, -1) if second else (-1, 1)))
        elif mode == "flatten":      # per-pixel variances: their mean
            b = v.shape[1] if second else v.shape[0]
            flat = cupy.reshape(cupy.ascontiguousarray(v), (b, -1))
            mean = backend.get_namespace(flat).mean(flat, axis=1)
            out.append(cupy.reshape(mean, (1, -1) if second else (-1, 1)))
        else:
            out.append(None)
    return (readout_block(k12, mode), out[0], out[1], None if ntk is None else readout_block(ntk, mode))


def _fc_pair(network, state, activation, dense, pin):
    """Replaces [activation, Dense] in ``rules.run`` on a vector tile: one fused kernel, variances by the
    reference rules (other tiles: the reference rules)."""
    k12, k11, k22, ntk = state
    if k12.ndim != 2:
        state = rules.apply(network, state, activation, pin)
        if pin:
            state = rules.pin_same_inputs(backend.get_namespace(k12), state, network.full_spatial)
        return rules.apply(network, state, dense, pin)
    k12, ntk_out = fc_block(activation, dense, k12, cupy.zeros_like(k12) if ntk is None else ntk, k11, k22)
    k11, k22 = (rules.affine_variance(activation_variance(activation, v), dense.w_std, dense.b_std)
                for v in (k11, k22))
    return k12, k11, k22, None if ntk is None else ntk_out


FUSED_DUALS = ("relu", "leaky_relu", "abs", "step", "identity", "erf")   # the duals written in _DUALS


def _closed_activation(first, second) -> bool:
    layer = first if first.kind == "activation" else second
    return layer.dual.name in FUSED_DUALS


def _zero_padded(layer) -> bool:
    return layer.padding != "CIRCULAR"


def replacements(network):
    """The rows and rule pairs this module fuses, for ``rules.run`` (any ``kernels.analytic.rules.Network``):
    [activation, Dense] on vector tiles and [Conv, activation] where the activation is one of FUSED_DUALS
    (quadrature and the other closed-form duals run the reference rules), Conv, AvgPool/SumPool (zero padding:
    'CIRCULAR' runs the reference rules) and the readout."""
    return {("activation", "dense"): (_closed_activation, _fc_pair),
            ("conv", "activation"): (lambda conv, act: _zero_padded(conv) and _closed_activation(conv, act),
                                     _conv_pair),
            "conv": (_zero_padded, _conv_row),
            "avg_pool": (_zero_padded, _pool_row),
            "readout": (lambda layer: True, _readout_row)}
