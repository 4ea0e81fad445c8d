"""Drivers of the fused CPU loops: read the layer table (``kernels.analytic.rules.Network``), fill the loops'
per-layer parameter tables, cut the work into tiles or chunks of image pairs, and run them on threads.

The loops (``kernels.analytic._cpu``) cover two shapes of network, checked by ``unsupported``:

* fully connected: Dense, then any number of [activation, Dense] (activations with a closed form, each layer with
  its own scales, parameterization and trained flag);
* convolutional: ``depth`` × [Conv, activation] with one odd filter size ('SAME', stride 1), the readout, then
  Dense.

(``kernels.analytic.rules.fused_shape`` names these shapes; every other network runs the reference rules.)

Inputs arrive in float64 (``kernels.analytic._numerics`` decides the working precision); outputs are float64.
"""
from __future__ import annotations

import numpy as np

from kernels import backend
from kernels.analytic import _cpu, rules


def _code(layer) -> float:
    return float(_cpu.ACTIVATION_CODES[layer.dual.name])


def unsupported(network: rules.Network, image: bool):
    """Why the fused loops cannot run ``network`` (None when they can)."""
    acts = [layer for layer in network.layers if layer.kind == "activation"]
    for layer in acts:
        if layer.dual.name not in _cpu.ACTIVATION_CODES:
            if not layer.dual.closed:
                return (f"activation {layer.dual.name!r} has no closed-form dual (quadrature runs in the "
                        "reference path)")
            return (f"activation {layer.dual.name!r} is not one of the fused loops' duals "
                    f"({', '.join(_cpu.ACTIVATION_CODES)}); the reference rules run it")
    shape = rules.fused_shape(network)
    if not image:
        if shape != "fc":
            return "the fused fully connected loop needs Dense, then [activation, Dense] blocks"
        return None
    if shape != "conv":
        return ("the fused convolutional loop needs [Conv, activation] blocks with one square odd 'SAME' stride-1 "
                "filter, the readout ('gap' or 'flatten'), then Dense")
    return None


def _affine_row(layer, area: int = 1) -> list:
    """The affine part of a parameter row (SCALE, SHIFT, FAN, ON_NTK, ON_STD, NTK_BIAS) of a Dense or Conv layer
    (``area`` = f²: a conv layer's patch sum is a sum, its mean's 1/f² goes into SCALE and FAN)."""
    b2, ntk_bias = layer.bias_terms
    standard = layer.parameterization == "standard"
    on = 1.0 if layer.trained else 0.0
    return [layer.w_std ** 2 / area, b2, layer.fan_in / area, 0.0 if standard else on, on if standard else 0.0,
            ntk_bias]


def fc_params(network: rules.Network) -> np.ndarray:
    """(depth + 1, N_FIELDS): row l holds Dense layer l and, for l ≥ 1, the activation before it."""
    rows, dual = [], [0.0, 0.0]
    for layer in network.layers:
        if layer.kind == "activation":
            dual = [_code(layer), float(layer.dual.slope)]
        else:
            rows.append(dual + _affine_row(layer))
    return np.array(rows, dtype=np.float64)


def conv_params(network: rules.Network) -> np.ndarray:
    """(max(depth, 1), N_FIELDS): row l holds conv layer l and the activation after it (depth 0: one unused row)."""
    rows, layers = [], network.layers
    for conv, act in zip(layers[0:-2:2], layers[1:-2:2]):
        rows.append([_code(act), float(act.dual.slope)] + _affine_row(conv, conv.filter_size ** 2))
    return np.array(rows or [[0.0] * _cpu.N_FIELDS], dtype=np.float64)


