"""neural-tangents as a peer, run in its own virtual environment through a subprocess.

neural-tangents 0.6.5 needs an old JAX and NumPy < 2, which conflict with lazykit's environment, so it
lives in a separate venv (install commands: docs/conventions.md, *Benchmarks*).

``LAZYKIT_NT_PYTHON`` names that venv's interpreter; its default is
``$XDG_DATA_HOME/lazykit/nt-venv/bin/python`` (``~/.local/share/lazykit/nt-venv/bin/python`` when
``XDG_DATA_HOME`` is unset). Without an interpreter there the benchmark reports "peer not installed". This file
is both the host side (``nt_kernels``, ``nt_kernels_many``, ``nt_time``) and, run by that interpreter as a
script, the worker that builds the ``stax`` network and evaluates or times its ``kernel_fn`` (float64 via
``jax_enable_x64``). Arrays travel through a temporary .npz file, parameters as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

NOT_INSTALLED = "peer not installed"
ENV_NT_PYTHON = "LAZYKIT_NT_PYTHON"


def default_nt_python() -> str:
    """``$XDG_DATA_HOME/lazykit/nt-venv/bin/python``, with XDG_DATA_HOME defaulting to ~/.local/share."""
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "lazykit", "nt-venv", "bin", "python")


def nt_python() -> str:
    """Interpreter of the neural-tangents venv: ``LAZYKIT_NT_PYTHON``, else ``default_nt_python()``."""
    return os.environ.get(ENV_NT_PYTHON) or default_nt_python()


def _call(task: dict, arrays: dict, timeout: float) -> dict:
    import numpy as np
    if not os.path.exists(nt_python()):
        raise RuntimeError(f"{NOT_INSTALLED}: no interpreter at {nt_python()} (set {ENV_NT_PYTHON}; the install "
                           "commands are in docs/conventions.md, Benchmarks)")
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(inp, **arrays)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
        proc = subprocess.run([nt_python(), os.path.abspath(__file__), json.dumps(task), inp, out],
                              capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"neural-tangents worker failed:\n{proc.stderr[-3000:]}")
        with np.load(out) as result:
            return {k: result[k] for k in result.files}


def nt_kernels(config: dict, x1, x2=None, dtype: str = "float64", timeout: float = 600) -> tuple:
    """(nngp, ntk) from neural-tangents ``stax`` for ``config`` (the keyword arguments of
    ``FullyConnected`` or ``Convolutional`` plus ``"kind": "fc" | "conv"``; images as (N, C, H, W))."""
    return nt_kernels_many([(config, x1, x2)], dtype, timeout)[0]


def nt_kernels_many(requests: list, dtype: str = "float64", timeout: float = 1800) -> list:
    """``nt_kernels`` for many ``(config, x1, x2)`` in one worker process (JAX starts once)."""
    arrays, items = {}, []
    for i, (config, x1, x2) in enumerate(requests):
        arrays[f"x1_{i}"] = x1
        if x2 is not None:
            arrays[f"x2_{i}"] = x2
        items.append({"config": config, "x1": f"x1_{i}", "x2": None if x2 is None else f"x2_{i}"})
    out = _call({"op": "kernels", "items": items, "dtype": dtype}, arrays, timeout)
    return [(out[f"nngp_{i}"], out[f"ntk_{i}"]) for i in range(len(requests))]


def nt_time(config: dict, x1, x2=None, dtype: str = "float64", repeats: int = 5, warmup: int = 1,
            batch_size: int = 0, timeout: float = 3600) -> list:
    """Wall times (s) of the jitted ``kernel_fn(x1, x2, ('nngp', 'ntk'))`` after ``warmup`` calls
    (``batch_size`` > 0 wraps it in ``nt.batch`` to bound memory)."""
    arrays = {"x1": x1} if x2 is None else {"x1": x1, "x2": x2}
    task = {"op": "time", "config": config, "x1": "x1", "x2": None if x2 is None else "x2", "dtype": dtype,
            "repeats": repeats, "warmup": warmup, "batch_size": batch_size}
    return [float(t) for t in _call(task, arrays, timeout)["times"]]


# ----------------------------------------------------------------------------------------------- worker
def _stax_network(config: dict):
    """The stax network matching a lazykit kernel's parameters."""
    from neural_tangents import stax
    act = config.get("activation", "relu")
    activations = {"relu": stax.Relu, "erf": stax.Erf, "abs": stax.Abs, "identity": stax.Identity,
                   "leaky_relu": lambda: stax.LeakyRelu(config.get("negative_slope", 0.01))}
    if act not in activations:
        raise ValueError(f"no stax counterpart for activation {act!r}")
    common = dict(W_std=config.get("w_std", 2 ** 0.5), b_std=config.get("b_std", 0.0),
                  parameterization=config.get("parameterization", "ntk"))
    width = config.get("width") or 512
    layers = []
    for _ in range(config.get("depth", 3)):
        if config["kind"] == "fc":
            layers.append(stax.Dense(width, **common))
        else:
            f = config.get("filter_size", 3)
            layers.append(stax.Conv(width, (f, f), padding="SAME", **common))
        layers.append(activations[act]())
    if config["kind"] == "conv":
        layers.append(stax.GlobalAvgPool() if config.get("readout", "gap") == "gap" else stax.Flatten())
    layers.append(stax.Dense(1, **common))
    return stax.serial(*layers)


