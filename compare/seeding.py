"""Seeded weight draws that stay reproducible when runs share a process.

The networks draw w₀ from torch's global generator. Runs executing in threads of one process (a dask worker
with several threads, e.g. ``LocalCluster(processes=False)``) would interleave their draws, so the same run
gets other weights depending on timing. ``seeded_torch(seed)`` holds a process-wide lock for the block, seeds
the global CPU generator and restores its previous state afterwards.
"""
from __future__ import annotations

import contextlib
import threading

_LOCK = threading.Lock()


@contextlib.contextmanager
def seeded_torch(seed: int):
    """torch's global CPU generator seeded with ``seed`` inside the block, one block at a time per process."""
    import torch   # deferred: compare's CLI starts without torch for kernel-only commands
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
