"""The layer table and the pure per-layer kernel rules that every engine reads.

A network, as its kernel sees it, is a ``Network``: the ordered ``layers``, each a ``Layer`` that carries its
own hyperparameters (weight and bias scales, parameterization, fan-in, filter or window shape, strides,
padding, dual activation, trained or frozen, the branches of a sum). The reference engine (``run``) applies one
pure rule per layer to a tile's *state* ``(k12, k11, k22, ntk)``: the NNGP cross term, the variances of the
rows' and of the columns' inputs (broadcastable against k12; None where no later rule needs them) and the NTK
(None when only the NNGP is wanted). The fused engines read the same table: the numba loops
(``kernels.analytic._cpu``, driven by ``kernels.analytic._cpu_drivers``) take its per-layer scalars as arrays and
cover the networks that ``fused_shape`` names (every other one runs ``run``); the CUDA kernels
(``kernels.analytic._cuda``) replace rows and pairs of rows inside ``run``. Nothing here imports them.

Tile layouts (B1 rows × B2 columns of inputs; H × W pixels, which strides and pooling change layer by layer):

* vectors:            k12 (B1, B2),                 k11 (B1, 1),               k22 (1, B2);
* matching pixels:    k12 (B1, B2, H, W),           k11 (B1, 1, H, W),         k22 (1, B2, H, W)
  (``Network.full_spatial`` False: enough when only pixelwise layers, convolutions and Flatten follow);
* every pixel pair:   k12 (B1, B2, H, W, H, W), with the variances either per pixel, k11 (B1, 1, H, W, 1, 1)
  and k22 (1, B2, 1, 1, H, W), or per pixel pair of the same input, k11 (B1, 1, H, W, H, W) and
  k22 (1, B2, H, W, H, W) (``Network.pair_variances``: needed when an activation follows a pooling layer,
  whose output variance mixes different pixels). The rules tell the two apart by shape.

Conventions (neural-tangents' ``stax`` 0.6.5, docs/conventions.md; per spatial axis, pads (lo, hi) as lax's):

* Dense/Conv, 'ntk':      K ← w²·K + b²,  Θ ← K_new + w²·Θ;
* Dense/Conv, 'standard': Θ ← n_in·K_old + w²·Θ + [bias],  K ← w²·K + b²;  ``b_std=None`` means no bias;
* activation: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)] (``kernels.analytic.duals``), variances K_ii ← E[φ(u)²];
* convolution (filter f, stride s): both pixels of a pair move together,
  K(p, q) ← (1/f) Σ_{i<f} K̃(p·s + i, q·s + i) per axis, K̃ zero-padded ('SAME': out ⌈n/s⌉, total pad
  max((out − 1)s + f − n, 0), lo = total // 2; or explicit (lo, hi) pads) or wrapped ('CIRCULAR', SAME's
  pads) or not ('VALID');
  'SAME' with an odd f and stride 1 is Arora et al.'s (2019) CNTK patch sum Σ_o K(p+o, q+o)/f²;
* average pooling (window w, stride s): every pixel pair of the two windows,
  K(p, q) ← Σ_{i,j<w} K̃(p·s + i, q·s + j) / norm, norm = w² per axis, the counts of real pixels
  n(p)·n(q) with ``normalize_edges``, or 1 for a sum pool;
* readout: 'gap' averages over all pixel pairs, 'gsp' sums them, 'flatten' averages matching pixels;
* branches (FanOut → parallel → FanInSum): every term is the sum of the branches' terms (no cross terms:
  independent weights in each branch, neural-tangents' assumption);
* dropout (``keep_rate`` r, neural-tangents' 'train' mode): same-input, same-pixel entries × 1/r.

Rules consume their state: a tile owns its arrays, so they are updated in place where possible.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from kernels.analytic.duals import Dual
from kernels.backend import get_namespace

LAYER_KINDS = ("dense", "conv", "activation", "readout", "avg_pool", "branches", "dropout")
READOUT_MODES = ("gap", "gsp", "flatten")
PADDINGS = ("SAME", "VALID", "CIRCULAR")
POOL_NORMS = ("window", "edges", "none")
# activations whose kernels are positively homogeneous: φ(c·x) = c·φ(x) for c > 0
PIECEWISE_LINEAR = ("relu", "leaky_relu", "abs", "identity", "abrelu")
_PAIRS = ((2, 4), (3, 5))        # the axes of each spatial direction in a pixel-pair array (., ., H, W, H, W)
_PIXELS = ((2,), (3,))           # ... in a per-pixel array (., ., H, W)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One row of the layer table: ``kind`` in LAYER_KINDS and the hyperparameters its rule reads.

    Dense and conv layers: ``w_std``, ``b_std`` (None: no bias), ``parameterization`` ('ntk' or 'standard'),
    ``fan_in`` (n_in: inputs per output unit, width or channels × filter area; only the 'standard' NTK reads
    it), ``trained=False`` for a frozen layer (its own NTK term is left out). Conv and avg_pool: ``window``
    (fh, fw), ``strides`` (sh, sw), ``padding`` in PADDINGS or explicit zero pads ((lo, hi), (lo, hi)) along
    (H, W) (PyTorch's ``padding``); ``filter_size`` is f for a square f × f filter
    (0 otherwise). avg_pool: ``pool_norm`` in POOL_NORMS. Activations: ``dual``. Readouts: ``readout`` in
    READOUT_MODES ('' lets the network's layout decide: 'gap' on pixel pairs, 'flatten' on matching pixels).
    Branches: ``branches``, a tuple of layer tuples whose states are summed. Dropout: ``keep_rate``.
    """

    kind: str
    fan_in: float = 0
    trained: bool = True
    w_std: float = 1.0
    b_std: float | None = None
    parameterization: str = "ntk"
    filter_size: int = 1
    dual: Dual | None = None
    window: tuple = ()
    strides: tuple = (1, 1)
    padding: str | tuple = "SAME"
    pool_norm: str = "window"
    readout: str = ""
    branches: tuple = ()
    keep_rate: float = 1.0

    @property
    def bias_terms(self) -> tuple:
        """(b², the 'standard' NTK's bias term): (0, 0) without a bias."""
        return (0.0, 0.0) if self.b_std is None else (float(self.b_std) ** 2, 1.0)