def _worker(task: dict, inp: str, out: str):
    import time

    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", task["dtype"] == "float64")
    import neural_tangents as nt

    with np.load(inp) as data:
        arrays = {k: data[k].astype(task["dtype"]) for k in data.files}

    def inputs(item):
        x1, x2 = arrays[item["x1"]], None if item["x2"] is None else arrays[item["x2"]]
        if item["config"]["kind"] == "conv":   # NCHW -> NHWC, stax's default layout
            x1, x2 = (None if x is None else np.transpose(x, (0, 2, 3, 1)) for x in (x1, x2))
        return x1, x2

    if task["op"] == "kernels":
        results = {}
        for i, item in enumerate(task["items"]):
            _, _, kernel_fn = _stax_network(item["config"])
            k = kernel_fn(*inputs(item), ("nngp", "ntk"))
            results[f"nngp_{i}"] = np.asarray(k[0], dtype=np.float64)
            results[f"ntk_{i}"] = np.asarray(k[1], dtype=np.float64)
        np.savez(out, **results)
        return
    x1, x2 = inputs(task)
    _, _, kernel_fn = _stax_network(task["config"])
    fn = jax.jit(kernel_fn, static_argnames="get")
    if task["batch_size"]:
        fn = nt.batch(fn, batch_size=task["batch_size"])

    def run():
        result = fn(x1, x2, ("nngp", "ntk"))
        jax.block_until_ready(result)

    for _ in range(task["warmup"]):
        run()
    times = []
    for _ in range(task["repeats"]):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    np.savez(out, times=np.asarray(times))


# ------------------------------------------------------------------------- stax specs (host and worker)
# An architecture is a JSON "spec" written with neural-tangents' own layer and argument names:
# ``[name, kwargs]`` for a layer, ``[name, kwargs, [child specs...]]`` for ``serial`` / ``parallel``, e.g.
# ``["serial", {}, [["Conv", {"out_chan": 8, "filter_shape": [3, 3], "padding": "SAME"}], ["Relu", {}],
# ["GlobalAvgPool", {}], ["Dense", {"out_dim": 1}]]]``. JSON lists become tuples (filter_shape, strides, s,
# dimension_numbers). Images travel as (N, C, H, W) and are moved to channels-last for stax (its default
# layout, NHWC for 2-D); (n, d) inputs go as they are.
STAX_COMBINATORS = ("serial", "parallel")


def nt_stax_kernels_many(requests: list, dtype: str = "float64", timeout: float = 1800) -> tuple:
    """(list of (nngp, ntk), versions) from neural-tangents ``stax`` for ``(spec, x1, x2)`` requests, one
    worker process for all; ``versions`` is ``{"neural_tangents": ..., "jax": ...}`` of the peer venv."""
    arrays, items = {}, []
    for i, (spec, x1, x2) in enumerate(requests):
        arrays[f"x1_{i}"] = x1
        if x2 is not None:
            arrays[f"x2_{i}"] = x2
        items.append({"spec": spec, "x1": f"x1_{i}", "x2": None if x2 is None else f"x2_{i}"})
    out = _call({"op": "stax_kernels", "items": items, "dtype": dtype}, arrays, timeout)
    versions = {"neural_tangents": str(out["nt_version"]), "jax": str(out["jax_version"])}
    return [(out[f"nngp_{i}"], out[f"ntk_{i}"]) for i in range(len(requests))], versions


