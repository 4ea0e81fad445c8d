"""Gram matrices in tiles: in memory, into a resumable on-disk store, or as tasks on a dask cluster.

``gram(kernel, x1, x2=None, *, tile=4096, store=None, client=None, progress=True, get=None)`` cuts K(x1, x2)
into tile × tile blocks and computes each block with the kernel's own code (so a tile equals the same block
of ``kernel.ntk(x1, x2)``). With x2=None only the tiles on or above the diagonal are computed; diagonal tiles
are made exactly symmetric and the rest mirrored.

- ``kernel``: an object with ``.ntk`` / ``.nngp`` / ``.kernels`` (``FullyConnected``, ``Convolutional``,
  ``EmpiricalNTK`` for a torch model), a bound method such as ``fc.nngp``, or any callable ``k(x1, x2)``
  (``RBF()``). ``get`` = "ntk" | "nngp" | ("nngp", "ntk") chooses the outputs (default "ntk" when the kernel
  has one); a tuple returns a tuple. A diagonal tile is asked for as ``k(x_a, None)`` only from code that
  declares ``x2=None`` (lazykit's kernels, which then pin the diagonal exactly); any other callable is called
  ``k(x_a, x_a)``. Every block is checked: an array of the tile's shape, real (integers are cast to float64),
  finite, and for a plain callable with x2=None symmetric to √eps (``gram`` mirrors the upper triangle), else
  an error naming ``kernel``.
- ``store=None``: an in-memory array. ``store="path.zarr"``: a ``GramStore`` (``kernels.grams.store``) on disk,
  one chunk per tile. A rerun of the same call computes only the tiles that are missing or damaged (each tile
  carries a CRC-32C); a store made for another kernel, other inputs, tile or dtype is refused
  (``StoreMismatchError`` says what differs). The path is checked writable before anything is computed.
- ``client=None``: the tiles are shared by one thread per core in this process (one BLAS thread each), or
  computed one after another on the GPU (CuPy inputs, or a kernel with ``device="cuda"``). ``client=dask.distributed.Client``: each tile is a task on that cluster.
  Tasks write their tile straight into the store, so every worker must see the store's path (one machine,
  or a shared file system); with dask-cuda's ``LocalCUDACluster`` each worker owns one GPU and a kernel
  built with ``device="cuda"`` computes on it. A worker that dies mid-tile loses only that task, which the
  scheduler runs again elsewhere; a driver that dies loses nothing already written.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import inspect
import numbers
import os
import threading
import uuid
import warnings
from pathlib import Path

import numpy as np
import threadpoolctl

from kernels import backend
from kernels.grams.atomic_files import remove_partial_files
from kernels.grams.store import GramStore, StoreDamageWarning, fingerprint, open_store, tile_bounds, tile_grid
from kernels.validation import check_array, check_scalar, check_writable

OUTPUTS = ("ntk", "nngp")
HOW_NOT_WHAT = ("device", "n_jobs", "block_size", "memory_budget")   # parameters that do not change K


# ----------------------------------------------------------------------------------------------- kernel outputs
def accepts_none(fn) -> bool:
    """Whether ``fn(x1, x2)`` declares ``x2=None`` (meaning x2 = x1), as lazykit's kernels and methods do."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):     # builtins without a signature
        return False
    return len(params) >= 2 and params[1].default is None


class _Outputs:
    """The kernel and the outputs wanted from it: ``compute(a, b)`` returns one block per name.

    A diagonal tile is asked for as ``(a, None)`` only from code that declares ``x2=None`` (``FullyConnected``,
    ``RBF``, ...: they pin the diagonal exactly); any other callable is called as documented, ``k(a, a)``.
    """

    def __init__(self, kernel, names: tuple):
        self.kernel, self.names = kernel, names
        method = kernel if names == ("kernel",) else getattr(kernel, "kernels" if len(names) > 1 else names[0])
        self.takes_none = accepts_none(method)

    def compute(self, a, b):
        k, names = self.kernel, self.names
        if b is None and not self.takes_none:
            b = a
        if names == ("kernel",):
            return (k(a, b),)
        if len(names) == 1:
            return (getattr(k, names[0])(a, b),)
        both = k.kernels(a, b)
        if not isinstance(both, (tuple, list)) or len(both) != 2:
            raise TypeError(f"kernel.kernels(x1, x2) must return the pair (nngp, ntk), got {type(both).__name__}")
        return tuple({"nngp": both[0], "ntk": both[1]}[name] for name in names)

    def for_worker(self):
        """The same outputs with a kernel whose ``n_jobs=None`` became 1: the worker's threads share tiles."""
        params = getattr(self.kernel, "get_params", lambda: {})()
        if "n_jobs" in params and params["n_jobs"] is None and hasattr(self.kernel, "set_params"):
            return _Outputs(type(self.kernel)(**{**params, "n_jobs": 1}), self.names)
        return self