def dense(fan_in, w_std: float, b_std, parameterization: str, trained: bool = True) -> Layer:
    return Layer("dense", fan_in, trained, float(w_std), None if b_std is None else float(b_std), parameterization)


def _padding(padding):
    return padding if isinstance(padding, str) else tuple(tuple(int(p) for p in pads) for pads in padding)


def conv(fan_in, w_std: float, b_std, parameterization: str, filter_size: int | None = None, trained: bool = True,
         *, window=None, strides=(1, 1), padding="SAME") -> Layer:
    """A conv row: ``filter_size`` f for an f × f filter, or ``window`` (fh, fw)."""
    window = (int(filter_size),) * 2 if window is None else tuple(int(f) for f in window)
    square = window[0] if window[0] == window[1] else 0
    return Layer("conv", fan_in, trained, float(w_std), None if b_std is None else float(b_std), parameterization,
                 square, window=window, strides=tuple(int(s) for s in strides), padding=_padding(padding))


def activation(dual: Dual) -> Layer:
    return Layer("activation", dual=dual)


def readout(mode: str = "") -> Layer:
    return Layer("readout", readout=mode)


def avg_pool(window, strides, padding, pool_norm: str = "window") -> Layer:
    return Layer("avg_pool", window=tuple(int(w) for w in window), strides=tuple(int(s) for s in strides),
                 padding=_padding(padding), pool_norm=pool_norm)


def branches(*layer_lists) -> Layer:
    return Layer("branches", branches=tuple(tuple(b) for b in layer_lists))


def dropout(keep_rate: float) -> Layer:
    return Layer("dropout", keep_rate=float(keep_rate))


def walk(layers):
    """Every layer of ``layers`` in order, the layers inside branches included (after their branches row)."""
    for layer in layers:
        yield layer
        for branch in layer.branches:
            yield from walk(branch)