def nt_stax_time(spec, x1, x2=None, dtype: str = "float64", repeats: int = 5, warmup: int = 1,
                 timeout: float = 3600) -> list:
    """Wall times (s) of the jitted ``kernel_fn(x1, x2, ('nngp', 'ntk'))`` of the stax network ``spec`` (see
    above; images (N, C, H, W)) after ``warmup`` calls."""
    arrays = {"x1": x1} if x2 is None else {"x1": x1, "x2": x2}
    task = {"op": "stax_time", "spec": spec, "x1": "x1", "x2": None if x2 is None else "x2", "dtype": dtype,
            "repeats": repeats, "warmup": warmup}
    return [float(t) for t in _call(task, arrays, timeout)["times"]]


def _tuples(value):
    """JSON lists -> tuples, recursively (stax wants tuples for shapes, strides, s, dimension_numbers)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def stax_from_spec(spec):
    """The stax layer ``(init_fn, apply_fn, kernel_fn)`` described by ``spec`` (see above)."""
    from neural_tangents import stax
    if not isinstance(spec, (list, tuple)) or len(spec) not in (2, 3) or not isinstance(spec[0], str):
        raise ValueError(f"a spec is [name, kwargs] or [name, kwargs, children], got {spec!r}")
    name, kwargs = spec[0], dict(spec[1] or {})
    if name.startswith("_") or not hasattr(stax, name):
        raise ValueError(f"neural_tangents.stax has no layer {name!r}")
    factory = getattr(stax, name)
    if name in STAX_COMBINATORS:
        if len(spec) != 3 or kwargs:
            raise ValueError(f"{name} takes no keyword arguments and a list of children, got {spec!r}")
        return factory(*(stax_from_spec(child) for child in spec[2]))
    if len(spec) == 3:
        raise ValueError(f"only {STAX_COMBINATORS} take children, got {spec!r}")
    return factory(**_tuples(kwargs))


def _stax_worker(task: dict, inp: str, out: str):
    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", task["dtype"] == "float64")
    import neural_tangents as nt

    with np.load(inp) as data:
        arrays = {k: data[k].astype(task["dtype"]) for k in data.files}

    def channels_last(x):   # (N, C, *spatial) -> (N, *spatial, C); (n, d) unchanged
        return x if x is None or x.ndim < 3 else np.moveaxis(x, 1, -1)

    if task["op"] == "stax_time":
        import time
        _, _, kernel_fn = stax_from_spec(task["spec"])
        fn = jax.jit(kernel_fn, static_argnames="get")
        x1 = channels_last(arrays[task["x1"]])
        x2 = None if task["x2"] is None else channels_last(arrays[task["x2"]])
        times = []
        for k in range(task["warmup"] + task["repeats"]):
            start = time.perf_counter()
            jax.block_until_ready(fn(x1, x2, ("nngp", "ntk")))
            if k >= task["warmup"]:
                times.append(time.perf_counter() - start)
        np.savez(out, times=np.asarray(times))
        return
    results = {"nt_version": np.asarray(nt.__version__), "jax_version": np.asarray(jax.__version__)}
    for i, item in enumerate(task["items"]):
        _, _, kernel_fn = stax_from_spec(item["spec"])
        x1 = channels_last(arrays[item["x1"]])
        x2 = None if item["x2"] is None else channels_last(arrays[item["x2"]])
        k = kernel_fn(x1, x2, ("nngp", "ntk"))
        results[f"nngp_{i}"] = np.asarray(k[0], dtype=np.float64)
        results[f"ntk_{i}"] = np.asarray(k[1], dtype=np.float64)
    np.savez(out, **results)


if __name__ == "__main__":
    _task = json.loads(sys.argv[1])
    (_stax_worker if _task["op"] in ("stax_kernels", "stax_time") else _worker)(_task, sys.argv[2], sys.argv[3])
