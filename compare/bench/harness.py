"""Shared benchmark machinery: timing (median of repeats after warm-up), machine description, tables.

Every benchmark prints: machine, sizes, dtype, median of >= 5 repeats after warm-up, and the ratio
against the peer measured in the same run (docs/conventions.md, *Benchmarks*).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time

from compare.present.tables import format_table  # noqa: F401  (re-exported: the benchmarks print with it)


@dataclasses.dataclass
class Timing:
    median: float
    times: list

    def __str__(self):
        return format_seconds(self.median)


def measure(fn, repeats: int = 5, warmup: int = 1, sync=None) -> Timing:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs.

    ``sync`` (e.g. a CUDA synchronise) is called after each run, inside the timed region.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), times)


def format_seconds(seconds: float) -> str:
    if seconds != seconds:  # NaN: not measured
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def machine_info() -> str:
    """One line naming the CPU (and GPU when CuPy sees one), core count and library versions."""
    import numpy
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores", f"Python {platform.python_version()}",
             f"NumPy {numpy.__version__}"]
    try:
        import torch
        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    gpu = gpu_name()
    if gpu:
        parts.append(f"GPU {gpu}")
    return "; ".join(parts)


def gpu_name() -> str | None:
    """The name of CUDA device 0 as CuPy reports it, or None without a GPU."""
    from kernels import gpu_available
    if not gpu_available():
        return None
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def ratio(peer: float, ours: float) -> str:
    """How many times faster ours is than the peer ("-" when either was not measured)."""
    if peer != peer or ours != ours or ours <= 0:
        return "-"
    return f"{peer / ours:.1f}×"