@dataclasses.dataclass(frozen=True)
class Network:
    """A network as its kernel sees it: the layers in order, and the tile layout they need.

    ``full_spatial``: conv tiles hold every pixel pair (B1, B2, H, W, H, W) (pooling or 'gap' follows), else
    matching pixels only (B1, B2, H, W); fully connected networks ignore it. ``pair_variances``: on pixel-pair
    tiles, the variances are kept for every pixel pair of the same input (an activation follows a pooling
    layer), else per pixel.
    """

    layers: tuple
    full_spatial: bool = False
    pair_variances: bool = False

    @property
    def duals(self) -> tuple:
        return tuple(layer.dual for layer in walk(self.layers) if layer.kind == "activation")

    @property
    def closed_form(self) -> bool:
        """Every activation has a closed-form dual (no quadrature)."""
        return all(d.closed for d in self.duals)

    @property
    def homogeneous(self) -> bool:
        """K(a·x, b·x') = a·b·K(x, x') for a, b > 0: piecewise-linear activations and no bias term anywhere
        (b_std None, or 0 with the 'ntk' parameterization, whose NTK then gets no constant either)."""
        for layer in walk(self.layers):
            if layer.kind == "activation" and layer.dual.name not in PIECEWISE_LINEAR:
                return False
            if layer.kind in ("dense", "conv") and not (
                    layer.b_std is None or (layer.b_std == 0 and layer.parameterization == "ntk")):
                return False
        return True


FUSED_IMAGE_KINDS = ("conv", "avg_pool", "activation", "dense", "dropout", "branches")


def fused_shape(network: Network):
    """'fc' or 'conv' when the fused CPU engines cover the shape of ``network``, else None.

    'fc' (vectors): Dense, then [activation, Dense] blocks. 'conv' (images): every row before the network's one
    readout (at the top level) is of a kind in FUSED_IMAGE_KINDS — Conv and AvgPool/SumPool rows with any window,
    strides and padding but 'CIRCULAR', Dense, activations, Dropout, branches of such rows; the rows after the
    readout act on vectors (the reference rules run them there). The engines still check the activations they
    know.
    """
    kinds = [layer.kind for layer in network.layers]
    n_act = kinds.count("activation")
    if kinds == ["dense"] + ["activation", "dense"] * n_act:
        return "fc"
    if kinds.count("readout") != 1:
        return None
    for layer in walk(network.layers[:kinds.index("readout")]):
        if layer.kind not in FUSED_IMAGE_KINDS or (layer.kind in ("conv", "avg_pool") and layer.padding == "CIRCULAR"):
            return None
    return "conv"


# ----------------------------------------------------------------------------------------------- geometry
def axis_padding(padding, axis: int):
    """The padding of one spatial axis: a name (the same on every axis) or that axis' (lo, hi) zero pads."""
    return padding if isinstance(padding, str) else tuple(padding[axis])


def window_geometry(size: int, window: int, stride: int, padding) -> tuple:
    """(out, lo, hi) along one axis: output length and pads, as lax computes them ('SAME' and 'CIRCULAR':
    out = ⌈size/stride⌉, total pad max((out − 1)·stride + window − size, 0), lo = total // 2, the extra pixel at
    the end; 'VALID': out = ⌊(size − window)/stride⌋ + 1, no pads; explicit zero pads (lo, hi), as PyTorch's
    ``padding``: out = ⌊(size + lo + hi − window)/stride⌋ + 1)."""
    if not isinstance(padding, str):
        lo, hi = padding
        return (size + lo + hi - window) // stride + 1, lo, hi
    if padding == "VALID":
        return (size - window) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def axis_geometry(size: int, window: int, stride: int, padding, axis: int) -> tuple:
    """(out, lo, hi) of spatial axis ``axis`` (0: H, 1: W): ``window_geometry`` for a padding name, or explicit zero
    pads ((lo, hi) per axis) with out = ⌊(size + lo + hi − window)/stride⌋ + 1."""
    if isinstance(padding, str):
        return window_geometry(size, window, stride, padding)
    lo, hi = padding[axis]
    return (size + lo + hi - window) // stride + 1, lo, hi


