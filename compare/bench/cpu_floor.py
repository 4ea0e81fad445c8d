"""The CPU floor of the analytic image kernels: their arithmetic per pixel pair and layer at this machine's rate.

Per pixel pair and layer the conv NNGP/NTK must do (kernels/analytic/_cpu.py, GAP readout, 3×3 filter):

* two 3×3 patch sums, K and Θ, separable: 2 + 2 adds each                      →  8 add
* the affine rule K ← w²ΣK + b², Θ ← w²ΣΘ + K                                   →  4 add/mul
* the correlation clamp: b = √(k11·k22) (1), |k12| against b·(1 − 16·eps) (1)      → 2 add/mul, 1 sqrt
* the dual: s² = (b − |k12|)(b + |k12|) (3), dot = c₊(π − θ) + c₋θ (4), K = c·s + k12·dot (3), Θ·dot (1)
                                                                                → 11 add/mul, 1 sqrt, 1 atan2

so 25 add/mul, two square roots and one arctangent (``OPS_PER_PIXEL_PAIR``); ``kernels.cpu_operation_counts``
counts any image network (``kernels.stax``) the same way, row by row at each row's resolution.

The rates come from ``kernels.cpu_operation_rates`` (L1-resident arrays, one thread, compiled by numba with fused
multiply-adds as the kernel's loops are: add/mul as eight chained multiply-adds per element held in registers,
sqrt as a square-root stream, atan2 as the faster of NumPy's ``arctan2`` and the fused loop's branch-free θ).
Memory traffic is left out: the floor is what the arithmetic alone costs.
"""
from __future__ import annotations

from kernels import cpu_operation_counts, cpu_operation_rates

OPS_PER_PIXEL_PAIR = {"add/mul": 25, "sqrt": 2, "atan2": 1}


def rates(repeats: int = 5) -> dict:
    """Seconds per operation on one thread: {"add/mul", "sqrt", "atan2"} (``kernels.cpu_operation_rates``)."""
    return cpu_operation_rates(repeats)


def seconds(operations: dict, threads: int, rate: dict) -> float:
    """Time of ``operations`` ({op: count}) at ``rate``, over ``threads`` cores."""
    return sum(count * rate[op] for op, count in operations.items()) / threads


def floor_seconds(n_pixel_pair_layers: float, threads: int, rate: dict) -> float:
    """Time of ``n_pixel_pair_layers`` × the per-pixel-pair operations at ``rate``, over ``threads`` cores."""
    return seconds({op: n_pixel_pair_layers * count for op, count in OPS_PER_PIXEL_PAIR.items()}, threads, rate)


def network_seconds(kernel, feature_shape: tuple, n_pairs: float, threads: int, rate: dict) -> float:
    """The floor of ``n_pairs`` image pairs through ``kernel`` (``kernels.cpu_operation_counts``)."""
    per_pair = cpu_operation_counts(kernel, feature_shape)
    return seconds({op: count * n_pairs for op, count in per_pair.items()}, threads, rate)
