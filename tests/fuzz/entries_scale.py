"""Fuzz cases for the Gram-matrix exports (``gram``, ``cached_gram``, ``GramStore``, ``solve_stored``, ``EmpiricalNTK``)
and the kernel gradient flow (``kernel_gradient_flow``, ``loss_derivatives``)."""
from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import kernels
from tests.fuzz.harness import registry
from tests.fuzz.inputs import INF, NAN, NOT_NUMBERS, array, shape2, targets

ENTRIES, entry = registry()
_ROOT = Path(tempfile.mkdtemp(prefix="lazykit-fuzz-stores-"))
atexit.register(shutil.rmtree, _ROOT, True)
_COUNTER = itertools.count()


def _fresh_path() -> Path:
    return _ROOT / f"s{next(_COUNTER)}.zarr"


def _kernel(case):
    return case.arg("kernel", (kernels.FullyConnected(depth=2), kernels.RBF(0.7), kernels.FullyConnected(depth=1).nngp),
                    reject=("rbf", 3, None, object()))


def _store(n=None, d=2, seed=0, symmetric=True):
    """A complete float64 RBF store of n points (random 1..7) in a fresh directory."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(1, 8))
    x = rng.standard_normal((n, d))
    return kernels.gram(kernels.RBF(1.0), x, None if symmetric else x[:3], tile=3, store=_fresh_path(),
                        progress=False)


# ------------------------------------------------------------------------------------------ gram
@entry("gram")
def gram(case):
    kernel = _kernel(case)
    n, d = shape2(case)
    x1 = array(case, "x1", (n, d))
    x2 = array(case, "x2", (case.draw(st.integers(1, 4)), case.arg("x2_columns", (d,), bad=(d + 1,), aliases=("x2",)))
               ) if case.draw(st.booleans()) else None
    tile = case.arg("tile", (1, 2, 4096), reject=(0, -1, True, 2.5, "4", None))
    store = case.arg("store", (None, "fresh"), reject=(3, b"x", [1]))
    get = case.arg("get", (None,), bad=("nngp", ("nngp", "ntk")), reject=("ntkk", 5, ("ntk", "bogus")))
    client = case.arg("client", (None,), reject=("local", 1, object()))
    progress = case.arg("progress", (False,), reject=(1, "yes", None))
    path = _fresh_path() if store == "fresh" else store
    return lambda: kernels.gram(kernel, x1, x2, tile=tile, store=path, client=client, progress=progress, get=get)


@entry("cached_gram")
def cached_gram(case):
    kernel = _kernel(case)
    n, d = shape2(case)
    x = array(case, "x1", (n, d))
    tile = case.arg("tile", (2, 64), reject=(0, True, 1.5))
    directory = _ROOT / f"dir{next(_COUNTER)}"
    return lambda: kernels.cached_gram(directory, kernel, x, tile=tile).to_numpy()


@entry("gram.resume")
def gram_resume(case):
    """A second call on an existing store: the same computation resumes, another one is refused."""
    rng = np.random.default_rng(case.draw(st.integers(0, 99)))
    x = rng.standard_normal((5, 2))
    path = _fresh_path()
    kernels.gram(kernels.RBF(1.0), x, tile=2, store=path, progress=False)
    other_x = case.arg("x1", (x,), reject=(x + 1.0, x.astype(np.float32), x[:4]))
    other_kernel = case.arg("kernel", (kernels.RBF(1.0),), reject=(kernels.RBF(2.0), kernels.Laplace(1.0)))
    other_tile = case.arg("tile", (2,), reject=(3,))
    return lambda: kernels.gram(other_kernel, other_x, tile=other_tile, store=path, progress=False).to_numpy()


# ------------------------------------------------------------------------------------------ GramStore
@entry("GramStore")
def gram_store(case):
    store = _store(seed=case.draw(st.integers(0, 99)))
    path = case.arg("path", (store.path, str(store.path)), reject=(3, None, _ROOT / "absent.zarr", [1]))
    name = case.arg("name", (None, "kernel"), reject=("ntk", 3, ""))
    return lambda: repr(kernels.GramStore(path, name))


def _tile_index(case, store):
    good = tuple(store.grid)
    return case.arg("index", good, reject=((99, 99), (0,), "00", (0.0, 0), (True, 0), None, (-1, 0))
                    + (((1, 0),) if store.tiles_total > 1 and (1, 0) not in good else ()))


def _tile_method(method):
    def build(case):
        store = _store(seed=case.draw(st.integers(0, 99)))
        index = _tile_index(case, store)
        return lambda: getattr(store, method)(index)
    return build


for _m in ("read_tile", "has_tile", "bounds"):
    entry(f"GramStore.{_m}")(_tile_method(_m))


@entry("GramStore.write_tile")
def write_tile(case):
    store = _store(seed=case.draw(st.integers(0, 99)))
    index = _tile_index(case, store) if case.draw(st.booleans()) else store.grid[0]
    if isinstance(index, tuple) and index in store.grid:
        i0, i1, j0, j1 = store.bounds(index)
        shape = (i1 - i0, j1 - j0)
    else:
        shape = (3, 3)
    block = array(case, "block", shape, extreme=[], aliases=("index",))
    return lambda: store.write_tile(index, block)


@entry("GramStore.to_numpy")
def store_to_numpy(case):
    store = _store(seed=case.draw(st.integers(0, 99)))
    dtype = case.arg("dtype", (None, "float32", np.float64), reject=("int8", "bogus", 3, bool))
    out = case.arg("out", (None, "fresh"), reject=("wrong_shape", "int", [[0.0]], "read_only"))
    buffers = {"fresh": lambda: np.empty(store.shape), "wrong_shape": lambda: np.empty((9, 9)),
               "int": lambda: np.empty(store.shape, dtype=int),
               "read_only": lambda: np.lib.stride_tricks.as_strided(np.empty(store.shape), writeable=False)}
    target = buffers[out]() if isinstance(out, str) else out
    return lambda: store.to_numpy(dtype=dtype, out=target)


@entry("GramStore.as_dask")
def as_dask(case):
    store = _store(seed=case.draw(st.integers(0, 99)), symmetric=case.draw(st.booleans()))
    return lambda: np.asarray(store.as_dask().compute())


# ------------------------------------------------------------------------------------------ solve_stored
@entry("solve_stored")
def solve_stored(case):
    n = case.draw(st.integers(1, 7))
    store = case.arg("store", (_store(n, seed=case.draw(st.integers(0, 99))),),
                     reject=(np.eye(n), "store", None, _store(n, symmetric=False)))
    y = targets(case, "y", n)
    alpha = case.arg("alpha", (0.0, 1e-3, 1.0), bad=(1e300,), reject=(-1.0, NAN, INF, True, "1"))
    method = case.arg("method", ("auto", "cholesky", "cg"), reject=("lu", None, 1))
    tol = case.arg("tol", (1e-9, 0.5), reject=(0.0, 1.0, -1.0, NAN, True))
    max_iter = case.arg("max_iter", (None, 1, 60), reject=(0, True, 1.5, "3"))
    memory_limit = case.arg("memory_limit", (None, 0, 10 ** 9), reject=(-1, 1.5, "1GB", True))
    n_centers = case.arg("n_centers", (1, 3, 1000), reject=(0, True, 2.5))
    random_state = case.arg("random_state", (0, None, np.random.default_rng(1)), reject=(-1, "seed", 1.5, True))
    return lambda: kernels.solve_stored(store, y, alpha, method=method, tol=tol, max_iter=max_iter,
                                        memory_limit=memory_limit, n_centers=n_centers, random_state=random_state)


@entry("EmpiricalNTK")
def empirical_ntk_kernel(case):
    import torch
    from nets.models import MLP
    torch.manual_seed(0)
    model = case.arg("model", (MLP(2, [3], d_out=1),), reject=(lambda x: x, "mlp", None, np.eye(2)))
    output = case.arg("output", ("mean",), reject=("full", "trace", None, 1))
    method = case.arg("method", ("auto", "jacobian", "structured"), reject=("fast", 1))
    x = array(case, "x1", (case.draw(st.integers(1, 4)), 2))
    return lambda: kernels.gram(kernels.EmpiricalNTK(model, output, method), x, tile=2, progress=False)


# ------------------------------------------------------------------------------------------ loss flow
LOSSES = ("mse", "hinge", "quadratic_hinge", "softhinge", "logistic", "cross_entropy")


def _flow_targets(case, loss, n):
    rng = np.random.default_rng(case.draw(st.integers(0, 2 ** 16)))
    if loss == "cross_entropy":
        good = [np.arange(n) % 2, np.arange(n) % 3]
        reject = [np.arange(n) - 1, np.arange(n) + 0.5, np.full(n, 10 ** 12), "y", None, np.zeros((n, 2), int)]
    elif loss == "mse":
        return targets(case, "y", n)
    else:
        good = [np.where(rng.standard_normal(n) > 0, 1.0, -1.0), np.where(rng.standard_normal((n, 2)) > 0, 1.0, -1.0)]
        reject = [np.zeros(n), np.full(n, 2.0), np.full(n, np.nan), "y", None]
    return case.arg("y", good, reject=reject)


@entry("kernel_gradient_flow")
def kernel_gradient_flow(case):
    n = case.draw(st.integers(1, 6))
    loss = case.arg("loss", LOSSES, reject=("huber", None, 1))
    y = _flow_targets(case, loss, n)
    rng = np.random.default_rng(case.draw(st.integers(0, 2 ** 16)))
    A = rng.standard_normal((n, n))
    K = case.arg("K_train", (A @ A.T, np.eye(n), np.zeros((n, n))), bad=((A @ A.T) * 1e300, (A @ A.T) * 1e12),
                 reject=(np.full((n, n), np.nan), np.ones((n, n + 1)), "K", None))
    t = case.arg("t", (0.0, 0.5, 10.0), bad=(1e6, 1e300), reject=NOT_NUMBERS + (-1.0,))
    method = case.arg("method", (None, "DOP853", "RK23", "Radau", "euler"), reject=("leapfrog", 3))
    steps = case.arg("steps", (1, 100), bad=(10 ** 7,), reject=(0, True, 2.5, 10 ** 8, None))
    beta = case.arg("beta", (1.0, 5.0), bad=(1e300,), reject=(0.0, -1.0, NAN, True))
    f0 = case.arg("f0", (None, "zeros"), bad=("huge",), reject=("nan", "short"))
    outputs = 3 if loss == "cross_entropy" else (y.shape[1] if isinstance(y, np.ndarray) and y.ndim == 2 else 1)
    f0_values = {"zeros": np.zeros((n, outputs)), "huge": np.full((n, outputs), 1e300),
                 "nan": np.full((n, outputs), np.nan), "short": np.zeros((n + 1, outputs))}
    start = f0_values[f0] if isinstance(f0, str) else f0
    K_test = rng.standard_normal((2, n)) if case.draw(st.booleans()) else None
    return lambda: kernels.kernel_gradient_flow(K, y, t, loss=loss, beta=beta, K_test=K_test, f0=start,
                                                method=method, steps=steps, max_nfev=50_000)


@entry("loss_derivatives")
def loss_derivatives(case):
    n, outputs = case.draw(st.integers(1, 5)), case.draw(st.integers(2, 3))
    loss = case.arg("loss", LOSSES, reject=("huber", None, 1))
    f = array(case, "f", (n, outputs))
    rng = np.random.default_rng(case.draw(st.integers(0, 99)))
    if loss == "cross_entropy":
        y = case.arg("y", (np.arange(n) % outputs,), reject=(np.full(n, outputs), np.arange(n + 1) % outputs,
                                                               np.full(n, 0.5)))
    else:
        y = case.arg("y", (np.where(rng.standard_normal((n, outputs)) > 0, 1.0, -1.0),),
                     reject=(np.ones((n + 1, outputs)), "y", np.full((n, outputs), np.nan)))
    beta = case.arg("beta", (1.0,), reject=(0.0, NAN, True))
    return lambda: kernels.loss_derivatives(f, y, loss, beta)


@entry("backend.to_device")
def to_device(case):
    n, d = shape2(case)
    x = array(case, "a", (n, d), invalid=[])
    device = case.arg("device", ("cpu", "auto"), reject=("gpu", None, 3))
    return lambda: kernels.to_device(np.asarray(kernels.check_array(x, "a", dtype="float64")), device)