def _pad(xp, a, axis: int, lo: int, hi: int, circular: bool):
    """``a`` padded along ``axis`` by lo / hi zeros, or wrapped around when ``circular``."""
    if not lo and not hi:
        return a
    n = a.shape[axis]

    def part(start, stop):
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, stop)
        return a[tuple(index)]

    def zeros(count):
        shape = list(a.shape)
        shape[axis] = count
        return xp.zeros(tuple(shape), dtype=a.dtype, device=a.device)

    if circular:
        if lo > n or hi > n:
            raise ValueError(f"'CIRCULAR' padding wraps at most once: pads ({lo}, {hi}) on an axis of {n} pixels")
        pieces = ([part(n - lo, n)] if lo else []) + [a] + ([part(0, hi)] if hi else [])
    else:
        pieces = ([zeros(lo)] if lo else []) + [a] + ([zeros(hi)] if hi else [])
    return xp.concat(pieces, axis=axis)


def window_sum(a, axes: tuple, window: int, stride: int, padding):
    """Σ_{i<window} ã[…, p·stride + i, …], the offset i shared by every axis in ``axes`` (ã: ``a`` padded on
    each of them as ``window_geometry`` says). One axis: a 1-D window sum; the two axes of a pixel pair: the
    aligned sum of a convolution. ``padding``: a name or this axis' (lo, hi)."""
    xp = get_namespace(a)
    out, lo, hi = window_geometry(a.shape[axes[0]], window, stride, padding)
    for axis in axes:
        a = _pad(xp, a, axis, lo, hi, padding == "CIRCULAR")
    total = None
    for i in range(window):
        index = [slice(None)] * a.ndim
        for axis in axes:
            index[axis] = slice(i, i + (out - 1) * stride + 1, stride)
        part = a[tuple(index)]
        if total is None:
            total = part + 0.0           # a new array: the state's own buffers stay untouched
        else:
            total += part
    return total


def edge_counts(size: int, window: int, stride: int, padding) -> np.ndarray:
    """How many real (unpadded) pixels each output window covers along one axis."""
    return window_sum(np.ones(size), (0,), window, stride, "SAME" if padding == "CIRCULAR" else padding)


# ----------------------------------------------------------------------------------------------- variances
def _pair_variances(k12, v) -> bool:
    """Whether the variance array ``v`` holds same-input pixel pairs (., ., H, W, H, W) of a pixel-pair tile
    ``k12`` (rather than per-pixel variances with two unit axes). With 1 × 1 images the two coincide."""
    return k12.ndim == 6 and v is not None and v.ndim == 6 and tuple(v.shape[2:]) == tuple(k12.shape[2:])


def _pixel_diagonal(v):
    """The per-pixel variances (X, Y, H, W) on the pixel diagonal of same-input pairs v (X, Y, H, W, H, W)."""
    xp = get_namespace(v)
    x, y, h, w = v.shape[0], v.shape[1], v.shape[2], v.shape[3]
    flat = xp.reshape(v, (x, y, h * w * h * w))
    return xp.reshape(flat[:, :, ::h * w + 1], (x, y, h, w))


def pixel_variances(k12, k11, k22):
    """(v1, v2): the per-pixel variances of the rows' and the columns' inputs, broadcastable against k12."""
    if not _pair_variances(k12, k11):
        return k11, k22
    xp = get_namespace(k12)
    d1, d2 = _pixel_diagonal(k11), _pixel_diagonal(k22)
    (b1, _, h, w), b2 = d1.shape, d2.shape[1]
    return xp.reshape(d1, (b1, 1, h, w, 1, 1)), xp.reshape(d2, (1, b2, 1, 1, h, w))


def affine_variance(v, w_std: float, b_std):
    """K_ii ← w²·K_ii + b² (None stays None)."""
    if v is None:
        return None
    return w_std * w_std * v + (0.0 if b_std is None else b_std * b_std)


def activation_variance(v, dual: Dual):
    """K_ii ← E[φ(u)²] for u ~ N(0, K_ii) (None stays None)."""
    return None if v is None else dual.nngp(v, v, v)


def _activation_pairs(v, dual: Dual):
    """Same-input pixel pairs (X, Y, H, W, H, W) through the activation: E[φ(u_p)φ(u_q)]."""
    xp = get_namespace(v)
    d = _pixel_diagonal(v)
    x, y, h, w = d.shape
    return dual.nngp(v, xp.reshape(d, (x, y, h, w, 1, 1)), xp.reshape(d, (x, y, 1, 1, h, w)))


