"""Gram matrices of the experiments' kernel rows: in memory, or with ``--gram-store DIR`` through stores on disk.

``kernel_matrices(kernel, x_train, x_test, get)`` returns (K(x_train, x_train), K(x_test, x_train)) for the
outputs in ``get``. Inside ``with_gram_store(run_one, DIR, run, memo)`` (what the command line wraps each run in
when given ``--gram-store DIR``) both matrices go through ``kernels.grams.tiles.cached_gram``: a store per kernel and
data under DIR, resumed when a run was interrupted, shared by every run (and every rerun) that needs the same
matrix, and computed on the sweep's dask cluster, one task per tile, when the run itself is a dask task
(``--backend dask``). The directory is where the matrices live, not what a run computes, so it is not part of
the runs' configuration: the same sweep with or without ``--gram-store`` gives the same results.jsonl rows.
"""
from __future__ import annotations

import contextvars

from kernels import device_of, to_device

_DIRECTORY = contextvars.ContextVar("gram_store", default=None)


def with_gram_store(run_one, directory, run, memo=None) -> dict:
    """Run ``run_one(run, memo)`` with its kernel matrices kept in stores under ``directory``."""
    token = _DIRECTORY.set(str(directory))
    try:
        return run_one(run, memo)
    finally:
        _DIRECTORY.reset(token)


def kernel_matrices(kernel, x_train, x_test, get="ntk"):
    """(K(x_train, x_train), K(x_test, x_train)) as arrays on the kernel's device; with a tuple ``get`` such as
    ("nngp", "ntk"), one such pair per output, in that order."""
    names = (get,) if isinstance(get, str) else tuple(get)
    directory = _DIRECTORY.get()
    if directory is None:
        def compute(*xs):
            if len(names) == 1:
                return (getattr(kernel, names[0])(*xs),)
            both = dict(zip(("nngp", "ntk"), kernel.kernels(*xs)))
            return tuple(both[name] for name in names)
        pairs = tuple(zip(compute(x_train), compute(x_test, x_train)))
    else:
        from kernels import cached_gram
        stores = [cached_gram(directory, kernel, *xs, get=names) for xs in ((x_train,), (x_test, x_train))]
        stores = [s if isinstance(s, tuple) else (s,) for s in stores]
        device = _device(kernel, x_train)
        pairs = tuple((to_device(train.to_numpy(), device), to_device(test.to_numpy(), device))
                      for train, test in zip(*stores))
    return pairs[0] if isinstance(get, str) else pairs


def _device(kernel, x) -> str:
    """Where the kernel computes: its ``device`` parameter when set, else where its input lives."""
    device = getattr(kernel, "device", None)
    return device if device in ("cpu", "cuda") else device_of(x)
