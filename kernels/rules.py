"""Pure per-layer kernel rules: how one layer of an infinitely wide network maps the kernel state to the next.

The *state* of a tile of input pairs is ``(k12, k11, k22, ntk)``: the NNGP cross term, the two diagonals
(variances of the rows' and of the columns' inputs, broadcastable against k12; None once the readout has
averaged the pixels away) and the NTK (None when only the NNGP is wanted). A network is a ``Network``: the
ordered ``layers`` plus the hyperparameters every rule reads. ``run`` applies it to a state; the CPU path
applies every rule, the fused GPU path (``kernels._analytic_cuda``) passes ``replacements`` for pairs of
layers. Both import this module, and nothing here imports them. Conventions (neural-tangents' ``stax``,
docs/conventions.md):

* Dense/Conv, 'ntk':      K ← w²·K + b²,  Θ ← K_new + w²·Θ;
* Dense/Conv, 'standard': Θ ← n_in·K_old + w²·Θ + [bias],  K ← w²·K + b²;  ``b_std=None`` means no bias;
* activation: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)] (``kernels.duals``), diagonals K_ii ← E[φ(u)²];
* convolution ('SAME' zero padding, f×f filter): every term is first summed over the aligned patch,
  K(p, q) ← Σ_o K(p+o, q+o) / f² (Arora et al. 2019, CNTK), the per-pixel variances alike;
* readout: 'gap' averages over all pixel pairs, 'flatten' over matching pixels.

Rules consume their state: a tile owns its arrays, so they are updated in place where possible.
"""
from __future__ import annotations

import dataclasses

from kernels.backend import get_namespace
from kernels.duals import Dual

LAYER_KINDS = ("dense", "conv", "activation", "readout")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One step of a network: ``kind`` in LAYER_KINDS; ``fan_in`` is n_in of a dense or conv layer (inputs per
    output unit: width, or channels × filter area), which only the 'standard' parameterization's NTK reads."""

    kind: str
    fan_in: int = 0
    scales: tuple | None = None   # (w_std, b_std) of this dense layer when not the network's (a readout's own)


@dataclasses.dataclass(frozen=True)
class Network:
    """A network as its kernel sees it: the layers in order and what their rules read.

    ``full_spatial`` is True when a conv tile holds every pixel pair (B1, B2, H, W, H, W) ('gap' readout), False
    when it holds matching pixels only (B1, B2, H, W) ('flatten'); fully connected networks ignore it.
    """

    layers: tuple
    w_std: float
    b_std: float | None
    parameterization: str
    dual: Dual
    filter_size: int = 1
    full_spatial: bool = False


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


# ----------------------------------------------------------------------------------------------- layer rules
def dense_rule(state, w_std: float, b_std, parameterization: str, fan_in: int):
    """Affine layer (Dense, or a Conv whose patch sum was already taken): returns the next state."""
    k12, k11, k22, ntk = state
    w2, b2 = w_std * w_std, (0.0 if b_std is None else b_std * b_std)
    if ntk is not None:
        ntk *= w2
        if parameterization == "standard":
            ntk += fan_in * k12
            if b_std is not None:
                ntk += 1.0
    k12 *= w2
    if b2:
        k12 += b2
    if ntk is not None and parameterization == "ntk":
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
              full_spatial: bool):
    """Convolution: patch-sum every term (pixel pairs, per-pixel variances), then the affine rule."""
    k12, k11, k22, ntk = state
    pairs = ((2, 4), (3, 5)) if full_spatial else ((2,), (3,))
    k12 = patch_sum(k12, pairs, filter_size)
    if ntk is not None:
        ntk = patch_sum(ntk, pairs, filter_size)
    k11, k22 = conv_variances(k11, k22, filter_size, full_spatial)
    return dense_rule((k12, k11, k22, ntk), w_std, b_std, parameterization, fan_in)


def readout_rule(state, full_spatial: bool):
    """'gap': mean over all pixel pairs; 'flatten': mean over matching pixels; the tile becomes (B1, B2).

    The diagonals are not carried on: only the Dense readout follows, and it needs none.
    """
    k12, _, _, ntk = state
    xp = get_namespace(k12)
    axes = (2, 3, 4, 5) if full_spatial else (2, 3)
    return xp.mean(k12, axis=axes), None, None, None if ntk is None else xp.mean(ntk, axis=axes)


def apply(network: Network, state, layer: Layer):
    """The reference rule of ``layer`` with the network's hyperparameters."""
    if layer.kind == "dense":
        w_std, b_std = layer.scales or (network.w_std, network.b_std)
        return dense_rule(state, w_std, b_std, network.parameterization, layer.fan_in)
    if layer.kind == "conv":
        return conv_rule(state, network.w_std, network.b_std, network.parameterization, layer.fan_in,
                         network.filter_size, network.full_spatial)
    if layer.kind == "activation":
        return activation_rule(state, network.dual)
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
    ("activation", "dense"), to ``fused(network, state, first, second, pin) -> state``, used instead of the two
    reference rules wherever that pair occurs (the fused GPU kernels).
    """
    replacements = replacements or {}
    if pin:
        state = pin_same_inputs(xp, state, network.full_spatial)
    layers, i = network.layers, 0
    while i < len(layers):
        pair = (layers[i].kind, layers[i + 1].kind) if i + 1 < len(layers) else None
        if pair in replacements:
            state = replacements[pair](network, state, layers[i], layers[i + 1], pin)
            i += 2
        else:
            state = apply(network, state, layers[i])
            i += 1
        if pin:
            state = pin_same_inputs(xp, state, network.full_spatial)
    return state