def fc_tile_function(network: rules.Network, x1, x2, symmetric: bool, want_ntk: bool):
    """Tile function of a fully connected network on NumPy: the Gram product x1·x2ᵀ/d by BLAS, then ``fc_tile``."""
    d = x1.shape[1]
    a = np.asarray(x1, dtype=np.float64)
    b = a if symmetric else np.asarray(x2, dtype=np.float64)
    sq1 = np.sum(a * a, axis=1) / d
    sq2 = sq1 if symmetric else np.sum(b * b, axis=1) / d
    n_act = len(network.duals)
    chain1 = np.array(rules.variance_chain(network, sq1, None)).reshape(n_act, a.shape[0])
    chain2 = chain1 if symmetric else np.array(rules.variance_chain(network, sq2, None)).reshape(n_act, b.shape[0])
    params = fc_params(network)

    def tile(i0, i1, j0, j1):
        k = a[i0:i1] @ b[j0:j1].T
        k /= d
        pin = symmetric and i0 == j0
        if pin:
            np.fill_diagonal(k, sq1[i0:i1])
        t = np.empty_like(k)
        _cpu.fc_tile(k.reshape(-1), t.reshape(-1), j1 - j0, np.ascontiguousarray(chain1[:, i0:i1]),
                     np.ascontiguousarray(chain2[:, j0:j1]), pin, params)
        return k, (t if want_ntk else None)

    return tile


def conv_kernels(network: rules.Network, x1, x2, want: tuple, n_jobs: int, block_size=None) -> list:
    """The wanted (NNGP, NTK) of a convolutional network on NumPy: ``conv_pairs`` over chunks of image pairs on
    ``n_jobs`` threads, then the Dense readout rule. With x2 None only the pairs i <= j are computed (and
    mirrored). A chunk holds a multiple of LANES pairs (``block_size``² pairs when given), a few chunks per
    thread, so small kernels keep every SIMD lane and every thread busy."""
    symmetric = x2 is None
    a = np.ascontiguousarray(x1, dtype=np.float64)
    b = a if symmetric else np.ascontiguousarray(x2, dtype=np.float64)
    n1, n2 = a.shape[0], b.shape[0]
    n_chan, h, w = a.shape[1:]
    depth, full = len(network.duals), network.full_spatial
    filter_size = next((layer.filter_size for layer in network.layers if layer.kind == "conv"), 1)
    readout = network.layers[-1]

    def chain(x):
        if depth == 0:
            return np.empty((x.shape[0], 0, h, w))
        var = np.sum(x * x, axis=1) / n_chan
        spread = lambda v, f: rules.patch_sum(v, ((1,), (2,)), f)   # noqa: E731
        return np.ascontiguousarray(np.stack(rules.variance_chain(network, var, spread), axis=1))

    chain1 = chain(a)
    chain2 = chain1 if symmetric else chain(b)
    params = conv_params(network)
    outs = [np.empty((n1, n2)) if wanted else None for wanted in want]
    # pair p: row-major over the upper triangle (x2 None) or the full grid
    n_pairs = n1 * (n1 + 1) // 2 if symmetric else n1 * n2
    row_start = np.concatenate([[0], np.cumsum(np.arange(n1, 0, -1))]) if symmetric else None
    chunk = block_size ** 2 if block_size else min(4096, -(-n_pairs // (4 * n_jobs)))
    chunk = -(-max(chunk, 1) // _cpu.LANES) * _cpu.LANES

    def work(p0):
        p = np.arange(p0, min(p0 + chunk, n_pairs))
        if symmetric:
            ii = np.searchsorted(row_start, p, side="right") - 1
            jj = ii + (p - row_start[ii])
        else:
            ii, jj = p // n2, p % n2
        out_k, out_t = np.empty(p.size), np.empty(p.size)
        _cpu.conv_pairs(a, b, chain1, chain2, ii, jj, symmetric, full, want[1], filter_size, params, out_k, out_t)
        k, _, _, t = rules.apply(network, (out_k, None, None, out_t if want[1] else None), readout)
        for out, values in zip(outs, (k, t)):
            if out is not None:
                out[ii, jj] = values
                if symmetric:
                    out[jj, ii] = values

    backend.thread_map(work, range(0, n_pairs, chunk), n_jobs)
    return [o for o in outs if o is not None]
