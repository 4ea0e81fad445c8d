"""Fused CPU loops (numba) for the analytic kernels: one compiled pass per image pair, all layers in cache.

Convolution with 'SAME' padding shifts both pixels of a pair by the same offset, so the pixel-pair
covariance K(p, q) splits by displacement δ = q − p: for each δ, the map p ↦ K(p, p + δ) over the pixels
where both p and p + δ lie in the image is a small 2-D image, and a layer is a 2-D box filter of it
(Σ_o K(p + o, p + o + δ) / f², zeros outside) followed by the affine rule and the activation's dual.
Every δ-image (at most H × W numbers) goes through all layers while it sits in L1 cache; 'gap' sums
the last layer over all (2H − 1)(2W − 1) displacements, 'flatten' needs δ = 0 only. The loop runs over
``LANES`` image pairs at once in its innermost dimension (one SIMD vector of float64), and in Python
threads (the compiled functions release the GIL) over chunks of pairs. Fully connected kernels: the Gram
product by BLAS, then one pass per layer over each tile row (the dual and the next Dense together).

θ = atan2(s, k12) is evaluated by ``_theta`` (branch-free so the loop vectorises): with t = min/max of
(s, |k12|) ∈ [0, 1], atan t = atan c + atan((t − c)/(1 + t·c)) for the nearest c ∈ {0, fl(tan π/8), 1}
leaves an argument |u| ≤ tan(π/16) ≈ 0.199, and the Taylor series atan u = Σ (−1)ᵏ u²ᵏ⁺¹/(2k + 1)
cut after k = 10 errs by < u²³/23 < 1e-18. Then θ = π/2 − atan t when s > |k12|, and π − θ when k12 < 0.

Closed-form activations only (ReLU family, step, identity, erf); quadrature duals use the reference
rule chain. Arithmetic is float64 whatever the input dtype (results are cast back by the caller).
Everything compiled lives in this one file on purpose: numba's on-disk cache (cache=True) is invalidated by
the timestamp of the file that defines a function, and the loops inline the helpers they call.
"""
from __future__ import annotations

import math

import numba
import numpy as np


LANES = 4                      # image pairs per SIMD vector (AVX2: 4 float64)
U = np.uint64                  # loop offsets: unsigned, so indexing needs no wraparound and vectorises
ABRELU, STEP, IDENTITY, ERF = 0, 1, 2, 3
# columns of the per-layer parameter tables that ``conv_pairs`` and ``fc_tile`` read (``_cpu_drivers`` fills them
# from the layer table): the dual's code and negative slope, then the affine rule's K ← SCALE·K + SHIFT and
# Θ ← SCALE·Θ + ON_NTK·K_new + ON_STD·(FAN·K_old + NTK_BIAS)
CODE, SLOPE, SCALE, SHIFT, FAN, ON_NTK, ON_STD, NTK_BIAS = range(8)
N_FIELDS = 8
ACTIVATION_CODES = {"relu": ABRELU, "leaky_relu": ABRELU, "abs": ABRELU, "step": STEP, "identity": IDENTITY,
                    "erf": ERF}

_TAN_PI_8 = math.sqrt(2.0) - 1.0          # c, rounded; its exact arctangent is used below
_ATAN_TAN_PI_8 = float(np.arctan(_TAN_PI_8))
_SPLIT_LOW = math.tan(math.pi / 16)
_SPLIT_HIGH = math.tan(3 * math.pi / 16)
_PI = math.pi
_SNAP = 1.0 - 16 * 2.0 ** -52   # float64: the loops compute in float64 whatever the input dtype
_A = tuple((-1.0) ** k / (2 * k + 3) for k in range(10))   # atan u = u − u·z·Σ_k _A[k]·zᵏ, z = u²
# NumPy's error model (no ZeroDivisionError check) lets LLVM vectorise the loops; 'contract' lets it fuse
# multiply-adds.
_JIT = dict(error_model="numpy", fastmath={"contract"})


