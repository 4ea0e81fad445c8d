"""The layer table and the pure per-layer kernel rules that every engine reads.

A network, as its kernel sees it, is a ``Network``: the ordered ``layers``, each a ``Layer`` that carries its
own hyperparameters (weight and bias scales, parameterization, fan-in, filter size, dual activation, trained or
frozen). The reference engine (``run``) applies one pure rule per layer to a tile's *state*
``(k12, k11, k22, ntk)``: the NNGP cross term, the two diagonals (variances of the rows' and of the columns'
inputs, broadcastable against k12; None once the readout has averaged the pixels away) and the NTK (None when
only the NNGP is wanted). The fused engines read the same table: the numba loops (``kernels.analytic._cpu``,
driven by ``kernels.analytic._cpu_drivers``) take its per-layer scalars as arrays, and the CUDA kernels
(``kernels.analytic._cuda``) replace pairs of rules in ``run``. Nothing here imports them. Conventions
(neural-tangents' ``stax``, docs/conventions.md):

* Dense/Conv, 'ntk':      K ← w²·K + b²,  Θ ← K_new + w²·Θ;
* Dense/Conv, 'standard': Θ ← n_in·K_old + w²·Θ + [bias],  K ← w²·K + b²;  ``b_std=None`` means no bias;
* activation: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)] (``kernels.analytic.duals``), diagonals K_ii ← E[φ(u)²];
* convolution ('SAME' zero padding, f×f filter): every term is first summed over the aligned patch,
  K(p, q) ← Σ_o K(p+o, q+o) / f² (Arora et al. 2019, CNTK), the per-pixel variances alike;
* readout: 'gap' averages over all pixel pairs, 'flatten' over matching pixels.

Rules consume their state: a tile owns its arrays, so they are updated in place where possible.
"""
from __future__ import annotations

import dataclasses

from kernels.analytic.duals import Dual
from kernels.backend import get_namespace