def checked_block(block, shape, bounds, name: str = "kernel"):
    """A kernel's block for tile ``bounds`` as a real floating array of ``shape``, or an error naming ``kernel``
    (a list, a wrong shape, complex or bool values, NaN/inf: the same rule in memory as in a store). Integer
    blocks are cast to float64."""
    i0, i1, j0, j1 = bounds
    where = f"the tile x1[{i0}:{i1}] × x2[{j0}:{j1}]"
    if backend.is_torch(block):
        block = backend.from_torch(block)
    if not backend.is_array(block):
        raise TypeError(f"{name} returned {type(block).__name__} for {where}; it must return a {shape[0]} × "
                        f"{shape[1]} array of real numbers (NumPy, CuPy or torch)")
    xp = backend.get_namespace(block)
    if xp.isdtype(block.dtype, "integral"):
        block = xp.astype(block, xp.float64)
    elif not xp.isdtype(block.dtype, "real floating"):
        raise TypeError(f"{name} returned {block.dtype} values for {where}; it must return real numbers")
    elif block.dtype not in (xp.float32, xp.float64):
        block = xp.astype(block, xp.float32)            # half precision: exact upcast
    if tuple(block.shape) != tuple(shape):
        raise ValueError(f"{name} returned shape {tuple(block.shape)} for {where}; expected {tuple(shape)} "
                         "(one row per point of x1, one column per point of x2)")
    if not bool(xp.all(xp.isfinite(block))):
        raise ValueError(f"{name} returned NaN or inf for {where}; a Gram matrix must be finite")
    return block


def check_symmetric_block(block, i0: int):
    """A plain callable's diagonal tile k(x_a, x_a) must be symmetric to √eps of its max|K| before it is
    symmetrised: ``gram(kernel, x)`` computes the upper triangle and mirrors it, so an asymmetric function would
    be silently replaced by its symmetric part. ValueError naming ``kernel`` and the two entries otherwise."""
    host = backend.to_numpy(block)
    gap = np.abs(host - host.T)
    if gap.size and float(np.max(gap)) > np.sqrt(np.finfo(host.dtype).eps) * float(np.max(np.abs(host))):
        i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
        raise ValueError(f"kernel is not symmetric: k(x1[{i0 + i}], x1[{i0 + j}]) = {host[i, j]:.6g} but "
                         f"k(x1[{i0 + j}], x1[{i0 + i}]) = {host[j, i]:.6g}; gram(kernel, x) computes the upper "
                         "triangle and mirrors it, so it needs a symmetric kernel (pass x2=x for the full "
                         "matrix of any function)")


def check_symmetric_kernel(outputs: _Outputs, x, tile: int, probes: int = 4):
    """With 1 × 1 diagonal tiles (``tile=1``) no tile shows both k(x_i, x_j) and k(x_j, x_i): for a plain
    callable, check the first ``probes`` points once, up front."""
    m = min(probes, x.shape[0])
    if outputs.names == ("kernel",) and tile == 1 and m >= 2:
        check_symmetric_block(checked_block(outputs.kernel(x[:m], x[:m]), (m, m), (0, m, 0, m)), 0)


def resolve_outputs(kernel, get) -> _Outputs:
    """Validate ``kernel`` and ``get`` and say which methods compute the wanted outputs."""
    if inspect.ismethod(kernel) and kernel.__name__ in OUTPUTS and get is None:
        kernel, get = kernel.__self__, kernel.__name__
    has = {name: callable(getattr(kernel, name, None)) for name in OUTPUTS + ("kernels",)}
    if get is None:
        if has["ntk"]:
            return _Outputs(kernel, ("ntk",))
        if callable(kernel):
            return _Outputs(kernel, ("kernel",))
        raise TypeError(f"kernel must have .ntk/.nngp methods or be a callable k(x1, x2), got "
                        f"{type(kernel).__name__}")
    names = (get,) if isinstance(get, str) else get
    if (not isinstance(names, tuple) or not names or len(set(names)) != len(names)
            or any(n not in OUTPUTS for n in names)):
        raise ValueError(f"get must be 'ntk', 'nngp' or a tuple of them such as ('nngp', 'ntk'), got {get!r}")
    missing = [n for n in names if not has[n]]
    if missing or (len(names) == 2 and not has["kernels"]):
        need = ", ".join(f".{n}()" for n in (missing or ["kernels"]))
        raise TypeError(f"get={get!r} needs the kernel to have {need}, which {type(kernel).__name__} lacks")
    return _Outputs(kernel, names)