@numba.njit(cache=True, inline="always", **_JIT)
def _clamped(k12, k11, k22):
    """(k12 clamped, s²): k12 clipped to ±b, b = √(k11·k22), and snapped to ±b within 16·eps, as
    ``kernels.analytic.duals.clamp_correlation`` (the correlation stays in [−1, 1]; a duplicate row's cross term is
    exactly its variance), and s² = k11·k22 − k12² as (b − |k12|)·(b + |k12|) ≥ 0. That form is exactly 0
    on a pinned diagonal (k12 = k11 = k22 gives b = k12 exactly) with or without fused multiply-adds, and it
    scales exactly when one input is multiplied by a power of two (b and k12 both scale as its square root)."""
    bound = math.sqrt(k11 * k22)
    a = abs(k12)
    a = bound if a > bound * _SNAP else a
    return (a if k12 >= 0.0 else -a), (bound - a) * (bound + a)


@numba.njit(cache=True, inline="always", **_JIT)
def _atan_unit(num, den):
    """atan(num / den) for 0 <= num <= den (den > 0, or both 0 giving 0)."""
    den = den if den > 0.0 else 1.0
    t_low = num < _SPLIT_LOW * den
    t_high = num >= _SPLIT_HIGH * den
    c = 0.0 if t_low else (1.0 if t_high else _TAN_PI_8)
    offset = 0.0 if t_low else (0.25 * _PI if t_high else _ATAN_TAN_PI_8)
    u = (num - c * den) / (den + c * num)
    # p(z) = Σ_{k<10} (−1)ᵏ zᵏ/(2k + 3) by Estrin's scheme (pairs, then z², z⁴): a short dependency chain
    z = u * u
    z2 = z * z
    z4 = z2 * z2
    p01 = _A[0] + z * _A[1]
    p23 = _A[2] + z * _A[3]
    p45 = _A[4] + z * _A[5]
    p67 = _A[6] + z * _A[7]
    p89 = _A[8] + z * _A[9]
    p = (p01 + z2 * p23) + z4 * ((p45 + z2 * p67) + z4 * p89)
    return offset + (u - u * z * p)


@numba.njit(cache=True, inline="always", **_JIT)
def _theta(s, k12):
    """atan2(s, k12) for s >= 0, in [0, π]."""
    a = abs(k12)
    swap = s > a
    num = a if swap else s
    den = s if swap else a
    th = _atan_unit(num, den)
    th = 0.5 * _PI - th if swap else th
    return _PI - th if k12 < 0.0 else th


@numba.njit(cache=True, inline="always", **_JIT)
def _abrelu(k12, k11, k22, c_same, c_cross):
    """(E[φφ], E[φ'φ']) of φ(x) = a·min(x, 0) + max(x, 0), with c_same = (1 + a²)/2π, c_cross = 2a/2π."""
    k12, s = _clamped(k12, k11, k22)
    s = math.sqrt(s)
    th = _theta(s, k12)
    dot = c_same * (_PI - th) + c_cross * th
    return (c_same - c_cross) * s + k12 * dot, dot


@numba.njit(cache=True, inline="always", **_JIT)
def _affine_rows(k, t, n, scale, shift, on_ntk, on_std, fan, bias, k_out, t_out):
    """The affine rule over n entries: K ← scale·K + shift, Θ ← scale·Θ + on_ntk·K_new + on_std·(fan·K + bias)
    (on_ntk, on_std: the layer's trained flag for the 'ntk' or the 'standard' parameterization, else 0)."""
    for m in range(n):
        kn = scale * k[m] + shift
        t_out[m] = scale * t[m] + on_ntk * kn + on_std * (fan * k[m] + bias)
        k_out[m] = kn