def variance_chain(network: Network, var):
    """K(x, x) before each activation of a fully connected ``network``, from the input variances ``var``: Dense
    K ← w²·K + b², activation K ← E[φ(u)²]. The fused FC loop reads the dual at these variances."""
    out = []
    for layer in network.layers:
        if layer.kind == "dense":
            var = affine_variance(var, layer.w_std, layer.b_std)
        elif layer.kind == "activation":
            out.append(var)
            var = activation_variance(var, layer.dual)
    return out


# ----------------------------------------------------------------------------------------------- layer rules
def dense_rule(state, w_std: float, b_std, parameterization: str, fan_in, trained: bool = True):
    """Affine layer (Dense, or a Conv whose patch sum was already taken): returns the next state.

    ``trained=False`` (a frozen layer) leaves the layer's own term out of Θ: only Θ ← w²·Θ remains.
    """
    k12, k11, k22, ntk = state
    w2, b2 = w_std * w_std, (0.0 if b_std is None else b_std * b_std)
    if ntk is not None:
        ntk *= w2
        if parameterization == "standard" and trained:
            ntk += fan_in * k12
            if b_std is not None:
                ntk += 1.0
    k12 *= w2
    if b2:
        k12 += b2
    if ntk is not None and parameterization == "ntk" and trained:
        ntk += k12
    return k12, affine_variance(k11, w_std, b_std), affine_variance(k22, w_std, b_std), ntk


def activation_rule(state, dual: Dual):
    """Elementwise nonlinearity: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)], variances K ← E[φ(u)²]."""
    k12, k11, k22, ntk = state
    v1, v2 = pixel_variances(k12, k11, k22)
    pairs = _pair_variances(k12, k11)
    if ntk is None:
        k12 = dual.nngp(k12, v1, v2)
    else:
        k12, factor = dual.both(k12, v1, v2)
        ntk *= factor
    if pairs:
        return k12, _activation_pairs(k11, dual), _activation_pairs(k22, dual), ntk
    return k12, activation_variance(k11, dual), activation_variance(k22, dual), ntk


def _conv_sum(a, groups, window, strides, padding):
    """The convolution's aligned mean (1/(fh·fw)) Σ over the filter, one spatial direction after the other."""
    for direction, (axes, f, s) in enumerate(zip(groups, window, strides)):
        a = window_sum(a, axes, f, s, axis_padding(padding, direction))
    return a / float(window[0] * window[1])


def _variance_groups(k12, v, second: bool):
    """The axis groups of a variance array: pixel pairs, per pixel of a matching-pixel tile, or per pixel of a
    pixel-pair tile (rows on axes 2, 3; columns on axes 4, 5)."""
    if _pair_variances(k12, v):
        return _PAIRS
    if k12.ndim == 6 and second:
        return ((4,), (5,))
    return _PIXELS


def conv_rule(state, w_std: float, b_std, parameterization: str, fan_in, filter_size: int, full_spatial: bool,
              trained: bool = True, *, window=None, strides=(1, 1), padding: str = "SAME"):
    """Convolution: the aligned filter mean of every term (pixel pairs, variances), then the affine rule.

    ``filter_size`` f alone is an f × f 'SAME' stride-1 filter; ``window``, ``strides`` and ``padding`` give
    any other (the module docstring's per-axis rule)."""
    k12, k11, k22, ntk = state
    window = (filter_size, filter_size) if window is None else tuple(window)
    pairs = _PAIRS if full_spatial else _PIXELS
    v11, v22 = (None if v is None else _conv_sum(v, _variance_groups(k12, v, second), window, strides, padding)
                for v, second in ((k11, False), (k22, True)))
    k12 = _conv_sum(k12, pairs, window, strides, padding)
    if ntk is not None:
        ntk = _conv_sum(ntk, pairs, window, strides, padding)
    return dense_rule((k12, v11, v22, ntk), w_std, b_std, parameterization, fan_in, trained)


