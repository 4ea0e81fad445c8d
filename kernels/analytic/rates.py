"""The arithmetic of the fused CPU loops: its rates on this machine (seconds per add/mul, square root and
arctangent on one thread, measured with the loops' own compiled primitives, ``kernels.analytic._cpu``: numba,
fused multiply-adds, vectorised, on L1-resident arrays of 4096 float64) and its operation counts per image pair
of an image network. The CPU floor benchmark multiplies the two (``python -m compare bench analytic``); memory
traffic is left out.
"""
from __future__ import annotations

import time

import numpy as np

from kernels.analytic import rules

_N = 4096
_REPS = 200


def _per_element(fn, repeats: int) -> float:
    """Seconds per element of ``fn``'s loop: the fastest of ``repeats`` runs after one warm-up (noise only slows
    a loop down)."""
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return best / (_N * _REPS)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_operation_rates(repeats: int = 5) -> dict:
    """Seconds per operation on one thread: {"add/mul", "sqrt", "atan2"} (fastest of ``repeats``; atan2 is the
    faster of NumPy's ``arctan2`` and the loops' branch-free θ)."""
    from kernels.analytic import _cpu   # numba: compiled (once, then cached) on first use
    from kernels.validation import check_scalar
    repeats = check_scalar(repeats, "repeats", int, min_val=1)
    rng = np.random.default_rng(0)
    a, b, c = rng.random(_N) + 0.5, rng.random(_N) * 0.5 + 0.5, rng.random(_N)   # |x·b + c| stays bounded
    out = np.empty(_N)
    multiply_add = _per_element(lambda: _cpu.multiply_add_loop(a, b, c, out, _REPS), repeats) / (2 * _cpu._CHAIN)
    sqrt = _per_element(lambda: _cpu.sqrt_loop(a, out, _REPS), repeats)
    ours = _per_element(lambda: _cpu.theta_loop(a, b - 1.0, out, _REPS), repeats)

    def numpy_atan2():
        for _ in range(_REPS):
            np.arctan2(a, b, out=out)

    return {"add/mul": multiply_add, "sqrt": sqrt, "atan2": min(ours, _per_element(numpy_atan2, repeats))}


def cpu_operation_counts(kernel, feature_shape: tuple) -> dict:
    """{"add/mul", "sqrt", "atan2": count} of one image pair through ``kernel`` (an analytic kernel on images of
    ``feature_shape`` (C, H, W): ``Convolutional`` or ``kernels.stax``) up to its readout, row by row at each
    row's resolution, on every pixel pair where the tile holds pixel pairs (pooling, GAP), every pixel otherwise:

    * the input covariance Σ_c x[c, p]·x'[c, q]/C: 2C add/mul;
    * a convolution's window sums of K and Θ, 2·(fh − 1 + fw − 1) adds at stride 1 (separable), 2·(fh·fw − 1)
      otherwise, and its affine rule, 4; Dense on pixels: 4;
    * an activation's clamp and dual: 13 add/mul, 2 sqrt, 1 atan2 (the ReLU family's, counted so for every dual);
    * pooling: every pixel pair of both windows, K and Θ, 2·(wh·ww)² adds, and its norm, 2;
    * the sum of branches: 2 adds per extra branch; the readout: 2 adds per pixel pair it reads.

    A 3×3 convolution with its ReLU is 25 add/mul, 2 sqrt, 1 atan2 per pixel pair (compare/bench/cpu_floor.py)."""
    from kernels.validation import check_scalar
    if not callable(getattr(kernel, "network", None)) or isinstance(kernel, type):
        raise TypeError("kernel must be an analytic kernel on images (kernels.Convolutional or a kernels.stax "
                        f"network), got {type(kernel).__name__}")
    if isinstance(feature_shape, (str, bytes)) or not hasattr(feature_shape, "__len__") or len(feature_shape) != 3:
        raise ValueError(f"feature_shape must be (C, H, W), three positive integers, got {feature_shape!r}")
    channels, h, w = (check_scalar(n, f"feature_shape[{i}]", int, min_val=1) for i, n in enumerate(feature_shape))
    network = kernel.network(channels, h, w)
    full = network.full_spatial
    counts = {"add/mul": 0.0, "sqrt": 0.0, "atan2": 0.0}

    def pairs(h, w):
        return float(h * w) ** (2 if full else 1)

    def add(n, ops):
        for op, count in ops.items():
            counts[op] += n * count

    def walk(layers, h, w):
        for layer in layers:
            if layer.kind == "readout":
                add(pairs(h, w), {"add/mul": 2})
                break
            if layer.kind in ("conv", "avg_pool"):
                geometry = [rules.axis_geometry(n, f, s, layer.padding, axis) for axis, (n, f, s) in
                            enumerate(zip((h, w), layer.window, layer.strides))]
                h, w = geometry[0][0], geometry[1][0]
                fh, fw = layer.window
                if layer.kind == "conv":
                    window = fh - 1 + fw - 1 if layer.strides == (1, 1) else fh * fw - 1
                    add(pairs(h, w), {"add/mul": 2 * window + 4})
                else:
                    add(pairs(h, w), {"add/mul": 2 * (fh * fw) ** 2 + 2})
            elif layer.kind == "dense":
                add(pairs(h, w), {"add/mul": 4})
            elif layer.kind == "activation":
                add(pairs(h, w), {"add/mul": 13, "sqrt": 2, "atan2": 1})
            elif layer.kind == "branches":
                for branch in layer.branches:
                    h_out, w_out = walk(branch, h, w)
                add(pairs(h_out, w_out), {"add/mul": 2 * (len(layer.branches) - 1)})
                h, w = h_out, w_out
        return h, w

    add(pairs(h, w), {"add/mul": 2 * channels})
    walk(network.layers, h, w)
    return counts
