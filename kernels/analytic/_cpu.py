"""Fused CPU loops (numba) for the analytic kernels.

Images (``image_pairs``, the *image program* below): a convolution moves both pixels of a pair together, so the
pixel-pair covariance K(p, q) splits by displacement δ = q − p. For each δ the map p ↦ K(p, p + δ) over the
pixels where both p and p + δ lie in the image is a small 2-D image (at most H × W numbers), and a stride-1
convolution maps it to itself: a 2-D window sum of it (zeros outside), then the affine rule and the activation's
dual. Every δ-image goes through all such layers while it sits in cache; pooling and strided convolutions, which
mix displacements, add each δ-image into a buffer of the next resolution; 'gap' sums the last layer over all
(2H − 1)(2W − 1) displacements, 'flatten' needs δ = 0 only. The loop runs over ``LANES`` image pairs at once in
its innermost dimension (one SIMD vector of float64), and in Python threads (the compiled functions release the
GIL) over chunks of pairs. Fully connected kernels (``fc_tile``): the Gram product by BLAS, then one pass per layer
over each tile row (the dual and the next Dense together).

θ = atan2(s, k12) is evaluated by ``_theta`` (branch-free so the loop vectorises): with t = min/max of
(s, |k12|) ∈ [0, 1], atan t = atan c + atan((t − c)/(1 + t·c)) for the nearest c ∈ {0, fl(tan π/8), 1}
leaves an argument |u| ≤ tan(π/16) ≈ 0.199, and the Taylor series atan u = Σ (−1)ᵏ u²ᵏ⁺¹/(2k + 1)
cut after k = 10 errs by < u²³/23 < 1e-18. Then θ = π/2 − atan t when s > |k12|, and π − θ when k12 < 0.

Closed-form activations only (``ACTIVATION_CODES``: the ReLU family with neural-tangents' ABRelu, step, identity,
erf with its scaled form a·erf(b·x) + c); other duals use the reference rule chain. Arithmetic is float64
whatever the input dtype (results are cast back by the caller).
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
# columns of the per-layer parameter tables that ``fc_tile`` and ``image_pairs`` read (``_cpu_drivers`` fills them
# from the layer table): the dual's code and constants (ABRELU: c₊ = C_SAME, c₋ = C_CROSS; ERF: φ = a·erf(b·x) + c
# as PRE = b², POST = a², OFFSET = c²), then the affine rule's K ← SCALE·K + SHIFT and
# Θ ← SCALE·Θ + ON_NTK·K_new + ON_STD·(FAN·K_old + NTK_BIAS)
CODE, C_SAME, C_CROSS, PRE, POST, OFFSET, SCALE, SHIFT, FAN, ON_NTK, ON_STD, NTK_BIAS = range(12)
N_FIELDS = 12
ACTIVATION_CODES = {"relu": ABRELU, "leaky_relu": ABRELU, "abs": ABRELU, "abrelu": ABRELU, "step": STEP,
                    "identity": IDENTITY, "erf": ERF, "scaled_erf": ERF}

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
def _dual(code, c_same, c_cross, pre, post, offset, k12, k11, k22):
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]): the closed forms of ``kernels.analytic.duals`` (constants: the table's
    columns C_SAME … OFFSET; for ERF, φ = a·erf(b·x) + c gives K ← a²·erf_dual(b²K) + c², E[φ'φ'] ←
    a²b²·erf_ntk(b²K), exact for plain erf at (1, 1, 0))."""
    if code == ERF:
        k12, gap = _clamped(pre * k12, pre * k11, pre * k22)
        k11 = pre * k11
        k22 = pre * k22
        r = 2.0 * k12 / (math.sqrt(1.0 + 2.0 * k11) * math.sqrt(1.0 + 2.0 * k22))
        r = min(max(r, -1.0), 1.0)
        return (post * (2.0 / _PI) * math.asin(r) + offset,
                post * pre * ((4.0 / _PI) / math.sqrt(1.0 + 2.0 * (k11 + k22) + 4.0 * gap)))
    if code == IDENTITY:
        return k12, 1.0
    if code == STEP:                            # φ = 1[x > 0]: 0 where a variance is 0 (duals._step_nngp)
        k12, s = _clamped(k12, k11, k22)
        return ((_PI - _theta(math.sqrt(s), k12)) / (2.0 * _PI) if k11 * k22 > 0.0 else 0.0), 0.0
    return _abrelu(k12, k11, k22, c_same, c_cross)


