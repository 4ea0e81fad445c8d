"""Drivers of the fused CPU loops: read the layer table (``kernels.analytic.rules.Network``), fill the loops'
parameter tables, cut the work into tiles or chunks of image pairs, and run them on threads.

The loops (``kernels.analytic._cpu``) cover two shapes of network (``rules.fused_shape``), checked by
``unsupported``:

* fully connected: Dense, then any number of [activation, Dense] (activations with a fused closed form, each
  layer with its own scales, parameterization and trained flag): ``fc_tile``;
* images: Conv (any window, strides, 'SAME'/'VALID' padding), AvgPool/SumPool (with their norms), Dense, fused
  activations, Dropout and FanOut → parallel → FanInSum, up to one GlobalAvgPool/GlobalSumPool/Flatten:
  ``image_pairs`` runs the program that ``kernels.analytic._image_program`` compiles from the table; the rows
  after the readout (vectors) run by the reference rules.

Every other network runs the reference rules. Inputs arrive in float64 (``kernels.analytic._numerics`` decides
the working precision); outputs are float64.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from kernels.analytic import _cpu, _image_program, rules


def loop_array(x) -> np.ndarray:
    """``x`` as the one array type the compiled loops are specialised for: a plain, C-contiguous, aligned,
    writeable float64 ``numpy.ndarray`` (copied only when it is not one already).

    numba compiles one specialisation per array type, and read-only (``np.load(mmap_mode='r')``, zarr, dask
    or a broadcast view), non-contiguous or memory-mapped inputs are other types: each such call recompiled
    the fused loop (about a minute) although the values are the same. ``np.asarray`` drops ndarray subclasses
    (``np.memmap``)."""
    return np.asarray(np.require(x, np.float64, ("C_CONTIGUOUS", "ALIGNED", "WRITEABLE")))


def unsupported(network: rules.Network, image: bool):
    """Why the fused loops cannot run ``network`` (None when they can): ``fc_tile`` on vectors,
    ``image_pairs`` on images."""
    if image:
        if rules.fused_shape(network) != "conv":
            return ("the fused image loop runs Conv/AvgPool/SumPool (not 'CIRCULAR'), Dense, activations, Dropout "
                    "and FanOut/parallel/FanInSum up to one GlobalAvgPool/GlobalSumPool/Flatten")
        layers = network.layers[:[layer.kind for layer in network.layers].index("readout")]
    else:
        if rules.fused_shape(network) != "fc":
            return "the fused fully connected loop needs Dense, then [activation, Dense] blocks"
        layers = network.layers
    try:
        for layer in rules.walk(layers):
            if layer.kind == "activation":
                _image_program.dual_columns(layer.dual)
    except _image_program.Unsupported as why:
        return str(why)
    return None


def fc_params(network: rules.Network) -> np.ndarray:
    """(depth + 1, N_FIELDS): row l holds Dense layer l and, for l ≥ 1, the activation before it."""
    rows, dual = [], [0.0] * 6
    for layer in network.layers:
        if layer.kind == "activation":
            dual = _image_program.dual_columns(layer.dual)
        else:
            rows.append(dual + _image_program.affine_columns(layer))
    return np.array(rows, dtype=np.float64)


def fc_tile_function(network: rules.Network, x1, x2, symmetric: bool, want_ntk: bool):
    """Tile function of a fully connected network on NumPy: the Gram product x1·x2ᵀ/d by BLAS, then ``fc_tile``."""
    d = x1.shape[1]
    a = np.asarray(x1, dtype=np.float64)
    b = a if symmetric else np.asarray(x2, dtype=np.float64)
    sq1 = np.sum(a * a, axis=1) / d
    sq2 = sq1 if symmetric else np.sum(b * b, axis=1) / d
    n_act = len(network.duals)
    chain1 = np.array(rules.variance_chain(network, sq1)).reshape(n_act, a.shape[0])
    chain2 = chain1 if symmetric else np.array(rules.variance_chain(network, sq2)).reshape(n_act, b.shape[0])
    params = fc_params(network)

    def tile(i0, i1, j0, j1):
        k = a[i0:i1] @ b[j0:j1].T
        k /= d
        pin = symmetric and i0 == j0
        if pin:
            np.fill_diagonal(k, sq1[i0:i1])
        t = np.empty_like(k)
        _cpu.fc_tile(k.reshape(-1), t.reshape(-1), j1 - j0, loop_array(chain1[:, i0:i1]),
                     loop_array(chain2[:, j0:j1]), pin, params)
        return k, (t if want_ntk else None)

    return tile


def _chunks(n_items: int, n_jobs: int, block_size) -> int:
    """Items per chunk: a multiple of LANES (``block_size``² when given), a few chunks per thread."""
    chunk = block_size ** 2 if block_size else min(4096, -(-n_items // (4 * n_jobs)))
    return -(-max(chunk, 1) // _cpu.LANES) * _cpu.LANES


def _run_tasks(tasks: list, n_jobs: int) -> None:
    """Run ``tasks`` [(fn, indices of the tasks it waits for — all earlier in the list)] on ``n_jobs`` threads.
    The pool starts tasks in list order, so a task only waits for tasks already started: no deadlock."""
    if n_jobs <= 1 or len(tasks) <= 1:
        for fn, _ in tasks:
            fn()
        return
    import concurrent.futures
    futures = []

    def waiting(fn, needs):
        def call():
            for k in needs:
                futures[k].result()
            fn()
        return call

    with concurrent.futures.ThreadPoolExecutor(n_jobs) as pool:
        for fn, needs in tasks:
            futures.append(pool.submit(waiting(fn, needs)))
        for future in futures:
            future.result()


def image_kernels(network: rules.Network, x1, x2, want: tuple, n_jobs: int, block_size=None) -> list:
    """The wanted (NNGP, NTK) of an image network on NumPy by ``_cpu.image_pairs``, then the rows after the
    readout by the reference rules (on vectors). The same-image pairs of x1 (and x2), LANES images a task, record
    the pixel variances at every activation; the other pairs follow in chunks, each as soon as the variances of
    its images are there (pairs ordered by the last same-image task they need), on ``n_jobs`` threads. With x2
    None only the pairs i < j are computed (and mirrored), and the same-image pairs give the diagonal."""
    program = _image_program.compile_program(network, tuple(x1.shape[1:]))
    symmetric = x2 is None
    a = loop_array(x1)
    b = a if symmetric else loop_array(x2)
    n1, n2 = a.shape[0], b.shape[0]
    tail_variances = any(layer.kind in ("activation", "dropout", "branches") for layer in program.tail)
    n_var = int(program.var_off[-1])
    lanes = _cpu.LANES

    def run(x, y, ii, jj, same, masks, var_x, var_y, out_k, out_t):
        need_y, need_x = masks
        _cpu.image_pairs(x, y, ii, jj, same, want[1], program.ops, program.prm, program.phase_ops,
                         program.phase_res, need_y, need_x, program.var_off, var_x, var_y, program.buf_res,
                         program.buf_pixels, program.buf_doff, program.delta_off, program.axis_ptr, program.axis_ent,
                         program.factors, program.n_slots, program.margin, out_k, out_t)

    tasks = []

    def same_pairs(x, output: bool):
        """Tasks for the pairs (i, i) of x; returns (readout K, Θ, variances) filled by them and each image's task."""
        n = x.shape[0]
        var, k, t = np.zeros((n, max(n_var, 1))), np.zeros(n), np.zeros(n)
        masks = program.masks(output, True)

        def work(idx):
            out_k, out_t = np.empty(idx.size), np.empty(idx.size)
            run(x, x, idx, idx, True, masks, var, var, out_k, out_t)
            k[idx], t[idx] = out_k / program.readout_norm, out_t / program.readout_norm

        first = len(tasks)
        for i0 in range(0, n, lanes):
            tasks.append((functools.partial(work, np.arange(i0, min(i0 + lanes, n))), ()))
        return k, t, var, first + np.arange(n) // lanes

    k_1, t_1, var1, task1 = same_pairs(a, symmetric or tail_variances)
    k_2, t_2, var2, task2 = (k_1, t_1, var1, task1) if symmetric else same_pairs(b, tail_variances)
    k12, t12 = np.empty((n1, n2)), np.empty((n1, n2))
    if symmetric:
        rows, cols = np.triu_indices(n1, 1)
    else:
        rows, cols = (g.ravel() for g in np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij"))
    order = np.argsort(np.maximum(task1[rows], task2[cols]), kind="stable")
    rows, cols = rows[order], cols[order]
    chunk = _chunks(rows.size, n_jobs, block_size)
    masks = program.masks(True, False)

    def work(ii, jj):
        out_k, out_t = np.empty(ii.size), np.empty(ii.size)
        run(a, b, ii, jj, False, masks, var1, var2, out_k, out_t)
        out_k /= program.readout_norm
        out_t /= program.readout_norm
        k12[ii, jj], t12[ii, jj] = out_k, out_t
        if symmetric:
            k12[jj, ii], t12[jj, ii] = out_k, out_t

    for p0 in range(0, rows.size, chunk):
        ii, jj = rows[p0:p0 + chunk], cols[p0:p0 + chunk]
        tasks.append((functools.partial(work, ii, jj), tuple(np.union1d(task1[ii], task2[jj]).tolist())))
    _run_tasks(tasks, n_jobs)
    if symmetric:
        k12[np.arange(n1), np.arange(n1)], t12[np.arange(n1), np.arange(n1)] = k_1, t_1
    k11 = k_1.reshape(-1, 1) if tail_variances or symmetric else None
    k22 = k_2.reshape(1, -1) if tail_variances or symmetric else None
    state = (k12, k11, k22, t12 if want[1] else None)
    tail = dataclasses.replace(network, layers=program.tail, full_spatial=False, pair_variances=False)
    k12, _, _, ntk = rules.run(tail, state, np, symmetric)
    return [o for o, wanted in zip((k12, ntk), want) if wanted]