def _pool(a, window, strides, padding: str, pool_norm: str):
    """Average (or sum) pooling of a pixel-pair array: a 1-D window sum on each of its four pixel axes."""
    xp = get_namespace(a)
    for direction, (axes, w, s) in enumerate(zip(_PAIRS, window, strides)):
        pad = axis_padding(padding, direction)
        for axis in axes:
            size = a.shape[axis]
            a = window_sum(a, (axis,), w, s, pad)
            if pool_norm == "window":
                a = a / float(w)
            elif pool_norm == "edges":
                shape = [1] * a.ndim
                shape[axis] = a.shape[axis]
                counts = xp.asarray(edge_counts(size, w, s, pad), dtype=a.dtype, device=a.device)
                a = a / xp.reshape(counts, tuple(shape))
    return a


def avg_pool_rule(state, window, strides, padding: str, pool_norm: str):
    """Average pooling on a pixel-pair tile: every pixel pair of the two windows, divided as ``pool_norm``
    says. Per-pixel variances cannot be pooled (the output variance mixes pixels): they become None, which
    the network allows only where no activation follows (``Network.pair_variances``)."""
    k12, k11, k22, ntk = state
    v11, v22 = ((_pool(v, window, strides, padding, pool_norm) if _pair_variances(k12, v) else None)
                for v in (k11, k22))
    k12 = _pool(k12, window, strides, padding, pool_norm)
    if ntk is not None:
        ntk = _pool(ntk, window, strides, padding, pool_norm)
    return k12, v11, v22, ntk


def _matching_pixels(a):
    """The matching-pixel entries (X, Y, H, W) of a pixel-pair array (X, Y, H, W, H, W)."""
    return _pixel_diagonal(a)


def readout_rule(state, full_spatial: bool, mode: str = ""):
    """'gap': mean over all pixel pairs; 'gsp': their sum; 'flatten': mean over matching pixels; the tile
    becomes (B1, B2) and the variances (B1, 1), (1, B2) (None where per-pixel variances cannot give them:
    'gap' and 'gsp' mix pixels). ``mode=''``: 'gap' on a pixel-pair tile, 'flatten' on matching pixels."""
    k12, k11, k22, ntk = state
    xp = get_namespace(k12)
    mode = mode or ("gap" if full_spatial else "flatten")
    if mode != "flatten" and not full_spatial:
        raise ValueError(f"readout {mode!r} needs a pixel-pair tile (Network.full_spatial)")

    def reduce(a, pairs: bool):
        if a is None:
            return None
        if mode == "flatten":
            a = _matching_pixels(a) if a.ndim == 6 and pairs else a
            return xp.mean(a, axis=tuple(range(2, a.ndim)))
        if not pairs:
            return None
        total = xp.sum(a, axis=(2, 3, 4, 5))
        return total if mode == "gsp" else total / float(a.shape[2] * a.shape[3] * a.shape[4] * a.shape[5])

    full = k12.ndim == 6
    return (reduce(k12, full), reduce(k11, _pair_variances(k12, k11) or not full),
            reduce(k22, _pair_variances(k12, k22) or not full), reduce(ntk, full))


def _same_input_mask(xp, a):
    """True at the same-input, same-pixel entries of a same-input tile array (B, B[, H, W[, H, W]])."""
    b = a.shape[0]
    index = xp.arange(b, device=a.device)
    same = xp.reshape(index, (b, 1)) == xp.reshape(index, (1, b))
    if a.ndim == 2:
        return same
    if a.ndim == 4:
        return xp.reshape(same, (b, b, 1, 1))
    h, w = a.shape[2], a.shape[3]
    pixels = xp.arange(h * w, device=a.device)
    pix = xp.reshape(pixels, (h * w, 1)) == xp.reshape(pixels, (1, h * w))
    return xp.reshape(same, (b, b, 1, 1, 1, 1)) & xp.reshape(pix, (1, 1, h, w, h, w))


def _scale_variance(k12, v, factor: float):
    """Same-pixel variances × factor (per-pixel arrays: all of them; pixel pairs: the diagonal ones)."""
    if v is None:
        return None
    if not _pair_variances(k12, v):
        return v * factor
    xp = get_namespace(v)
    h, w = v.shape[2], v.shape[3]
    pixels = xp.arange(h * w, device=v.device)
    diag = xp.reshape(xp.reshape(pixels, (h * w, 1)) == xp.reshape(pixels, (1, h * w)), (1, 1, h, w, h, w))
    return xp.where(diag, v * factor, v)