@numba.njit(cache=True, inline="always", **_JIT)
def _dual_row(code, c_same, c_cross, pre, post, offset, kc, tc, v1, o1, v2, o2, n, out_k, out_t, oo):
    """The dual over n entries: out_k[oo + m] ← E[φφ](kc[m], v1[o1 + m], v2[o2 + m]), out_t ← tc·E[φ'φ'].

    Offsets are uint64 (no negative-index wraparound, so the loop vectorises); ABReLU has its own loop.
    """
    if code == ABRELU:
        for m in range(n):
            nn, dot = _abrelu(kc[m], v1[o1 + m], v2[o2 + m], c_same, c_cross)
            out_k[oo + m] = nn
            out_t[oo + m] = tc[m] * dot
    else:
        for m in range(n):
            nn, dot = _dual(code, c_same, c_cross, pre, post, offset, kc[m], v1[o1 + m], v2[o2 + m])
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


@numba.njit(cache=True, nogil=True, **_JIT)
def fc_tile(k, t, n_cols, v1, v2, pin, params):
    """FC chain on a tile, in place: k (B1·B2, row-major, ``n_cols`` = B2) holds K⁰ = x·x'/d and receives the NNGP, t the NTK.

    v1 (depth, B1), v2 (depth, B2): pre-activation variances of the rows and columns before each hidden
    activation; ``pin``: a same-input diagonal tile (entry (m, m) gets K = variance exactly). Layer l
    (0 … depth, the last is the readout; ``params`` (depth + 1, N_FIELDS), columns named above): the dual
    (CODE … OFFSET of row l) before every layer but the first, then K ← SCALE·K + SHIFT (w², b²) and
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
            code, c_same, c_cross = int(params[layer, CODE]), params[layer, C_SAME], params[layer, C_CROSS]
            pre, post, offset = params[layer, PRE], params[layer, POST], params[layer, OFFSET]
            w2, b2, fan = params[layer, SCALE], params[layer, SHIFT], params[layer, FAN]
            on_ntk, on_std, ntk_bias = params[layer, ON_NTK], params[layer, ON_STD], params[layer, NTK_BIAS]
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
                _dual_row(code, c_same, c_cross, pre, post, offset, kr, tr, rowvar, U(0), v2[layer - 1], U(0),
                          n_cols, nn, dot_t, U(0))
            else:
                for m in range(n_cols):
                    nn[m] = kr[m]
                    dot_t[m] = 0.0
            _affine_rows(nn, dot_t, n_cols, w2, b2, on_ntk, on_std, fan, ntk_bias, kr, tr)
        for m in range(n_cols):
            k[base + m] = kr[m]
            t[base + m] = tr[m]


# ----------------------------------------------------------------------------------------------- image program
# ``image_pairs`` runs a network on image pairs as a small program (``kernels.analytic._image_program`` compiles the
# layer table into it). A convolution moves both pixels of a pair together, so the pixel-pair covariance splits
# by displacement δ = q − p into δ-images p ↦ K(p, p + δ) (the pixels where p and p + δ both lie in the image),
# and a stride-1 convolution, an activation or an affine layer maps each δ-image to itself: a *phase* runs such
# layers on one δ-image after the other while it sits in cache, in slots (working δ-images with a zero frame, so a
# padded window sum reads zeros outside). Layers that mix displacements (pooling, strided convolutions) end a
# phase: each δ-image is scattered into a *buffer* holding every δ-image of the next resolution, which the next
# phase loads. Same-image pairs run first (``same``) and record, at every activation, their δ = 0 image: the
# pixel variances that the cross pairs read (after pooling they mix pixels, so they cannot come from a per-pixel
# chain). Op codes and the integer columns of an op row:
INPUT, CONV, AFFINE, ACT, COPY, ADD, DROPOUT, SCATTER, LOAD, READOUT = range(10)
OP, SRC, DST, NY, NX, MY, MX, FY, FX, LY, LX, SY, SX, ACT_INDEX, THETA_ZERO, MAP_Y, MAP_X, MODE = range(18)
N_INTS = 18


@numba.njit(cache=True, inline="always", **_JIT)
def _frame(buf, at, rs, h, w, margin):
    """Zero the ``margin`` pixels left and right of each of the h rows of the w-pixel region at ``at`` (a padded
    window sum reads them)."""
    lanes = U(LANES)
    width = margin * lanes
    for y in range(h):
        row = at + U(y) * rs
        for m in range(width):
            buf[row - width + m] = 0.0
            buf[row + U(w) * lanes + m] = 0.0


@numba.njit(cache=True, inline="always", **_JIT)
def _region(n_y, n_x, dy, dx):
    """(h, w, y0, x0): size and first pixel of the δ-image of displacement (dy, dx) at resolution n_y × n_x."""
    return n_y - abs(dy), n_x - abs(dx), max(0, -dy), max(0, -dx)


@numba.njit(cache=True, nogil=True, **_JIT)
def _op_input(la, lb, n_chan, h_img, w_img, dy, dx, dst_k, at, rs, margin):
    """K⁰(p, p + δ) = Σ_c a[c, p]·b[c, p + δ] / C into the slot at ``at``."""
    lanes = U(LANES)
    h, w, y0, x0 = _region(h_img, w_img, dy, dx)
    n_row = U(w) * lanes
    inv_c = 1.0 / n_chan
    step = U(w_img) * lanes                     # from one channel's row to the next
    first = min(n_chan, 3)                      # up to three channels in one pass (RGB: the whole sum)
    scale = inv_c if n_chan <= 3 else 1.0
    for y in range(h):
        dst = at + U(y) * rs
        oa = U((y0 + y) * n_chan * w_img + x0) * lanes
        ob = U((y0 + y + dy) * n_chan * w_img + x0 + dx) * lanes
        if first == 3:
            for m in range(n_row):
                dst_k[dst + m] = (la[oa + m] * lb[ob + m] + la[oa + step + m] * lb[ob + step + m]
                                  + la[oa + U(2) * step + m] * lb[ob + U(2) * step + m]) * scale
        elif first == 2:
            for m in range(n_row):
                dst_k[dst + m] = (la[oa + m] * lb[ob + m] + la[oa + step + m] * lb[ob + step + m]) * scale
        else:
            for m in range(n_row):
                dst_k[dst + m] = la[oa + m] * lb[ob + m] * scale
        if n_chan > 3:
            for ch in range(3, n_chan):
                c = U(ch) * step
                for m in range(n_row):
                    dst_k[dst + m] += la[oa + c + m] * lb[ob + c + m]
            for m in range(n_row):
                dst_k[dst + m] *= inv_c
    _frame(dst_k, at, rs, h, w, margin)


@numba.njit(cache=True, inline="always", **_JIT)
def _finish_rows(kc, tc, n, prm, affine, act, with_t, theta_zero, record, v1, v2, o1, o2, out_k, out_t, at):
    """The end of a conv or affine op on one row of sums kc (and tc): the affine rule (``affine``), the dual
    (``act``: the activation's variances at v1[o1 …], v2[o2 …]; ``record``: a same-image δ = 0 row, whose values
    are those variances), written to out at ``at``."""
    scale, shift, fan = prm[SCALE], prm[SHIFT], prm[FAN]
    on_ntk, on_std, ntk_bias = prm[ON_NTK], prm[ON_STD], prm[NTK_BIAS]
    if affine:
        if with_t and theta_zero:
            for m in range(n):
                kn = scale * kc[m] + shift
                tc[m] = on_ntk * kn + on_std * (fan * kc[m] + ntk_bias)
                kc[m] = kn
        elif with_t:
            for m in range(n):
                kn = scale * kc[m] + shift
                tc[m] = scale * tc[m] + on_ntk * kn + on_std * (fan * kc[m] + ntk_bias)
                kc[m] = kn
        else:
            for m in range(n):
                kc[m] = scale * kc[m] + shift
    elif with_t and theta_zero:
        for m in range(n):
            tc[m] = 0.0
    if not act:
        for m in range(n):
            out_k[at + m] = kc[m]
        if with_t:
            for m in range(n):
                out_t[at + m] = tc[m]
        return
    if record:
        for m in range(n):
            v1[o1 + m] = kc[m]
            v2[o1 + m] = kc[m]
    _dual_row(int(prm[CODE]), prm[C_SAME], prm[C_CROSS], prm[PRE], prm[POST], prm[OFFSET], kc, tc, v1, o1, v2, o2,
              n, out_k, out_t, at)


@numba.njit(cache=True, nogil=True, **_JIT)
def _op_conv(op, prm, src_k, src_t, at_src, dst_k, dst_t, at_dst, rs, origin, hk, ht, kc, tc, dy, dx, with_t,
             record, v1, v2, voff, margin):
    """A stride-1 convolution of the δ-image (window FY × FX, low pads LY, LX; the zero frame supplies the
    padding), then the affine rule and, when ACT_INDEX ≥ 0, the dual: horizontal window sums of every input row
    into hk (ht), vertical sums of them per output row."""
    lanes = U(LANES)
    h_in, w_in, y0, x0 = _region(op[NY], op[NX], dy, dx)
    h_out, w_out, _, _ = _region(op[MY], op[MX], dy, dx)
    if h_out <= 0 or w_out <= 0:
        return
    fy, fx, ly, lx = op[FY], op[FX], op[LY], op[LX]
    theta_zero = op[THETA_ZERO] != 0
    sum_t = with_t and not theta_zero
    n_row = U(w_out) * lanes
    shift = U(lx) * lanes
    for y in range(h_in):                       # horizontal sums (columns −lx … read the zero frame)
        row = U(y) * rs
        if fx == 3:
            _sum3(src_k, at_src + row - shift, lanes, n_row, hk, origin + row)
            if sum_t:
                _sum3(src_t, at_src + row - shift, lanes, n_row, ht, origin + row)
        else:
            _sum_shifted(src_k, at_src + row - shift, lanes, U(fx), n_row, hk, origin + row)
            if sum_t:
                _sum_shifted(src_t, at_src + row - shift, lanes, U(fx), n_row, ht, origin + row)
    hy = h_out - h_in - ly + fy - 1             # rows below and above the input that the vertical sums read
    for y in range(-ly, h_in + hy):
        if 0 <= y < h_in:
            continue
        row = U(int(origin) + y * int(rs))
        for m in range(n_row):
            hk[row + m] = 0.0
        if sum_t:
            for m in range(n_row):
                ht[row + m] = 0.0
    act = op[ACT_INDEX] >= 0
    code = int(prm[CODE])
    # the common case in one pass per row: 3-row window, ABReLU, δ ≠ 0; δ = 0 (where same-image pairs record
    # their variances) takes the general path in every pair, so a duplicate image's cross pair rounds as its
    # same-image pair does and the two agree bitwise
    fast = act and code == ABRELU and fy == 3 and not (dy == 0 and dx == 0)
    scale, shift_k, fan = prm[SCALE], prm[SHIFT], prm[FAN]
    on_ntk, on_std, ntk_bias = prm[ON_NTK], prm[ON_STD], prm[NTK_BIAS]
    c_same, c_cross = prm[C_SAME], prm[C_CROSS]
    step = U(rs)
    rs_i, origin_i = int(rs), int(origin)
    for y in range(h_out):
        top = U(origin_i + (y - ly) * rs_i)
        out = at_dst + U(y) * rs
        o1 = voff + U((y0 + y) * op[MX] + x0) * lanes
        o2 = voff + U((y0 + y + dy) * op[MX] + x0 + dx) * lanes
        if fast and sum_t:
            for m in range(n_row):
                sk = hk[top + m] + hk[top + step + m] + hk[top + U(2) * step + m]
                st = ht[top + m] + ht[top + step + m] + ht[top + U(2) * step + m]
                kn = scale * sk + shift_k
                tn = scale * st + on_ntk * kn + on_std * (fan * sk + ntk_bias)
                nn, dot = _abrelu(kn, v1[o1 + m], v2[o2 + m], c_same, c_cross)
                dst_k[out + m] = nn
                dst_t[out + m] = tn * dot
            continue
        if fast:
            for m in range(n_row):
                sk = hk[top + m] + hk[top + step + m] + hk[top + U(2) * step + m]
                kn = scale * sk + shift_k
                tn = on_ntk * kn + on_std * (fan * sk + ntk_bias)
                nn, dot = _abrelu(kn, v1[o1 + m], v2[o2 + m], c_same, c_cross)
                dst_k[out + m] = nn
                dst_t[out + m] = tn * dot
            continue
        if fy == 3:
            _sum3(hk, top, step, n_row, kc, U(0))
            if sum_t:
                _sum3(ht, top, step, n_row, tc, U(0))
        else:
            _sum_shifted(hk, top, step, U(fy), n_row, kc, U(0))
            if sum_t:
                _sum_shifted(ht, top, step, U(fy), n_row, tc, U(0))
        _finish_rows(kc, tc, n_row, prm, True, act, with_t, theta_zero, record, v1, v2, o1, o2, dst_k, dst_t, out)
    _frame(dst_k, at_dst, rs, h_out, w_out, margin)
    if with_t:
        _frame(dst_t, at_dst, rs, h_out, w_out, margin)


@numba.njit(cache=True, nogil=True, **_JIT)
def _op_pointwise(op, prm, src_k, src_t, at_src, dst_k, dst_t, at_dst, rs, kc, tc, dy, dx, with_t, same, record,
                  v1, v2, voff, margin):
    """AFFINE (then the dual when ACT_INDEX ≥ 0), ACT, COPY, ADD (dst += src; THETA_ZERO bit 0: dst's Θ is zero,
    bit 1: src's) and DROPOUT (a same-image δ = 0 image × 1/r) on the δ-image."""
    lanes = U(LANES)
    code = op[OP]
    h, w, y0, x0 = _region(op[NY], op[NX], dy, dx)
    if h <= 0 or w <= 0:
        return
    n_row = U(w) * lanes
    if code == DROPOUT:
        if not (same and dy == 0 and dx == 0):
            return
        factor = prm[SCALE]
        for y in range(h):
            row = at_dst + U(y) * rs
            for m in range(n_row):
                dst_k[row + m] *= factor
            if with_t and op[THETA_ZERO] == 0:
                for m in range(n_row):
                    dst_t[row + m] *= factor
        return
    if code == ADD:
        dst_zero, src_zero = (op[THETA_ZERO] & 1) != 0, (op[THETA_ZERO] & 2) != 0
        for y in range(h):
            row_d = at_dst + U(y) * rs
            row_s = at_src + U(y) * rs
            for m in range(n_row):
                dst_k[row_d + m] += src_k[row_s + m]
            if with_t and not src_zero:
                if dst_zero:
                    for m in range(n_row):
                        dst_t[row_d + m] = src_t[row_s + m]
                else:
                    for m in range(n_row):
                        dst_t[row_d + m] += src_t[row_s + m]
        if with_t and dst_zero:
            _frame(dst_t, at_dst, rs, h, w, margin)
        return
    theta_zero = op[THETA_ZERO] != 0
    act = code == ACT or (code == AFFINE and op[ACT_INDEX] >= 0)
    for y in range(h):
        row_s = at_src + U(y) * rs
        row_d = at_dst + U(y) * rs
        for m in range(n_row):
            kc[m] = src_k[row_s + m]
        if with_t and not theta_zero:
            for m in range(n_row):
                tc[m] = src_t[row_s + m]
        if code == COPY:
            for m in range(n_row):
                dst_k[row_d + m] = kc[m]
            if with_t and not theta_zero:
                for m in range(n_row):
                    dst_t[row_d + m] = tc[m]
            continue
        o1 = voff + U((y0 + y) * op[NX] + x0) * lanes
        o2 = voff + U((y0 + y + dy) * op[NX] + x0 + dx) * lanes
        _finish_rows(kc, tc, n_row, prm, code == AFFINE, act, with_t, theta_zero, record, v1, v2, o1, o2, dst_k,
                     dst_t, row_d)
    _frame(dst_k, at_dst, rs, h, w, margin)      # a new region, or Θ written for the first time at this δ
    if with_t:
        _frame(dst_t, at_dst, rs, h, w, margin)


@numba.njit(cache=True, inline="always", **_JIT)
def _window_add(src, start, step, count, taps_y, taps_x, rs, dst, at):
    """dst[at + k·LANES + lane] += Σ_{a < taps_y, b < taps_x} src[start + k·step + a·rs + b·LANES + lane] for
    k < count: one output pixel's LANES numbers at a time, written out so that each is one vector operation."""
    lanes = U(LANES)
    for k in range(count):
        s0 = start + k * step
        t = at + k * lanes
        a0, a1, a2, a3 = 0.0, 0.0, 0.0, 0.0
        for a in range(taps_y):
            for b in range(taps_x):
                s = s0 + a * rs + b * lanes
                a0 += src[s]
                a1 += src[s + U(1)]
                a2 += src[s + U(2)]
                a3 += src[s + U(3)]
        dst[t] += a0
        dst[t + U(1)] += a1
        dst[t + U(2)] += a2
        dst[t + U(3)] += a3


@numba.njit(cache=True, nogil=True, **_JIT)
def _op_scatter(op, src_k, src_t, at, rs, fk, ft, with_t, dy, dx, axis_ptr, axis_ent, buf_res, buf_doff,
                delta_off):
    """Add the δ-image into the buffer DST of the next resolution: for every pair of per-axis entries
    (Δ, U0, u0, count, taps) of this δ (the tables MAP_Y, MAP_X list them: output δ-image Δ, its first pixel U0,
    the input's first pixel u0, the number of output pixels, of consecutive input pixels summed into each;
    stride SY, SX), out[Δ][U0 + k] += Σ_{a < taps} in[u0 + s·k + a]."""
    lanes = U(LANES)
    h, w, _, _ = _region(op[NY], op[NX], dy, dx)
    if h <= 0 or w <= 0:
        return
    bb = op[DST]
    my, mx = buf_res[bb, 0], buf_res[bb, 1]
    sy, sx = op[SY], op[SX]
    by, bx = op[MAP_Y] + dy + op[NY] - 1, op[MAP_X] + dx + op[NX] - 1
    theta = with_t and op[THETA_ZERO] == 0
    for ey in range(axis_ptr[by], axis_ptr[by + 1]):
        d_y, u_y0, i_y0, c_y, t_y = (axis_ent[ey, 0], axis_ent[ey, 1], axis_ent[ey, 2], axis_ent[ey, 3],
                                     axis_ent[ey, 4])
        for ex in range(axis_ptr[bx], axis_ptr[bx + 1]):
            d_x, u_x0, i_x0, c_x, t_x = (axis_ent[ex, 0], axis_ent[ex, 1], axis_ent[ex, 2], axis_ent[ex, 3],
                                         axis_ent[ex, 4])
            target = delta_off[buf_doff[bb] + (d_y + my - 1) * (2 * mx - 1) + d_x + mx - 1]
            w_d = mx - abs(d_x)
            n = U(c_x) * lanes
            for k in range(c_y):
                row_t = U(target + (u_y0 + k) * w_d + u_x0) * lanes
                row_s = at + U(i_y0 + sy * k) * rs + U(i_x0) * lanes
                if sx == 1 and t_x == 1:
                    for a in range(U(t_y)):
                        for m in range(n):
                            fk[row_t + m] += src_k[row_s + a * rs + m]
                        if theta:
                            for m in range(n):
                                ft[row_t + m] += src_t[row_s + a * rs + m]
                else:
                    _window_add(src_k, row_s, U(sx) * lanes, U(c_x), U(t_y), U(t_x), rs, fk, row_t)
                    if theta:
                        _window_add(src_t, row_s, U(sx) * lanes, U(c_x), U(t_y), U(t_x), rs, ft, row_t)


@numba.njit(cache=True, nogil=True, **_JIT)
def _op_load(op, scale, fk, ft, dst_k, dst_t, at, rs, with_t, dy, dx, factors, buf_doff, delta_off, margin):
    """The δ-image of buffer SRC into the slot, times the pooling norm: the constant SCALE, or f_y(P)·f_y(P + δ)·
    f_x(…)·f_x(…) (per-axis factors at MAP_Y, MAP_X when ≥ 0: 'edges')."""
    lanes = U(LANES)
    my, mx = op[MY], op[MX]
    h, w, y0, x0 = _region(my, mx, dy, dx)
    if h <= 0 or w <= 0:
        return
    src = U(delta_off[buf_doff[op[SRC]] + (dy + my - 1) * (2 * mx - 1) + dx + mx - 1]) * lanes
    fy, fx = op[MAP_Y], op[MAP_X]
    theta = with_t and op[THETA_ZERO] == 0
    n_row = U(w) * lanes
    for y in range(h):
        row_d = at + U(y) * rs
        row_s = src + U(y) * U(w) * lanes
        if fy < 0:
            for m in range(n_row):
                dst_k[row_d + m] = fk[row_s + m] * scale
            if theta:
                for m in range(n_row):
                    dst_t[row_d + m] = ft[row_s + m] * scale
            continue
        f_row = factors[fy + y0 + y] * factors[fy + y0 + y + dy]
        for x in range(w):
            f = f_row * factors[fx + x0 + x] * factors[fx + x0 + x + dx]
            col = U(x) * lanes
            for lane in range(lanes):
                dst_k[row_d + col + lane] = fk[row_s + col + lane] * f
            if theta:
                for lane in range(lanes):
                    dst_t[row_d + col + lane] = ft[row_s + col + lane] * f
    _frame(dst_k, at, rs, h, w, margin)
    if with_t:
        _frame(dst_t, at, rs, h, w, margin)


@numba.njit(cache=True, nogil=True, **_JIT)
def _op_readout(op, src_k, src_t, at, rs, with_t, dy, dx, part_k, part_t):
    """Sum the δ-image into the row accumulators part (MODE 0: every pixel pair; 1: matching pixels, δ = 0)."""
    if op[MODE] == 1 and (dy != 0 or dx != 0):
        return
    lanes = U(LANES)
    h, w, _, _ = _region(op[NY], op[NX], dy, dx)
    if h <= 0 or w <= 0:
        return
    n_row = U(w) * lanes
    theta = with_t and op[THETA_ZERO] == 0
    for y in range(h):
        row = at + U(y) * rs
        for m in range(n_row):
            part_k[m] += src_k[row + m]
        if theta:
            for m in range(n_row):
                part_t[m] += src_t[row + m]


@numba.njit(cache=True, nogil=True, **_JIT)
def image_pairs(a, b, ii, jj, same, want_ntk, ops, prm, phase_ops, phase_res, need_y, need_x, var_off, var_a,
                var_b, buf_res, buf_pixels, buf_doff, delta_off, axis_ptr, axis_ent, factors, n_slots, margin,
                out_k, out_t):
    """Readout sums of the program ``ops`` (rows of N_INTS columns; ``prm`` its parameter rows, N_FIELDS columns)
    for the image pairs (a[ii[p]], b[jj[p]]), LANES pairs at a time in the innermost dimension.

    a, b: (N, C, H, W) float64. Phase f runs ops phase_ops[f] … phase_ops[f + 1] − 1 on every δ-image that
    need_y[f, dy + H_max − 1] and need_x[f, dx + W_max − 1] ask for, δ = 0 first; phase_res[f]: its largest
    resolution. ``same``: pairs (i, i) of one image set (a is b): record, at every activation, the δ = 0 image
    into var_a[i] (activation k at var_off[k] …, row-major pixels); else read var_a[ii[p]] and var_b[jj[p]].
    Buffers: resolution buf_res[k], buf_pixels numbers in all, δ-image offsets delta_off[buf_doff[k] + …].
    Writes out_k[p], out_t[p] (Θ when ``want_ntk``): the READOUT op's sums (the caller divides)."""
    n_pairs = ii.shape[0]
    n_chan, h_img, w_img = a.shape[1], a.shape[2], a.shape[3]
    h_max, w_max = (need_y.shape[1] + 1) // 2, (need_x.shape[1] + 1) // 2
    lanes = U(LANES)
    mg = U(margin)
    rs = (U(w_max) + U(2) * mg) * lanes
    slot_size = (U(h_max) + U(2) * mg) * rs
    origin = mg * rs + mg * lanes
    n_var = var_off[var_off.shape[0] - 1]
    la = np.empty(h_img * n_chan * w_img * LANES)
    lb = np.empty(h_img * n_chan * w_img * LANES)
    v1 = np.zeros(max(n_var, 1) * LANES)
    v2 = np.zeros(max(n_var, 1) * LANES)
    sk, st = np.zeros(n_slots * slot_size), np.zeros(n_slots * slot_size)
    hk, ht = np.zeros(slot_size), np.zeros(slot_size)
    kc, tc = np.zeros(rs), np.zeros(rs)
    part_k, part_t = np.zeros(rs), np.zeros(rs)
    fk, ft = np.zeros(max(buf_pixels, 1) * LANES), np.zeros(max(buf_pixels, 1) * LANES)
    n_phases = phase_res.shape[0]
    for g in range(0, n_pairs, LANES):
        for lane in range(LANES):
            p = min(g + lane, n_pairs - 1)
            i, j = ii[p], jj[p]
            for y in range(h_img):
                for ch in range(n_chan):
                    for x in range(w_img):
                        at = ((y * n_chan + ch) * w_img + x) * LANES + lane
                        la[at] = a[i, ch, y, x]
                        lb[at] = b[j, ch, y, x]
            if not same:
                for q in range(n_var):
                    v1[q * LANES + lane] = var_a[i, q]
                    v2[q * LANES + lane] = var_b[j, q]
        part_k[:] = 0.0
        part_t[:] = 0.0
        for f in range(n_phases):
            for o in range(phase_ops[f], phase_ops[f + 1]):
                if ops[o, OP] == SCATTER:
                    bb = ops[o, DST]
                    lo = delta_off[buf_doff[bb]] * LANES
                    hi = lo + (buf_res[bb, 0] * buf_res[bb, 1]) ** 2 * LANES
                    fk[lo:hi] = 0.0
                    if want_ntk and ops[o, THETA_ZERO] == 0:
                        ft[lo:hi] = 0.0
            ny, nx = phase_res[f, 0], phase_res[f, 1]
            n_dx = 2 * nx - 1
            for t in range(-1, (2 * ny - 1) * n_dx):
                dy, dx = 0, 0
                if t >= 0:
                    dy, dx = t // n_dx - (ny - 1), t % n_dx - (nx - 1)
                    if dy == 0 and dx == 0:
                        continue
                if not (need_y[f, dy + h_max - 1] and need_x[f, dx + w_max - 1]):
                    continue
                record = same and dy == 0 and dx == 0
                for o in range(phase_ops[f], phase_ops[f + 1]):
                    op = ops[o]
                    code = op[OP]
                    at_src = U(op[SRC]) * slot_size + origin
                    at_dst = U(op[DST]) * slot_size + origin
                    voff = U(var_off[op[ACT_INDEX]] if op[ACT_INDEX] >= 0 else 0) * lanes
                    if code == INPUT:
                        _op_input(la, lb, n_chan, h_img, w_img, dy, dx, sk, at_dst, rs, mg)
                    elif code == CONV:
                        _op_conv(op, prm[o], sk, st, at_src, sk, st, at_dst, rs, origin, hk, ht, kc, tc, dy, dx,
                                 want_ntk, record, v1, v2, voff, mg)
                    elif code == SCATTER:
                        _op_scatter(op, sk, st, at_src, rs, fk, ft, want_ntk, dy, dx, axis_ptr, axis_ent, buf_res,
                                    buf_doff, delta_off)
                    elif code == LOAD:
                        _op_load(op, prm[o, SCALE], fk, ft, sk, st, at_dst, rs, want_ntk, dy, dx, factors, buf_doff,
                                 delta_off, mg)
                    elif code == READOUT:
                        _op_readout(op, sk, st, at_src, rs, want_ntk, dy, dx, part_k, part_t)
                    else:
                        _op_pointwise(op, prm[o], sk, st, at_src, sk, st, at_dst, rs, kc, tc, dy, dx, want_ntk,
                                      same, record, v1, v2, voff, mg)
        for lane in range(LANES):
            p = g + lane
            if p >= n_pairs:
                continue
            total_k, total_t = 0.0, 0.0
            for m in range(lane, int(rs), LANES):
                total_k += part_k[m]
                total_t += part_t[m]
            out_k[p] = total_k
            out_t[p] = total_t
            if same:
                for q in range(n_var):
                    var_a[ii[p], q] = v1[q * LANES + lane]


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
