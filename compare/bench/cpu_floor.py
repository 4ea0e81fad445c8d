"""The CPU floor of the analytic conv kernel: its arithmetic per pixel pair and layer at this machine's rate.

Per pixel pair and layer the conv NNGP/NTK must do (kernels/_analytic_cpu.py, GAP readout, 3×3 filter):

* two 3×3 patch sums, K and Θ, separable: 2 + 2 adds each                      →  8 add
* the affine rule K ← w²ΣK + b², Θ ← w²ΣΘ + K                                   →  4 add/mul
* the correlation clamp: b = √(k11·k22) (1), |k12| against b·(1 − 16·eps) (1)      → 2 add/mul, 1 sqrt
* the dual: s² = (b − |k12|)(b + |k12|) (3), dot = c₊(π − θ) + c₋θ (4), K = c·s + k12·dot (3), Θ·dot (1)
                                                                                → 11 add/mul, 1 sqrt, 1 atan2

so 25 add/mul, two square roots and one arctangent. The rates are measured here on L1-resident arrays
(4096 float64, one thread, compiled and vectorised by numba with fused multiply-adds, as the kernel's
loops are): add/mul as eight chained multiply-adds per element held in registers (16 operations), sqrt as a
square-root stream, atan2 as the faster of NumPy's ``arctan2`` and the fused loop's vectorised ``_theta``.
Memory traffic is left out: the floor is what the arithmetic alone costs.
"""
from __future__ import annotations

import numba
import numpy as np

from compare.bench import harness
from kernels.analytic._cpu import _theta

OPS_PER_PIXEL_PAIR = {"add/mul": 25, "sqrt": 2, "atan2": 1}
_N = 4096
_REPS = 200
_CHAIN = 8          # multiply-adds per element in the add/mul loop
_JIT = dict(error_model="numpy", fastmath={"contract"})   # not cached: _theta lives in another file


@numba.njit(**_JIT)
def _multiply_add(a, b, c, out, reps):
    for _ in range(reps):
        for m in range(a.shape[0]):
            x, y, z = a[m], b[m], c[m]
            for _ in range(_CHAIN):
                x = x * y + z
            out[m] = x


@numba.njit(**_JIT)
def _sqrt(a, out, reps):
    for _ in range(reps):
        for m in range(a.shape[0]):
            out[m] = np.sqrt(a[m])


@numba.njit(**_JIT)
def _atan2(s, k, out, reps):
    for _ in range(reps):
        for m in range(s.shape[0]):
            out[m] = _theta(s[m], k[m])


def _per_element(fn, repeats) -> float:
    """Seconds per element of ``fn``'s loop: the fastest of ``repeats`` runs (noise only slows a loop down)."""
    return min(harness.measure(fn, repeats).times) / (_N * _REPS)


def rates(repeats: int = 5) -> dict:
    """Seconds per operation on one thread: {"add/mul", "sqrt", "atan2"} (fastest of ``repeats``)."""
    rng = np.random.default_rng(0)
    a, b, c = rng.random(_N) + 0.5, rng.random(_N) * 0.5 + 0.5, rng.random(_N)   # |x·b + c| stays bounded
    out = np.empty(_N)
    multiply_add = _per_element(lambda: _multiply_add(a, b, c, out, _REPS), repeats) / (2 * _CHAIN)
    sqrt = _per_element(lambda: _sqrt(a, out, _REPS), repeats)
    ours = _per_element(lambda: _atan2(a, b - 1.0, out, _REPS), repeats)

    def numpy_atan2():
        for _ in range(_REPS):
            np.arctan2(a, b, out=out)

    return {"add/mul": multiply_add, "sqrt": sqrt, "atan2": min(ours, _per_element(numpy_atan2, repeats))}


def floor_seconds(n_pixel_pair_layers: float, threads: int, rate: dict) -> float:
    """Time of ``n_pixel_pair_layers`` × the per-pixel-pair operations at ``rate``, over ``threads`` cores."""
    per = sum(count * rate[op] for op, count in OPS_PER_PIXEL_PAIR.items())
    return n_pixel_pair_layers * per / threads