def dropout_rule(state, keep_rate: float, same_inputs: bool):
    """Dropout with keep rate r as neural-tangents' 'train' mode: the variance of every unit (same input, same
    pixel) grows by 1/r; on a same-input tile (``same_inputs``) so do K and Θ there, different inputs keep
    theirs (independent masks)."""
    k12, k11, k22, ntk = state
    factor = 1.0 / keep_rate
    k11, k22 = _scale_variance(k12, k11, factor), _scale_variance(k12, k22, factor)
    if same_inputs:
        xp = get_namespace(k12)
        mask = _same_input_mask(xp, k12)
        k12 = xp.where(mask, k12 * factor, k12)
        if ntk is not None:
            ntk = xp.where(mask, ntk * factor, ntk)
    return k12, k11, k22, ntk


def _copy(a):
    return None if a is None else a + 0.0


def branches_rule(network: Network, state, layer: Layer, xp, pin: bool, replacements=None):
    """FanOut → parallel(branches) → FanInSum: each branch's chain on its own copy of the state, then the sum
    of K, Θ and the variances (a term that one branch lost, such as per-pixel variances after pooling, is lost
    for the sum)."""
    outs = []
    for i, branch in enumerate(layer.branches):
        start = state if i == len(layer.branches) - 1 else tuple(_copy(a) for a in state)
        outs.append(run(dataclasses.replace(network, layers=branch), start, xp, pin, replacements))
    total = []
    for terms in zip(*outs):
        if any(t is None for t in terms):
            total.append(None)
            continue
        acc = terms[0]
        for t in terms[1:]:
            acc = acc + t
        total.append(acc)
    return tuple(total)


def apply(network: Network, state, layer: Layer, pin: bool = False, replacements=None):
    """The reference rule of ``layer`` (its own hyperparameters, the network's tile layout); ``pin``: the tile
    pairs inputs with themselves (read by dropout and passed on to branches)."""
    if layer.kind == "dense":
        return dense_rule(state, layer.w_std, layer.b_std, layer.parameterization, layer.fan_in, layer.trained)
    if layer.kind == "conv":
        return conv_rule(state, layer.w_std, layer.b_std, layer.parameterization, layer.fan_in, layer.filter_size,
                         network.full_spatial, layer.trained, window=layer.window or None, strides=layer.strides,
                         padding=layer.padding)
    if layer.kind == "activation":
        return activation_rule(state, layer.dual)
    if layer.kind == "readout":
        return readout_rule(state, network.full_spatial, layer.readout)
    if layer.kind == "avg_pool":
        return avg_pool_rule(state, layer.window, layer.strides, layer.padding, layer.pool_norm)
    if layer.kind == "dropout":
        return dropout_rule(state, layer.keep_rate, pin)
    if layer.kind == "branches":
        return branches_rule(network, state, layer, get_namespace(state[0]), pin, replacements)
    raise ValueError(f"unknown layer kind {layer.kind!r}; valid: {', '.join(LAYER_KINDS)}")


# ----------------------------------------------------------------------------------------------- diagonal pins
def _is_numpy_or_cupy(xp) -> bool:
    return xp.__name__.endswith(("numpy", "cupy"))


def pin_diagonal(xp, k12, k11):
    """Set K(x_i, x_i) to the variance of x_i on a same-input (n, n) tile (so θ = 0 exactly there)."""
    n = k12.shape[0]
    if _is_numpy_or_cupy(xp) and k12.flags.c_contiguous:
        k12.reshape(-1)[::n + 1] = k11   # a strided view of the diagonal: no mask pass
        return k12
    index = xp.arange(n, device=k12.device)   # on k12's device: any other is an error under the array API
    eye = xp.reshape(index, (n, 1)) == xp.reshape(index, (1, n))
    return xp.where(eye, xp.reshape(k11, (n, 1)) + xp.zeros_like(k12), k12)


