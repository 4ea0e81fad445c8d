"""Tiling of a kernel matrix: (n1, n2) outputs filled tile by tile, tiles shared out among threads.

With x2 None (a same-input kernel) only tiles on or above the diagonal are computed and mirrored, and a
diagonal tile is symmetrised (a Gram product need not be bitwise symmetric).
"""
from __future__ import annotations

import threadpoolctl

from kernels import backend


def tiles(n1: int, n2: int, block: int, symmetric: bool):
    """(i0, i1, j0, j1) of every tile, row-major; only j0 >= i0 when ``symmetric``."""
    for i in range(0, n1, block):
        for j in range(i if symmetric else 0, n2, block):
            yield i, min(i + block, n1), j, min(j + block, n2)


def run_tiles(xp, tile_fn, n1: int, n2: int, block: int, symmetric: bool, want: tuple, dtype, device,
              n_jobs: int):
    """Fill (n1, n2) outputs of ``dtype`` tile by tile; ``tile_fn(i0, i1, j0, j1)`` returns the wanted
    (nngp, ntk) tiles (None for an unwanted one), which are cast on assignment."""
    outs = [xp.empty((n1, n2), dtype=dtype, device=device) if w else None for w in want]

    def work(t):
        i0, i1, j0, j1 = t
        for out, tile in zip(outs, tile_fn(i0, i1, j0, j1)):
            if out is None:
                continue
            if symmetric and i0 == j0:   # a Gram product need not be bitwise symmetric: make it so
                tile = (tile + tile.T) / 2
            out[i0:i1, j0:j1] = tile
            if symmetric and j0 != i0:
                out[j0:j1, i0:i1] = tile.T

    # One BLAS thread per tile worker: a tile's product is small, and BLAS threads nested in the workers
    # oversubscribe the cores (measured 4× slower on 2 cores).
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        backend.thread_map(work, list(tiles(n1, n2, block, symmetric)), n_jobs)
    return [o for o in outs if o is not None]