@numba.njit(cache=True, inline="always", **_JIT)
def _dual(code, slope, k12, k11, k22):
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]): the closed forms of ``kernels.analytic.duals``."""
    if code == ERF:
        k12, gap = _clamped(k12, k11, k22)
        r = 2.0 * k12 / (math.sqrt(1.0 + 2.0 * k11) * math.sqrt(1.0 + 2.0 * k22))
        r = min(max(r, -1.0), 1.0)
        return (2.0 / _PI) * math.asin(r), (4.0 / _PI) / math.sqrt(1.0 + 2.0 * (k11 + k22) + 4.0 * gap)
    if code == IDENTITY:
        return k12, 1.0
    if code == STEP:
        k12, s = _clamped(k12, k11, k22)
        return (_PI - _theta(math.sqrt(s), k12)) / (2.0 * _PI), 0.0
    return _abrelu(k12, k11, k22, (1.0 + slope * slope) / (2.0 * _PI), 2.0 * slope / (2.0 * _PI))


@numba.njit(cache=True, inline="always", **_JIT)
def _dual_row(code, slope, kc, tc, v1, o1, v2, o2, n, out_k, out_t, oo):
    """The dual over n entries: out_k[oo + m] ← E[φφ](kc[m], v1[o1 + m], v2[o2 + m]), out_t ← tc·E[φ'φ'].

    Offsets are uint64 (no negative-index wraparound, so the loop vectorises); ABReLU has its own loop.
    """
    if code == ABRELU:
        c_same = (1.0 + slope * slope) / (2.0 * _PI)
        c_cross = 2.0 * slope / (2.0 * _PI)
        for m in range(n):
            nn, dot = _abrelu(kc[m], v1[o1 + m], v2[o2 + m], c_same, c_cross)
            out_k[oo + m] = nn
            out_t[oo + m] = tc[m] * dot
    else:
        for m in range(n):
            nn, dot = _dual(code, slope, kc[m], v1[o1 + m], v2[o2 + m])
            out_k[oo + m] = nn
            out_t[oo + m] = tc[m] * dot


@numba.njit(cache=True, inline="always", **_JIT)
def _sum_shifted(src, start, step, count, n, dst, at):
    """dst[at + m] = Σ_{e < count} src[start + e·step + m] for m < n (uint64 offsets)."""
    for m in range(n):
        dst[at + m] = src[start + m]
    for e in range(U(1), count):
        off = start + e * step
        for m in range(n):
            dst[at + m] += src[off + m]


@numba.njit(cache=True, inline="always", **_JIT)
def _sum3(src, start, step, n, dst, at):
    """dst[at + m] = src[start + m] + src[start + step + m] + src[start + 2·step + m]: a 3-tap sum in one pass."""
    for m in range(n):
        dst[at + m] = src[start + m] + src[start + step + m] + src[start + U(2) * step + m]


@numba.njit(cache=True, inline="always", **_JIT)
def _abrelu_conv_row(hk, ht, top, stride, v1, o1, v2, o2, n, scale, shift, on_ntk, on_std, fan, bias,
                     c_same, c_cross, out_k, out_t, at, accumulate):
    """One output row of a 3×3 conv layer with an ABReLU dual, fused in one pass: vertical 3-tap sums of the
    horizontal sums hk, ht, the affine rule, the dual; written to (or, ``accumulate``, added into) out at ``at``."""
    for m in range(n):
        sk = hk[top + m] + hk[top + stride + m] + hk[top + U(2) * stride + m]
        st = ht[top + m] + ht[top + stride + m] + ht[top + U(2) * stride + m]
        kn = scale * sk + shift
        tn = scale * st + on_ntk * kn + on_std * (fan * sk + bias)
        nn, dot = _abrelu(kn, v1[o1 + m], v2[o2 + m], c_same, c_cross)
        if accumulate:
            out_k[at + m] += nn
            out_t[at + m] += tn * dot
        else:
            out_k[at + m] = nn
            out_t[at + m] = tn * dot


@numba.njit(cache=True, nogil=True, **_JIT)
def conv_pairs(a, b, var1, var2, ii, jj, same, full, want_ntk, filter_size, params, out_k, out_t):
    """Kernel of image pairs (a[ii[p]], b[jj[p]]) after the conv layers, averaged by the readout.

    a, b: (N, C, H, W) float64; var1, var2: (N, depth, H, W) pre-activation pixel variances; ``same``:
    a and b are the same images (pairs i == j get K(p, p) = variance exactly); ``full``: 'gap' (all
    displacements) or 'flatten' (δ = 0 only). ``params`` (depth, N_FIELDS): each [conv, activation] block's
    scalars (columns named by the constants above). Layer l: K ← SCALE·ΣK + SHIFT (SCALE = w²/f², SHIFT = b²),
    Θ ← SCALE·ΣΘ + ON_NTK·K_new + ON_STD·(FAN·ΣK + NTK_BIAS), FAN = n_in/f², then the dual (CODE, SLOPE).
    Writes the readout means of the last K and Θ over pixel pairs ('gap') or pixels ('flatten').
    """
    n_pairs = ii.shape[0]
    n_chan, h, w = a.shape[1], a.shape[2], a.shape[3]
    depth = var1.shape[1]
    lanes = U(LANES)
    r = U(filter_size // 2)
    f = U(filter_size)
    stride_max = (U(w) + U(2) * r) * lanes
    size_max = (U(h) + U(2) * r) * stride_max
    # per group of LANES pairs: images as [y, c, x, lane], variances as [layer, y, x, lane]
    la = np.empty(h * n_chan * w * LANES)
    lb = np.empty(h * n_chan * w * LANES)
    v1 = np.empty(max(depth, 1) * h * w * LANES)
    v2 = np.empty(max(depth, 1) * h * w * LANES)
    kk, tt = np.zeros(size_max), np.zeros(size_max)
    hk, ht = np.zeros(size_max), np.zeros(size_max)
    kc, tc = np.zeros(stride_max), np.zeros(stride_max)
    row_k, row_t = np.zeros(stride_max), np.zeros(stride_max)
    part_k, part_t = np.zeros(stride_max), np.zeros(stride_max)
    pin = np.zeros(LANES, dtype=np.bool_)
    span_y = h - 1 if full else 0
    span_x = w - 1 if full else 0
    inv_c = 1.0 / n_chan
    for g in range(0, n_pairs, LANES):
        for lane in range(LANES):
            p = min(g + lane, n_pairs - 1)
            i, j = ii[p], jj[p]
            pin[lane] = same and i == j
            for y in range(h):
                for ch in range(n_chan):
                    for x in range(w):
                        at = ((y * n_chan + ch) * w + x) * LANES + lane
                        la[at] = a[i, ch, y, x]
                        lb[at] = b[j, ch, y, x]
                for layer in range(depth):
                    for x in range(w):
                        at = ((layer * h + y) * w + x) * LANES + lane
                        v1[at] = var1[i, layer, y, x]
                        v2[at] = var2[j, layer, y, x]
        sum_k, sum_t = np.zeros(LANES), np.zeros(LANES)
        for dy in range(-span_y, span_y + 1):
            y0 = max(0, -dy)
            hd = U(min(h, h - dy) - y0)
            for dx in range(-span_x, span_x + 1):
                x0 = max(0, -dx)
                wd = U(min(w, w - dx) - x0)
                n_row = wd * lanes
                stride = (wd + U(2) * r) * lanes
                used = (hd + U(2) * r) * stride
                kk[:used] = 0.0
                hk[:used] = 0.0
                if want_ntk:
                    tt[:used] = 0.0
                    ht[:used] = 0.0
                for y in range(hd):                     # K⁰(p, p + δ) = Σ_c a[c, p]·b[c, p + δ] / C
                    dst = (y + r) * stride + r * lanes
                    for ch in range(n_chan):
                        oa = U(((y0 + y) * n_chan + ch) * w + x0) * lanes
                        ob = U(((y0 + y + dy) * n_chan + ch) * w + x0 + dx) * lanes
                        if ch == 0:
                            for m in range(n_row):
                                kk[dst + m] = la[oa + m] * lb[ob + m]
                        else:
                            for m in range(n_row):
                                kk[dst + m] += la[oa + m] * lb[ob + m]
                    for m in range(n_row):
                        kk[dst + m] *= inv_c
                part_k[:n_row] = 0.0
                part_t[:n_row] = 0.0
                for layer in range(depth):
                    code, slope = int(params[layer, CODE]), params[layer, SLOPE]
                    scale, shift, fan = params[layer, SCALE], params[layer, SHIFT], params[layer, FAN]
                    on_ntk, on_std, ntk_bias = params[layer, ON_NTK], params[layer, ON_STD], params[layer, NTK_BIAS]
                    c_same = (1.0 + slope * slope) / (2.0 * _PI)
                    c_cross = 2.0 * slope / (2.0 * _PI)
                    # the common case in one pass per row: 3×3 filter, ABReLU, δ ≠ 0 (no pinned entries)
                    fast = code == ABRELU and filter_size == 3 and not (dy == 0 and dx == 0)
                    for y in range(r, hd + r):          # horizontal sums of the interior rows
                        row = y * stride
                        if filter_size == 3:
                            _sum3(kk, row, lanes, n_row, hk, row + lanes)
                            if want_ntk and layer > 0:
                                _sum3(tt, row, lanes, n_row, ht, row + lanes)
                        else:
                            _sum_shifted(kk, row, lanes, f, n_row, hk, row + r * lanes)
                            if want_ntk and layer > 0:
                                _sum_shifted(tt, row, lanes, f, n_row, ht, row + r * lanes)
                    for y in range(hd):                 # vertical sums, affine rule, dual
                        top = y * stride + r * lanes
                        if fast:
                            o1 = U(((layer * h + y0 + y) * w + x0)) * lanes
                            o2 = U(((layer * h + y0 + y + dy) * w + x0 + dx)) * lanes
                            if layer == depth - 1:
                                _abrelu_conv_row(hk, ht, top, stride, v1, o1, v2, o2, n_row, scale, shift, on_ntk,
                                                 on_std, fan, ntk_bias, c_same, c_cross, part_k, part_t, U(0),
                                                 True)
                            else:
                                _abrelu_conv_row(hk, ht, top, stride, v1, o1, v2, o2, n_row, scale, shift, on_ntk,
                                                 on_std, fan, ntk_bias, c_same, c_cross, kk, tt,
                                                 (y + r) * stride + r * lanes, False)
                            continue
                        _sum_shifted(hk, top, stride, f, n_row, kc, U(0))
                        if want_ntk and layer > 0:
                            _sum_shifted(ht, top, stride, f, n_row, tc, U(0))
                        elif want_ntk:
                            tc[:n_row] = 0.0
                        _affine_rows(kc, tc, n_row, scale, shift, on_ntk, on_std, fan, ntk_bias, kc, tc)
                        o1 = U(((layer * h + y0 + y) * w + x0)) * lanes
                        o2 = U(((layer * h + y0 + y + dy) * w + x0 + dx)) * lanes
                        if dy == 0 and dx == 0:        # same image, same pixel: θ = 0 exactly
                            for x in range(wd):
                                for lane in range(LANES):
                                    if pin[lane]:
                                        kc[x * lanes + lane] = v1[o1 + x * lanes + lane]
                        if layer == depth - 1:
                            _dual_row(code, slope, kc, tc, v1, o1, v2, o2, n_row, row_k, row_t, U(0))
                            for m in range(n_row):
                                part_k[m] += row_k[m]
                                part_t[m] += row_t[m]
                        else:
                            out = (y + r) * stride + r * lanes
                            _dual_row(code, slope, kc, tc, v1, o1, v2, o2, n_row, kk, tt, out)
                if depth == 0:
                    for y in range(hd):
                        src = (y + r) * stride + r * lanes
                        for m in range(n_row):
                            part_k[m] += kk[src + m]
                for x in range(wd):
                    for lane in range(LANES):
                        sum_k[lane] += part_k[x * lanes + lane]
                        sum_t[lane] += part_t[x * lanes + lane]
        n_mean = (h * w) ** 2 if full else h * w
        for lane in range(LANES):
            if g + lane < n_pairs:
                out_k[g + lane] = sum_k[lane] / n_mean
                out_t[g + lane] = sum_t[lane] / n_mean


@numba.njit(cache=True, nogil=True, **_JIT)
def fc_tile(k, t, n_cols, v1, v2, pin, params):
    """FC chain on a tile, in place: k (B1·B2, row-major, ``n_cols`` = B2) holds K⁰ = x·x'/d and receives the NNGP, t the NTK.

    v1 (depth, B1), v2 (depth, B2): pre-activation variances of the rows and columns before each hidden
    activation; ``pin``: a same-input diagonal tile (entry (m, m) gets K = variance exactly). Layer l
    (0 … depth, the last is the readout; ``params`` (depth + 1, N_FIELDS), columns named above): the dual
    (CODE, SLOPE of row l) before every layer but the first, then K ← SCALE·K + SHIFT (w², b²) and
    Θ ← SCALE·Θ·E[φ'φ'] + ON_NTK·K_new + ON_STD·(FAN·K_old + NTK_BIAS).
    """
    depth = v1.shape[0]
    n_rows = k.shape[0] // n_cols
    n_cols = U(n_cols)
    kr, tr = np.empty(n_cols), np.zeros(n_cols)
    nn, dot_t = np.empty(n_cols), np.empty(n_cols)
    rowvar = np.empty(n_cols)
    for i in range(n_rows):
        base = U(i) * n_cols
        for m in range(n_cols):
            kr[m] = k[base + m]
        for layer in range(depth + 1):
            code, slope = int(params[layer, CODE]), params[layer, SLOPE]
            w2, b2, fan = params[layer, SCALE], params[layer, SHIFT], params[layer, FAN]
            on_ntk, on_std, ntk_bias = params[layer, ON_NTK], params[layer, ON_STD], params[layer, NTK_BIAS]
            c_same = (1.0 + slope * slope) / (2.0 * _PI)
            c_cross = 2.0 * slope / (2.0 * _PI)
            if layer > 0 and code == ABRELU:       # dual and Dense fused in one pass over the row
                vi = v1[layer - 1, i]
                if pin:
                    kr[i] = vi
                vcol = v2[layer - 1]
                for m in range(n_cols):
                    nn_m, dot = _abrelu(kr[m], vi, vcol[m], c_same, c_cross)
                    kn = w2 * nn_m + b2
                    tr[m] = w2 * (tr[m] * dot) + on_ntk * kn + on_std * (fan * nn_m + ntk_bias)
                    kr[m] = kn
                continue
            if layer > 0:
                for m in range(n_cols):
                    rowvar[m] = v1[layer - 1, i]
                if pin:
                    kr[i] = v1[layer - 1, i]
                _dual_row(code, slope, kr, tr, rowvar, U(0), v2[layer - 1], U(0), n_cols, nn, dot_t, U(0))
            else:
                for m in range(n_cols):
                    nn[m] = kr[m]
                    dot_t[m] = 0.0
            _affine_rows(nn, dot_t, n_cols, w2, b2, on_ntk, on_std, fan, ntk_bias, kr, tr)
        for m in range(n_cols):
            k[base + m] = kr[m]
            t[base + m] = tr[m]


# ----------------------------------------------------------------------------------------------- rates
# The arithmetic the loops above are made of, one operation kind per loop, for measuring this machine's rates
# (kernels.analytic.rates: the yardstick of the CPU floor benchmark).
_CHAIN = 8          # multiply-adds per element in the add/mul loop


@numba.njit(cache=True, **_JIT)
def multiply_add_loop(a, b, c, out, reps):
    for _ in range(reps):
        for m in range(a.shape[0]):
            x, y, z = a[m], b[m], c[m]
            for _ in range(_CHAIN):
                x = x * y + z
            out[m] = x


@numba.njit(cache=True, **_JIT)
def sqrt_loop(a, out, reps):
    for _ in range(reps):
        for m in range(a.shape[0]):
            out[m] = math.sqrt(a[m])


@numba.njit(cache=True, **_JIT)
def theta_loop(s, k, out, reps):
    for _ in range(reps):
        for m in range(s.shape[0]):
            out[m] = _theta(s[m], k[m])