def pin_conv(xp, state, full_spatial: bool):
    """Same-image pairs (i, i) of a diagonal conv tile: set K(p, p) to the pixel variance (θ = 0 exactly)."""
    k12, k11, k22, ntk = state
    b, h, w = k12.shape[0], k12.shape[2], k12.shape[3]
    if _is_numpy_or_cupy(xp) and full_spatial:   # fancy-index the (i, i, p, p) entries: no mask pass
        img, pix = xp.arange(b, device=k12.device)[:, None], xp.arange(h * w, device=k12.device)[None, :]
        if not k12.flags.c_contiguous:
            k12 = k12.copy()
        k12.reshape(b, b, h * w, h * w)[img, img, pix, pix] = k11.reshape(b, h * w)
        return k12, k11, k22, ntk
    images, pixels = xp.arange(b, device=k12.device), xp.arange(h * w, device=k12.device)
    same = xp.reshape(images, (b, 1)) == xp.reshape(images, (1, b))
    if full_spatial:
        pix = xp.reshape(pixels, (h * w, 1)) == xp.reshape(pixels, (1, h * w))
        mask = xp.reshape(same, (b, b, 1, 1, 1, 1)) & xp.reshape(pix, (1, 1, h, w, h, w))
        var = k11 + xp.zeros((1, 1, 1, 1, h, w), dtype=k11.dtype, device=k11.device)
    else:
        mask = xp.reshape(same, (b, b, 1, 1))
        var = k11
    return xp.where(mask, var + xp.zeros_like(k12), k12), k11, k22, ntk


def pin_pairs(xp, state):
    """Same-image blocks (i, i) of a pixel-pair tile with pixel-pair variances: K(x_i, x_i) is the variance
    array of x_i, every pixel pair of it (so θ = 0 exactly on the pixel diagonal)."""
    k12, k11, k22, ntk = state
    b = k12.shape[0]
    if _is_numpy_or_cupy(xp):
        if not k12.flags.writeable or not k12.flags.c_contiguous:
            k12 = k12.copy()
        index = xp.arange(b, device=k12.device)
        k12[index, index] = k11[:, 0]
        return k12, k11, k22, ntk
    index = xp.arange(b, device=k12.device)
    same = xp.reshape(xp.reshape(index, (b, 1)) == xp.reshape(index, (1, b)), (b, b, 1, 1, 1, 1))
    return xp.where(same, k11 + xp.zeros_like(k12), k12), k11, k22, ntk


def pin_same_inputs(xp, state, full_spatial: bool):
    """Pin the same-input entries of a diagonal tile's state (vectors, matching pixels, pixel pairs with
    per-pixel or pixel-pair variances); a no-op where the variances are gone."""
    k12, k11 = state[0], state[1]
    if k11 is None:
        return state
    if k12.ndim == 2:
        return (pin_diagonal(xp, k12, xp.reshape(k11, (-1,))),) + tuple(state[1:])
    if _pair_variances(k12, k11):
        return pin_pairs(xp, state)
    return pin_conv(xp, state, k12.ndim == 6)


# ----------------------------------------------------------------------------------------------- the chain
def run(network: Network, state, xp, pin: bool, replacements=None):
    """Apply ``network.layers`` to ``state`` and return the final state.

    ``pin``: the tile pairs inputs with themselves, so its same-input entries are pinned to the variances
    before the first layer and after every step. ``replacements`` maps a pair of layer kinds, e.g.
    ("activation", "dense"), to ``(applies(first, second) -> bool, fused(network, state, first, second, pin)
    -> state)``, and a single kind, e.g. "avg_pool", to ``(applies(layer) -> bool, fused(network, state, layer,
    pin) -> state)``; ``fused`` runs instead of the reference rules wherever its pair (first) or its row occurs
    and ``applies`` accepts the layers (the fused GPU kernels).
    """
    replacements = replacements or {}
    if pin:
        state = pin_same_inputs(xp, state, network.full_spatial)
    layers, i = network.layers, 0
    while i < len(layers):
        pair = (layers[i].kind, layers[i + 1].kind) if i + 1 < len(layers) else None
        fused, single = replacements.get(pair), replacements.get(layers[i].kind)
        if fused is not None and fused[0](layers[i], layers[i + 1]):
            state = fused[1](network, state, layers[i], layers[i + 1], pin)
            i += 2
        elif single is not None and single[0](layers[i]):
            state = single[1](network, state, layers[i], pin)
            i += 1
        else:
            state = apply(network, state, layers[i], pin, replacements)
            i += 1
        if pin:
            state = pin_same_inputs(xp, state, network.full_spatial)
    return state
