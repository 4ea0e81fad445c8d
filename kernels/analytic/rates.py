"""The arithmetic rates of the fused CPU loops on this machine: seconds per add/mul, square root and arctangent
on one thread, measured with the loops' own compiled primitives (``kernels.analytic._cpu``: numba, fused
multiply-adds, vectorised) on L1-resident arrays (4096 float64). The CPU floor benchmark multiplies them by the
operations per pixel pair (``python -m compare bench analytic``); memory traffic is left out.
"""
from __future__ import annotations

import time

import numpy as np

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