LAYER_KINDS = ("dense", "conv", "activation", "readout")
# activations whose kernels are positively homogeneous: φ(c·x) = c·φ(x) for c > 0
PIECEWISE_LINEAR = ("relu", "leaky_relu", "abs", "identity")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One row of the layer table: ``kind`` in LAYER_KINDS and the hyperparameters its rule reads.

    Dense and conv layers: ``w_std``, ``b_std`` (None: no bias), ``parameterization`` ('ntk' or 'standard'),
    ``fan_in`` (n_in: inputs per output unit, width or channels × filter area; only the 'standard' NTK reads
    it), ``filter_size`` (conv), ``trained=False`` for a frozen layer (its own NTK term is left out).
    Activations: ``dual``. Readouts have no parameters (the network's layout says 'gap' or 'flatten').
    """

    kind: str
    fan_in: int = 0
    trained: bool = True
    w_std: float = 1.0
    b_std: float | None = None
    parameterization: str = "ntk"
    filter_size: int = 1
    dual: Dual | None = None

    @property
    def bias_terms(self) -> tuple:
        """(b², the 'standard' NTK's bias term): (0, 0) without a bias."""
        return (0.0, 0.0) if self.b_std is None else (float(self.b_std) ** 2, 1.0)


def dense(fan_in: int, w_std: float, b_std, parameterization: str, trained: bool = True) -> Layer:
    return Layer("dense", fan_in, trained, float(w_std), None if b_std is None else float(b_std), parameterization)


def conv(fan_in: int, w_std: float, b_std, parameterization: str, filter_size: int, trained: bool = True) -> Layer:
    return Layer("conv", fan_in, trained, float(w_std), None if b_std is None else float(b_std), parameterization,
                 filter_size)


def activation(dual: Dual) -> Layer:
    return Layer("activation", dual=dual)


def readout() -> Layer:
    return Layer("readout")


@dataclasses.dataclass(frozen=True)
class Network:
    """A network as its kernel sees it: the layers in order.

    ``full_spatial`` is True when a conv tile holds every pixel pair (B1, B2, H, W, H, W) ('gap' readout), False
    when it holds matching pixels only (B1, B2, H, W) ('flatten'); fully connected networks ignore it.
    """

    layers: tuple
    full_spatial: bool = False

    @property
    def duals(self) -> tuple:
        return tuple(layer.dual for layer in self.layers if layer.kind == "activation")

    @property
    def closed_form(self) -> bool:
        """Every activation has a closed-form dual (the fused engines need this; quadrature runs ``run``)."""
        return all(d.closed for d in self.duals)

    @property
    def homogeneous(self) -> bool:
        """K(a·x, b·x') = a·b·K(x, x') for a, b > 0: piecewise-linear activations and no bias term anywhere
        (b_std None, or 0 with the 'ntk' parameterization, whose NTK then gets no constant either)."""
        for layer in self.layers:
            if layer.kind == "activation" and layer.dual.name not in PIECEWISE_LINEAR:
                return False
            if layer.kind in ("dense", "conv") and not (
                    layer.b_std is None or (layer.b_std == 0 and layer.parameterization == "ntk")):
                return False
        return True


# ----------------------------------------------------------------------------------------------- diagonals
def affine_variance(v, w_std: float, b_std):
    """K_ii ← w²·K_ii + b² (None stays None)."""
    if v is None:
        return None
    return w_std * w_std * v + (0.0 if b_std is None else b_std * b_std)


def activation_variance(v, dual: Dual):
    """K_ii ← E[φ(u)²] for u ~ N(0, K_ii) (None stays None)."""
    return None if v is None else dual.nngp(v, v, v)


def conv_variances(k11, k22, filter_size: int, full_spatial: bool):
    """Patch sums of the per-pixel variances: (B1, 1, H, W[, 1, 1]) and (1, B2, [1, 1,] H, W) shaped."""
    k11 = patch_sum(k11, ((2,), (3,)), filter_size)
    k22 = patch_sum(k22, ((4,), (5,)) if full_spatial else ((2,), (3,)), filter_size)
    return k11, k22


def variance_chain(network: Network, var, spread):
    """K(x, x) before each activation of ``network``, from the input variances ``var`` (a list, one array per
    activation): Dense K ← w²·K + b², Conv K ← w²·spread(K) + b² (``spread``: the per-pixel patch sum of the
    conv layer's filter size), activation K ← E[φ(u)²]. The fused engines read the dual at these variances."""
    out = []
    for layer in network.layers:
        if layer.kind in ("dense", "conv"):
            if layer.kind == "conv":
                var = spread(var, layer.filter_size)
            var = affine_variance(var, layer.w_std, layer.b_std)
        elif layer.kind == "activation":
            out.append(var)
            var = activation_variance(var, layer.dual)
        else:   # the readout: no pixels, no variances after it
            break
    return out


# ----------------------------------------------------------------------------------------------- layer rules
def dense_rule(state, w_std: float, b_std, parameterization: str, fan_in: int, trained: bool = True):
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
    """Elementwise nonlinearity: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)], diagonals K ← E[φ(u)²]."""
    k12, k11, k22, ntk = state
    if ntk is None:
        k12 = dual.nngp(k12, k11, k22)
    else:
        k12, factor = dual.both(k12, k11, k22)
        ntk *= factor
    return k12, activation_variance(k11, dual), activation_variance(k22, dual), ntk


def patch_sum(a, axis_groups, filter_size: int):
    """Σ_o a[p + o] / f² over offsets o ∈ [−r, r]² ('SAME' zero padding, r = f//2).

    ``axis_groups`` pairs each spatial direction with the axes that shift together: ((2, 4), (3, 5)) for a
    pixel-pair tile (B1, B2, H, W, H, W) — both pixels of the pair move by the same offset — or ((1,), (2,))
    for per-pixel maps (…, H, W). The 2-D sum is separable into one 1-D sum per direction.
    """
    r = filter_size // 2
    for axes in axis_groups:
        size = a.shape[axes[0]]
        out = a + 0.0
        for d in range(1, r + 1):
            if d >= size:
                break
            for shift in (d, -d):
                dst, src = [slice(None)] * a.ndim, [slice(None)] * a.ndim
                for ax in axes:
                    dst[ax] = slice(max(0, -shift), size - max(0, shift))
                    src[ax] = slice(max(0, shift), size - max(0, -shift))
                out[tuple(dst)] += a[tuple(src)]
        a = out
    return a / float(filter_size * filter_size)


def conv_rule(state, w_std: float, b_std, parameterization: str, fan_in: int, filter_size: int,
              full_spatial: bool, trained: bool = True):
    """Convolution: patch-sum every term (pixel pairs, per-pixel variances), then the affine rule."""
    k12, k11, k22, ntk = state
    pairs = ((2, 4), (3, 5)) if full_spatial else ((2,), (3,))
    k12 = patch_sum(k12, pairs, filter_size)
    if ntk is not None:
        ntk = patch_sum(ntk, pairs, filter_size)
    k11, k22 = conv_variances(k11, k22, filter_size, full_spatial)
    return dense_rule((k12, k11, k22, ntk), w_std, b_std, parameterization, fan_in, trained)


def readout_rule(state, full_spatial: bool):
    """'gap': mean over all pixel pairs; 'flatten': mean over matching pixels; the tile becomes (B1, B2).

    The diagonals are not carried on: only the Dense readout follows, and it needs none.
    """
    k12, _, _, ntk = state
    xp = get_namespace(k12)
    axes = (2, 3, 4, 5) if full_spatial else (2, 3)
    return xp.mean(k12, axis=axes), None, None, None if ntk is None else xp.mean(ntk, axis=axes)


def apply(network: Network, state, layer: Layer):
    """The reference rule of ``layer`` (its own hyperparameters, the network's tile layout)."""
    if layer.kind == "dense":
        return dense_rule(state, layer.w_std, layer.b_std, layer.parameterization, layer.fan_in, layer.trained)
    if layer.kind == "conv":
        return conv_rule(state, layer.w_std, layer.b_std, layer.parameterization, layer.fan_in, layer.filter_size,
                         network.full_spatial, layer.trained)
    if layer.kind == "activation":
        return activation_rule(state, layer.dual)
    if layer.kind == "readout":
        return readout_rule(state, network.full_spatial)
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


def pin_same_inputs(xp, state, full_spatial: bool):
    """Pin the same-input entries of a diagonal tile's state (FC (n, n) or conv tiles); no-op once the
    diagonals are gone (after the readout)."""
    k12, k11 = state[0], state[1]
    if k11 is None:
        return state
    if k12.ndim == 2:
        return (pin_diagonal(xp, k12, xp.reshape(k11, (-1,))),) + tuple(state[1:])
    return pin_conv(xp, state, full_spatial)


# ----------------------------------------------------------------------------------------------- the chain
def run(network: Network, state, xp, pin: bool, replacements=None):
    """Apply ``network.layers`` to ``state`` and return the final state.

    ``pin``: the tile pairs inputs with themselves, so its same-input entries are pinned to the variances
    before the first layer and after every step. ``replacements`` maps a pair of layer kinds, e.g.
    ("activation", "dense"), to ``(applies(first, second) -> bool, fused(network, state, first, second, pin)
    -> state)``; ``fused`` runs instead of the two reference rules wherever that pair occurs and ``applies``
    accepts its two layers (the fused GPU kernels).
    """
    replacements = replacements or {}
    if pin:
        state = pin_same_inputs(xp, state, network.full_spatial)
    layers, i = network.layers, 0
    while i < len(layers):
        pair = (layers[i].kind, layers[i + 1].kind) if i + 1 < len(layers) else None
        fused = replacements.get(pair)
        if fused is not None and fused[0](layers[i], layers[i + 1]):
            state = fused[1](network, state, layers[i], layers[i + 1], pin)
            i += 2
        else:
            state = apply(network, state, layers[i])
            i += 1
        if pin:
            state = pin_same_inputs(xp, state, network.full_spatial)
    return state