def kernel_identity(kernel) -> dict:
    """What defines the kernel's values, as plain JSON: its class and parameters (not where or how it runs)."""
    kind = type(kernel)
    if inspect.isfunction(kernel) or inspect.isbuiltin(kernel):
        return {"type": f"{kernel.__module__}.{kernel.__qualname__}"}
    identity = {"type": f"{kind.__module__}.{kind.__qualname__}"}
    if hasattr(kernel, "get_params"):
        params = kernel.get_params()
        identity["params"] = {k: _jsonable(v) for k, v in sorted(params.items()) if k not in HOW_NOT_WHAT}
    return identity


def _jsonable(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=str)}
    if hasattr(value, "state_dict"):   # a torch module: its class and a checksum of its weights
        digest = hashlib.sha256()
        for name, tensor in value.state_dict().items():
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
        return {"type": type(value).__qualname__, "state_sha256": digest.hexdigest()}
    if inspect.ismethod(value):
        return {"method": value.__name__, "of": kernel_identity(value.__self__)}
    if callable(value) or hasattr(value, "get_params"):
        return kernel_identity(value)
    return {"type": type(value).__qualname__}


def input_record(x) -> dict:
    """Shape, dtype and SHA-256 of an input's bytes (on the host, C order)."""
    host = np.ascontiguousarray(backend.to_numpy(x))
    return {"shape": list(host.shape), "dtype": host.dtype.name,
            "sha256": hashlib.sha256(memoryview(host.reshape(-1)).cast("B")).hexdigest()}


# ----------------------------------------------------------------------------------------------- one tile
def compute_tile(outputs: _Outputs, x1, x2, bounds, diagonal: bool, to_host: bool):
    """The wanted blocks of tile ``bounds`` = (i0, i1, j0, j1); a diagonal tile of K(x, x) made symmetric.

    Callers hold BLAS at one thread (the tiles are the parallel unit), so a tile's bits do not depend on
    which thread, process or machine computed it.
    """
    i0, i1, j0, j1 = bounds
    with contextlib.nullcontext() if _thread_safe(outputs) else _SERIAL:
        blocks = outputs.compute(x1[i0:i1], None if diagonal else x2[j0:j1])
    blocks = tuple(checked_block(b, (i1 - i0, j1 - j0), bounds, "kernel" if n == "kernel" else f"kernel.{n}")
                   for b, n in zip(blocks, outputs.names))
    if diagonal:
        if outputs.names == ("kernel",):
            check_symmetric_block(blocks[0], i0)
        blocks = tuple((b + b.T) / 2 for b in blocks)
    return tuple(backend.to_numpy(b) for b in blocks) if to_host else blocks


_SERIAL = threading.Lock()       # one tile at a time per process for kernels that are not thread-safe
_WORKER_BLAS_PINNED = []


def _thread_safe(outputs) -> bool:
    """False for kernels that keep state while computing (``EmpiricalNTK`` traces its model with hooks)."""
    return getattr(outputs.kernel, "thread_safe", True)


def _pin_blas_on_worker():
    """On a dask worker, one BLAS thread for good (the worker's threads are the parallel unit), set once.

    ``threadpoolctl`` limits are process-wide: a limit set and lifted by concurrent tasks would be lifted
    under a tile still computing, and OpenBLAS's float32 GEMM rounds differently with more threads.
    """
    if _WORKER_BLAS_PINNED:
        return
    try:
        from distributed import get_worker
        get_worker()
    except (ImportError, ValueError):
        return                       # not on a worker: the driver holds the limit around the whole run
    threadpoolctl.threadpool_limits(1, user_api="blas")
    _WORKER_BLAS_PINNED.append(True)


def _tile_task(outputs, x1, x2, index, tile, shape, symmetric, store_path, to_host=True):
    """Compute one tile; write it into the store (returning (index, None)) or return (index, blocks)."""
    _pin_blas_on_worker()
    bounds = tile_bounds(index, tile, shape)
    blocks = compute_tile(outputs, x1, x2 if x2 is not None else x1, bounds,
                          symmetric and index[0] == index[1], to_host=to_host or store_path is not None)
    if store_path is None:
        return index, blocks
    for name, block in zip(outputs.names, blocks):
        GramStore(store_path, name).write_tile(index, block)
    return index, None


