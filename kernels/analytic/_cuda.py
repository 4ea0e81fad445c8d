"""CuPy kernels for the analytic kernels on the GPU (closed-form activations only).

* ``fc_block``: one fused ElementwiseKernel per hidden layer — the activation's dual followed by the next
  Dense rule — so a layer reads (k12, Θ) once and writes them once.
* ``activation_variance``: the variances after an activation, ``dual(v, v, v)`` (one ElementwiseKernel).
* ``conv_block``: one RawKernel per conv layer over a tile of image pairs (B1 × B2 pairs, all pixel pairs):
  patch sum of K and Θ, the affine rule, then the activation's dual. With ``x2=None`` only tiles on or
  above the diagonal are launched (K(x, z) = K(z, x)).

``replacements(network)`` offers them to ``kernels.analytic.rules.run`` in place of the rule pairs [activation,
Dense] and [Conv, activation] whose activation has a closed form; they read the dual activation and the
hyperparameters (scales, parameterization, fan-in, filter size, trained flag) from the two layers of the table
they replace. Each is checked against its NumPy reference — ``dense_rule(activation_rule(state))`` and
``activation_rule(conv_rule(state))`` in ``kernels.analytic.rules`` — on a GPU by tests/gpu/test_analytic_gpu.py, and
without one by tests/cuda_host (every source compiled by NVRTC, and executed on the host through this module's
launch code).

θ = 0 exactly on a pinned diagonal. There k12 = k11 = k22 bitwise (the same variance entry), so
s = k11·k22 − k12² must be exactly 0. NVRTC contracts ``a*b - c*d`` into an FMA by default
(``--fmad=true``), which computes fma(−k12, k12, round(k11·k22)): the rounding error of k11·k22, about
1e-16·k², whose square root gives θ ≈ 1e-8 and NTK errors ≈ 1e-9. The products are therefore written
``__dmul_rn`` / ``__fmul_rn``, which "will never be merged into a single multiply-add instruction" (CUDA
Math API reference of both intrinsics): two identical correctly rounded products, whose difference is 0 (the
rest of the kernel keeps its FMAs).

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
last bit of a few NTK factors (k11·k22 − k12² is now contracted into an FMA without sharing k11·k22).
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

from kernels.analytic import rules

# Dual activations in CUDA: the same formulas as kernels.analytic.duals (closed forms only), evaluated on
# k11·4^(−m1), k22·4^(−m2), k12·2^(−m1−m2) (exact power-of-two rescaling, module docstring).
_DUALS = {
    "abrelu": """
    int m1 = lazykit_half_exponent(k11), m2 = lazykit_half_exponent(k22);
    k11 = ldexp(k11, -2 * m1); k22 = ldexp(k22, -2 * m2); k12 = ldexp(k12, -(m1 + m2));
    T bound = sqrt(lazykit_mul_rn(k11, k22));
    T near = bound * (T(1) - T(16) * (sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16)));
    k12 = k12 > near ? bound : (k12 < -near ? -bound : k12);
    T s = lazykit_mul_rn(k11, k22) - lazykit_mul_rn(k12, k12);
    s = s > T(0) ? sqrt(s) : T(0);
    T th = atan2(s, k12);
    T cs = (T(1) + slope * slope) / T(2 * LAZYKIT_PI), cc = T(2) * slope / T(2 * LAZYKIT_PI);
    dot = cs * (T(LAZYKIT_PI) - th) + cc * th;
    nngp = ldexp((cs - cc) * s + k12 * dot, m1 + m2);   // degree one in k12, √k11, √k22""",
    "step": """
    int m1 = lazykit_half_exponent(k11), m2 = lazykit_half_exponent(k22);
    k11 = ldexp(k11, -2 * m1); k22 = ldexp(k22, -2 * m2); k12 = ldexp(k12, -(m1 + m2));
    T bound = sqrt(lazykit_mul_rn(k11, k22));
    T near = bound * (T(1) - T(16) * (sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16)));
    k12 = k12 > near ? bound : (k12 < -near ? -bound : k12);
    T s = lazykit_mul_rn(k11, k22) - lazykit_mul_rn(k12, k12);
    s = s > T(0) ? sqrt(s) : T(0);
    nngp = (T(LAZYKIT_PI) - atan2(s, k12)) / T(2 * LAZYKIT_PI);   // degree zero: nothing to restore
    dot = T(0);""",
    "identity": """
    nngp = k12;
    dot = T(1);""",
    "erf": """
    int m1 = lazykit_half_exponent(k11), m2 = lazykit_half_exponent(k22);
    T bound = ldexp(sqrt(ldexp(k11, -2 * m1) * ldexp(k22, -2 * m2)), m1 + m2);   // √(k11·k22), no underflow
    T near = bound * (T(1) - T(16) * (sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16)));
    k12 = k12 > near ? bound : (k12 < -near ? -bound : k12);
    T gap = k11 * k22 - k12 * k12;     // may flush to 0 only where it is below FLT_MIN, beside 1 in dot
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


_CONV_SOURCE = r"""
template <typename T>
__global__ void conv_block(const T* k12, const T* ntk, const T* var1, const T* var2, T* k12_out, T* ntk_out,
                           int b1, int b2, int h, int w, int r, T slope, T w2, T b2sq, T fan_in, T ntk_bias,
                           int standard, T trained, int pin, long long total) {
    long long idx = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (idx >= total) return;
    // layout (B1, B2, H, W, H, W): idx -> (i, j, p1 = (y1, x1), p2 = (y2, x2))
    int x2 = idx % w; long long rest = idx / w;
    int y2 = rest % h; rest /= h;
    int x1 = rest % w; rest /= w;
    int y1 = rest % h; rest /= h;
    int j = rest % b2; int i = rest / b2;
    long long pair = ((long long)i * b2 + j) * h * w * h * w;
    T sk = 0, st = 0;
    for (int dy = -r; dy <= r; ++dy) {
        int u1 = y1 + dy, u2 = y2 + dy;
        if (u1 < 0 || u1 >= h || u2 < 0 || u2 >= h) continue;
        for (int dx = -r; dx <= r; ++dx) {
            int v1 = x1 + dx, v2 = x2 + dx;
            if (v1 < 0 || v1 >= w || v2 < 0 || v2 >= w) continue;
            long long at = pair + (((long long)u1 * w + v1) * h + u2) * w + v2;
            sk += k12[at];
            st += ntk[at];
        }
    }
    T area = T((2 * r + 1) * (2 * r + 1));
    sk /= area; st /= area;
    T kc = w2 * sk + b2sq;
    T tc = w2 * st + trained * (standard ? fan_in * sk + ntk_bias : kc);
    T k11 = var1[((long long)i * h + y1) * w + x1];
    T k22 = var2[((long long)j * h + y2) * w + x2];
    if (pin && i == j && y1 == y2 && x1 == x2) kc = k11;   // same image, same pixel: θ = 0 exactly
    T n, f;
    dual(kc, k11, k22, slope, n, f);
    k12_out[idx] = n;
    ntk_out[idx] = tc * f;
}
"""


@functools.lru_cache(maxsize=None)
def _conv_module(name: str):
    return cupy.RawModule(code=_dual_source(name) + _CONV_SOURCE, options=("--std=c++14",),
                          name_expressions=("conv_block<float>", "conv_block<double>"))


# every compiled-kernel cache of this module (the host tests clear them when they swap ``cupy``)
COMPILED = (_fc_kernel, _variance_kernel, _conv_module)


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


def conv_block(conv, activation, k12, ntk, var1, var2, pin: bool):
    """Fused patch sum + affine + activation over a (B1, B2, H, W, H, W) tile (CuPy RawKernel).

    ``conv`` and ``activation`` are the two layer rows replaced; ``var1`` (B1, H, W) and ``var2`` (B2, H, W)
    the pre-activation variances after the conv layer; ``pin`` sets same-image, same-pixel entries to them
    before the activation. Reference: ``rules.activation_rule(rules.conv_rule(state))``.
    """
    b1, b2, h, w = k12.shape[0], k12.shape[1], k12.shape[2], k12.shape[3]
    t = k12.dtype.type
    w2, bsq, fan, bias, standard, trained = _scalars(conv, t)
    fn = _conv_module(_kernel_name(activation.dual)).get_function(
        f"conv_block<{'double' if k12.dtype == cupy.float64 else 'float'}>")
    k_out = cupy.empty(k12.shape, dtype=k12.dtype)   # C order, as the kernel writes (not empty_like)
    t_out = cupy.empty(ntk.shape, dtype=ntk.dtype)
    total = k12.size
    threads = 256
    fn(((total + threads - 1) // threads,), (threads,),
       (cupy.ascontiguousarray(k12), cupy.ascontiguousarray(ntk), cupy.ascontiguousarray(var1),
        cupy.ascontiguousarray(var2), k_out, t_out, cupy.int32(b1), cupy.int32(b2), cupy.int32(h),
        cupy.int32(w), cupy.int32(conv.filter_size // 2), t(activation.dual.slope), w2, bsq, fan, bias,
        standard, trained, cupy.int32(int(pin)), cupy.int64(total)))
    return k_out, t_out


# ----------------------------------------------------------------------------------------------- rule pairs
def _fc_pair(network, state, activation, dense, pin):
    """Replaces [activation, Dense] in ``rules.run``: one fused kernel, diagonals by the reference rules."""
    k12, k11, k22, ntk = state
    k12, ntk_out = fc_block(activation, dense, k12, cupy.zeros_like(k12) if ntk is None else ntk, k11, k22)
    k11, k22 = (rules.affine_variance(activation_variance(activation, v), dense.w_std, dense.b_std)
                for v in (k11, k22))
    return k12, k11, k22, None if ntk is None else ntk_out


def _conv_pair(network, state, conv, activation, pin):
    """Replaces [Conv, activation] in ``rules.run`` on a full pixel-pair tile: one RawKernel per layer."""
    k12, k11, k22, ntk = state
    # the kernel indexes its inputs and outputs in C order, and conv_block allocates its outputs like its inputs:
    # a tile's first k12 is a permuted view, so hand it over contiguous
    k12 = cupy.ascontiguousarray(k12)
    ntk_in = cupy.zeros_like(k12) if ntk is None else cupy.ascontiguousarray(ntk)
    b1, b2, h, w = k12.shape[0], k12.shape[1], k12.shape[2], k12.shape[3]
    k11, k22 = rules.conv_variances(k11, k22, conv.filter_size, True)
    k11, k22 = (rules.affine_variance(v, conv.w_std, conv.b_std) for v in (k11, k22))
    k12, ntk_out = conv_block(conv, activation, k12, ntk_in, cupy.reshape(k11, (b1, h, w)),
                              cupy.reshape(k22, (b2, h, w)), pin)
    k11, k22 = (activation_variance(activation, v) for v in (k11, k22))
    return k12, k11, k22, None if ntk is None else ntk_out


FUSED_DUALS = ("relu", "leaky_relu", "abs", "step", "identity", "erf")   # the duals written in _DUALS


def _closed_activation(first, second) -> bool:
    layer = first if first.kind == "activation" else second
    return layer.dual.name in FUSED_DUALS


def replacements(network):
    """The rule pairs this module fuses for ``network`` (a ``kernels.analytic.rules.Network``), for ``rules.run``:
    [activation, Dense] in fully connected networks, [Conv, activation] in convolutional ones on full pixel-pair
    tiles ('gap'), each where its activation is one of FUSED_DUALS (quadrature and the other closed-form duals run
    the reference rules). Only the shapes ``rules.fused_shape`` names are fused; every other network runs the
    reference rules."""
    shape = rules.fused_shape(network)
    if shape == "fc":
        return {("activation", "dense"): (_closed_activation, _fc_pair)}
    if shape == "conv" and network.full_spatial:
        return {("conv", "activation"): (_closed_activation, _conv_pair)}
    return {}
