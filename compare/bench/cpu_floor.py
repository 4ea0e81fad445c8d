"""The CPU floor of the analytic image kernels: their arithmetic per pixel pair and layer at this machine's rate.

Per pixel pair and layer the conv NNGP/NTK must do (kernels/analytic/_cpu.py, GAP readout, 3×3 filter):

* two 3×3 patch sums, K and Θ, separable: 2 + 2 adds each                      →  8 add
* the affine rule K ← w²ΣK + b², Θ ← w²ΣΘ + K                                   →  4 add/mul
* the correlation clamp: b = √(k11·k22) (1), |k12| against b·(1 − 16·eps) (1)      → 2 add/mul, 1 sqrt
* the dual: s² = (b − |k12|)(b + |k12|) (3), dot = c₊(π − θ) + c₋θ (4), K = c·s + k12·dot (3), Θ·dot (1)
                                                                                → 11 add/mul, 1 sqrt, 1 atan2

so 25 add/mul, two square roots and one arctangent (``OPS_PER_PIXEL_PAIR``). ``network_operations`` counts a
whole layer table (``kernels.analytic.rules.Network``) the same way, row by row at each row's resolution: the
input covariance Σ_c x[c, p]·x'[c, q]/C (2C add/mul per pixel pair), a convolution's window sums of K and Θ
(2·(fh·fw − 1) adds per output pixel pair, separable 2·(fh − 1 + fw − 1) at stride 1) and its affine rule (4),
Dense on pixels (4), an activation's dual (the ReLU family's 15 add/mul, 2 sqrt, 1 atan2, counted so for every
dual), pooling (every pixel pair of both windows summed, K and Θ: 2·(wh·ww)² adds per output pixel pair, and the
norm, 2 mul), the sum of branches (2 adds per pixel pair and extra branch) and the readout (2 adds per pixel
pair it reads); every pixel pair where the tile holds pixel pairs (``full_spatial``), every pixel otherwise.

The rates come from ``kernels.cpu_operation_rates`` (L1-resident arrays, one thread, compiled by numba with fused
multiply-adds as the kernel's loops are: add/mul as eight chained multiply-adds per element held in registers,
sqrt as a square-root stream, atan2 as the faster of NumPy's ``arctan2`` and the fused loop's branch-free θ).
Memory traffic is left out: the floor is what the arithmetic alone costs.
"""
from __future__ import annotations

from kernels import cpu_operation_rates

OPS_PER_PIXEL_PAIR = {"add/mul": 25, "sqrt": 2, "atan2": 1}
DUAL_OPS = {"add/mul": 13, "sqrt": 2, "atan2": 1}      # the clamp and the dual of the list above


def rates(repeats: int = 5) -> dict:
    """Seconds per operation on one thread: {"add/mul", "sqrt", "atan2"} (``kernels.cpu_operation_rates``)."""
    return cpu_operation_rates(repeats)


def seconds(operations: dict, threads: int, rate: dict) -> float:
    """Time of ``operations`` ({op: count}) at ``rate``, over ``threads`` cores."""
    return sum(count * rate[op] for op, count in operations.items()) / threads


def floor_seconds(n_pixel_pair_layers: float, threads: int, rate: dict) -> float:
    """Time of ``n_pixel_pair_layers`` × the per-pixel-pair operations at ``rate``, over ``threads`` cores."""
    return seconds({op: n_pixel_pair_layers * count for op, count in OPS_PER_PIXEL_PAIR.items()}, threads, rate)


def network_operations(network, feature_shape: tuple) -> dict:
    """{op: count} of one image pair through the rows of ``network`` up to its readout (module docstring), on
    images of ``feature_shape`` (C, H, W)."""
    from kernels.analytic import rules
    channels, h, w = feature_shape
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
                add(pairs(h, w), DUAL_OPS)
            elif layer.kind == "branches":
                for branch in layer.branches:
                    h_out, w_out = walk(branch, h, w)
                add(pairs(h_out, w_out), {"add/mul": 2 * (len(layer.branches) - 1)})
                h, w = h_out, w_out
        return h, w

    add(pairs(h, w), {"add/mul": 2 * channels})
    walk(network.layers, h, w)
    return counts