def _on_gpu(outputs, x) -> bool:
    device = getattr(outputs.kernel, "get_params", lambda: {})().get("device")
    return backend.device_of(x) == "cuda" or device == "cuda" or (device == "auto" and backend.gpu_available())


# ----------------------------------------------------------------------------------------------- gram
def _check_inputs(x1, x2):
    x1 = check_array(x1, "x1", min_ndim=2)
    if x2 is not None:
        x2 = check_array(x2, "x2", min_ndim=2)
        if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
            raise ValueError(f"x2 must have the same feature shape as x1: x1 has {tuple(x1.shape[1:])}, "
                             f"x2 has {tuple(x2.shape[1:])}")
    return x1, x2


def _check_options(tile, store, client, progress):
    check_scalar(tile, "tile", int, min_val=1)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be None (in memory) or a path such as 'gram.zarr', got {type(store).__name__}")
    if client is not None and not (callable(getattr(client, "submit", None))
                                   and callable(getattr(client, "scatter", None))):
        raise TypeError(f"client must be None (this process) or a dask.distributed.Client, got "
                        f"{type(client).__name__}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")


def gram(kernel, x1, x2=None, *, tile=4096, store=None, client=None, progress=True, get=None):
    """K(x1, x2) (x2=None: K(x1, x1)) computed in tiles; see the module docstring.

    Returns an array (``store=None``) or a ``GramStore``, or a tuple of them in the order of ``get``.
    """
    outputs = resolve_outputs(kernel, get)
    _check_options(tile, store, client, progress)
    x1, x2 = _check_inputs(x1, x2)
    tile = int(tile)
    symmetric = x2 is None
    if store is not None and not (Path(store) / "zarr.json").is_file():   # a new store: can it be written?
        check_writable(store, "store", directory=True)
    if symmetric:
        check_symmetric_kernel(outputs, x1, tile)
    shape = (x1.shape[0], (x1 if symmetric else x2).shape[0])
    grid = tile_grid(shape[0], shape[1], tile, symmetric)
    if store is None:
        results = _in_memory(outputs, x1, x2, grid, tile, shape, symmetric, client, progress)
    else:
        results = _stored(outputs, x1, x2, grid, tile, shape, symmetric, Path(store), client, progress)
    return results if len(outputs.names) > 1 else results[0]


def cached_gram(directory, kernel, x1, x2=None, *, tile=4096, progress=False, get=None):
    """``gram`` cached on disk: into a store named by what it holds, ``directory/gram-<fingerprint>.zarr``, made
    or resumed (a call with the same kernel, outputs, tile and inputs finds its store again).

    The fingerprint covers the kernel's identity, the outputs and both inputs' checksums, so different kernels
    or data get different stores in one directory and a rerun finds its own. Called from inside a dask task
    (a sweep run on a cluster), the tiles become tasks on that same cluster. Returns ``GramStore`` (s).
    """
    outputs = resolve_outputs(kernel, get)
    check_writable(directory, "directory", directory=True)
    name = fingerprint({"kernel": kernel_identity(outputs.kernel), "get": list(outputs.names), "tile": tile,
                        "x1": input_record(x1), "x2": None if x2 is None else input_record(x2)})
    path = Path(directory) / f"gram-{name}.zarr"
    try:
        from distributed import get_worker, worker_client
        get_worker()
    except (ImportError, ValueError):
        return gram(kernel, x1, x2, tile=tile, store=path, progress=progress, get=get)
    with worker_client() as client:      # leaves this task's slot free while its tiles run
        return gram(kernel, x1, x2, tile=tile, store=path, client=client, progress=progress, get=get)


def _probe_dtype(outputs, x1, x2):
    """The dtype the kernel returns for these inputs (from a 1 × 1 block)."""
    block = outputs.compute(x1[:1], (x1 if x2 is None else x2)[:1])[0]
    return np.dtype(backend.to_numpy(checked_block(block, (1, 1), (0, 1, 0, 1), "kernel")).dtype)


def _stored(outputs, x1, x2, grid, tile, shape, symmetric, path, client, progress):
    record = {"kernel": kernel_identity(outputs.kernel), "get": list(outputs.names), "tile": tile,
              "symmetric": symmetric, "x1": input_record(x1), "x2": None if symmetric else input_record(x2)}
    exists = (path / "zarr.json").is_file()
    dtype = np.dtype(GramStore(path).metadata["dtype"]) if exists else _probe_dtype(outputs, x1, x2)
    stores = open_store(path, record, shape, dtype)
    if exists:
        _drop_damaged(stores.values())
    todo = [index for index in grid if not all(s.has_tile(index) for s in stores.values())]
    if todo:
        check_writable(path, "store", directory=True)
        remove_partial_files(path)
    bar = _progress_bar(len(grid), len(grid) - len(todo), progress)
    try:
        for _ in _execute(outputs, x1, x2, todo, tile, shape, symmetric, str(path), client):
            bar.update(1)
    finally:
        bar.close()
    return tuple(stores[name] for name in outputs.names)


def _drop_damaged(stores):
    """Delete the chunk files of damaged tiles (``GramStore.verify``), so the rerun recomputes them, and warn."""
    for store in stores:
        damaged = store.verify()
        if not damaged:
            continue
        warnings.warn(f"{store.path}: recomputing {len(damaged)} damaged tile(s) of {store.name!r}: "
                      + "; ".join(f"{index} ({problem})" for index, _, problem in damaged[:5])
                      + (" ..." if len(damaged) > 5 else ""), StoreDamageWarning, stacklevel=4)
        for _, chunk, _ in damaged:
            chunk.unlink(missing_ok=True)


def _in_memory(outputs, x1, x2, grid, tile, shape, symmetric, client, progress):
    bar = _progress_bar(len(grid), 0, progress)
    outs = None

    def place(index, blocks):
        nonlocal outs
        if outs is None:
            xp = backend.get_namespace(blocks[0])
            outs = [xp.empty(shape, dtype=b.dtype, device=getattr(b, "device", None)) for b in blocks]
        i0, i1, j0, j1 = tile_bounds(index, tile, shape)
        for out, block in zip(outs, blocks):
            out[i0:i1, j0:j1] = block
            if symmetric and index[0] != index[1]:
                out[j0:j1, i0:i1] = block.T
        bar.update(1)

    try:
        for index, blocks in _execute(outputs, x1, x2, grid, tile, shape, symmetric, None, client):
            place(tuple(index), blocks)
    finally:
        bar.close()
    return tuple(outs)


def _execute(outputs, x1, x2, todo, tile, shape, symmetric, store_path, client):
    """Yield (index, blocks or None) for every tile in ``todo`` as it finishes, here or on the cluster.

    BLAS is held at one thread in this process for the whole run (this covers in-process dask workers too;
    worker processes pin it themselves).
    """
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        if client is not None:
            yield from _distributed(outputs, x1, x2, todo, tile, shape, symmetric, store_path, client)
        else:
            yield from _local(outputs, x1, x2, todo, tile, shape, symmetric, store_path)


def _local(outputs, x1, x2, todo, tile, shape, symmetric, store_path):
    serial = _on_gpu(outputs, x1) or not _thread_safe(outputs)
    threads = 1 if serial else min(len(todo), os.cpu_count() or 1)
    task = functools.partial(_tile_task, outputs.for_worker(), x1, x2, tile=tile, shape=shape,
                             symmetric=symmetric, store_path=store_path, to_host=False)
    if threads <= 1:
        yield from map(task, todo)
        return
    pool = concurrent.futures.ThreadPoolExecutor(threads)
    try:
        futures = [pool.submit(task, index) for index in todo]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _distributed(outputs, x1, x2, todo, tile, shape, symmetric, store_path, client):
    """Submit one task per tile to the dask cluster; yield (index, blocks or None) as tasks finish."""
    from distributed import as_completed
    if not todo:
        return
    worker_outputs = outputs.for_worker()
    data1 = client.scatter(backend.to_numpy(x1), broadcast=True)
    data2 = None if x2 is None else client.scatter(backend.to_numpy(x2), broadcast=True)
    token = uuid.uuid4().hex[:12]
    futures = [client.submit(_tile_task, worker_outputs, data1, data2, index, tile, shape, symmetric, store_path,
                             key=f"gram-tile-{index[0]}-{index[1]}-{token}", pure=False)
               for index in todo]
    for future in as_completed(futures):
        yield future.result()


def _progress_bar(total, done, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, unit="tile", desc="gram", disable=not enabled, dynamic_ncols=True,
                smoothing=0.1)
