"""Analytic NNGP and NTK of infinitely wide fully-connected and convolutional networks.

A kernel object describes its network once (``network()``: the layers in order and their hyperparameters, a
``kernels.rules.Network``) and computes the kernel tile by tile by running that chain of pure layer rules
(``kernels.rules``) on each tile's state. Conventions follow neural-tangents' ``stax`` (Novak et al. 2020;
docs/conventions.md):

* input:  K⁰(x, x') = x·x'/d (per pixel pair and averaged over channels for images), Θ⁰ = 0;
* Dense/Conv, 'ntk':      K ← w²·K + b²,  Θ ← K_new + w²·Θ;
* Dense/Conv, 'standard': Θ ← n_in·K_old + w²·Θ + [bias],  K ← w²·K + b², where n_in is the fan-in
  (input width, or channels × filter area for a convolution); ``b_std=None`` drops the bias entirely;
* activation: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)] (``kernels.duals``), diagonals K_ii ← E[φ(u)²];
* convolution ('SAME' zero padding, f×f filter): the pixel-pair covariance is summed over the aligned
  patch, K(p, q) ← Σ_o K(p+o, q+o) / f² (Arora et al. 2019, CNTK), and so are the per-pixel variances;
* readout: 'gap' averages over all pixel pairs, 'flatten' over matching pixels, then a Dense layer with
  one output. ``depth`` counts the hidden [Dense/Conv, activation] blocks before it.

Kernels are computed in tiles of ``block_size`` rows × columns (bounding peak memory to the output plus a
few tiles); when ``x2`` is None only tiles on or above the diagonal are computed and mirrored, and the
diagonal of a same-input tile is pinned to the variances, so θ = 0 exactly there.

``trained_layers`` (None: all) names the layers whose weights and biases are trained, 1 … depth for the
hidden Dense/Conv layers and depth + 1 for the readout: a frozen layer keeps its own term out of Θ (its
rule does Θ ← w²·Θ only), while the NNGP is unchanged.

Which implementation runs (``cpu_impl``): on NumPy arrays with a closed-form activation (ReLU family,
step, identity, erf), 'auto' uses the fused numba loops of ``kernels._analytic_cpu``; quadrature
activations, array-API namespaces other than NumPy (array-api-strict) and ``cpu_impl='reference'`` run
the rule chain of ``kernels.rules`` (the portable reference); ``cpu_impl='fused'`` insists and raises
where the loop cannot run. On a CUDA array with a closed-form activation and all layers trained,
``kernels._analytic_cuda`` replaces pairs of rules by fused CuPy kernels (frozen layers: the rule chain).
"""
from __future__ import annotations

import math
import os

import numpy as np
import threadpoolctl

from kernels import backend, rules
from kernels.duals import get_dual
from kernels.parameters import ParameterHolder
from kernels.validation import KernelOverflowError, check_array, check_choice, check_scalar

PARAMETERIZATIONS = ("ntk", "standard")
READOUTS = ("gap", "flatten")
CPU_IMPLS = ("auto", "fused", "reference")


# ----------------------------------------------------------------------------------------------- tiling
def _tiles(n1: int, n2: int, block: int, symmetric: bool):
    for i in range(0, n1, block):
        for j in range(i if symmetric else 0, n2, block):
            yield i, min(i + block, n1), j, min(j + block, n2)


def _run_tiles(xp, tile_fn, n1: int, n2: int, block: int, symmetric: bool, want: tuple, dtype, device,
               n_jobs: int):
    """Fill (n1, n2) outputs tile by tile; ``tile_fn(i0, i1, j0, j1)`` returns the wanted (nngp, ntk) tiles."""
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

    tiles = list(_tiles(n1, n2, block, symmetric))
    # One BLAS thread per tile worker: a tile's product is small, and BLAS threads nested in the workers
    # oversubscribe the cores (measured 4× slower on 2 cores).
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        backend.thread_map(work, tiles, n_jobs)
    return [o for o in outs if o is not None]


def _check_trained_layers(trained_layers, depth: int) -> frozenset:
    """The set of trained layer indices (1 … depth hidden layers, depth + 1 the readout); None = all."""
    if trained_layers is None:
        return frozenset(range(1, depth + 2))
    if isinstance(trained_layers, (str, bytes)) or not hasattr(trained_layers, "__iter__"):
        raise TypeError("`trained_layers` must be None (all layers) or a collection of layer indices "
                        f"(1 … {depth}: hidden layers, {depth + 1}: the readout), got {trained_layers!r}")
    layers = [check_scalar(layer, f"trained_layers (1 … {depth}: hidden layers, {depth + 1}: the readout) entry",
                           int, min_val=1, max_val=depth + 1) for layer in trained_layers]
    if len(set(layers)) != len(layers):
        raise ValueError(f"`trained_layers` names a layer twice: {trained_layers!r}")
    return frozenset(layers)


# ----------------------------------------------------------------------------------------------- base class
def _mean_square(xp, x) -> float:
    """max over samples of ‖x‖²/d (0 for None); +inf when the squares overflow."""
    if x is None:
        return 0.0
    with np.errstate(over="ignore"):
        return float(xp.max(xp.sum(x * x, axis=tuple(range(1, x.ndim))))) / math.prod(x.shape[1:])



class _AnalyticKernel(ParameterHolder):
    """Shared parameter handling, validation and the public nngp / ntk / kernels methods."""

    _param_names = ("depth", "activation", "w_std", "b_std", "parameterization", "width",
                    "negative_slope", "device", "dtype", "block_size", "n_jobs", "trained_layers", "cpu_impl")

    def _check_params(self):
        check_scalar(self.depth, "depth", int, min_val=0)
        # below 1e150: w_std² and b_std² must be finite (larger values overflow at the first layer)
        check_scalar(self.w_std, "w_std", float, min_val=0, max_val=1e150, include_boundaries="neither")
        check_scalar(self.b_std, "b_std", float, min_val=0, max_val=1e150, include_boundaries="left",
                     allow_none="no bias")
        check_choice(self.parameterization, "parameterization", PARAMETERIZATIONS)
        if self.parameterization == "standard" and self.width is None:
            raise ValueError("parameterization='standard' needs width= (the hidden width, a positive "
                             "integer), because its NTK depends on it; got width=None")
        check_scalar(self.width, "width", int, min_val=1, allow_none="not needed for 'ntk'")
        check_scalar(self.block_size, "block_size", int, min_val=1, allow_none="automatic")
        check_scalar(self.n_jobs, "n_jobs", int, min_val=1, allow_none="all cores")
        if self.device is not None:
            backend.resolve_device(self.device)
        if self.dtype is not None:
            backend.resolve_dtype(self.dtype, "cpu")
        self._dual = get_dual(self.activation, self.negative_slope)   # validates activation, negative_slope
        check_choice(self.cpu_impl, "cpu_impl", CPU_IMPLS)
        self._trained = _check_trained_layers(self.trained_layers, self.depth)

    def _trained_flags(self) -> list:
        """1.0 for each trained layer, 0.0 for each frozen one, for layers 1 … depth + 1 (the readout)."""
        return [1.0 if layer in self._trained else 0.0 for layer in range(1, self.depth + 2)]

    def _fused_unavailable(self, xp):
        """Why the fused CPU loop cannot compute this kernel (None when it can)."""
        if self.cpu_impl == "reference":
            return "cpu_impl='reference'"
        if not xp.__name__.endswith("numpy"):
            return f"the inputs are {xp.__name__} arrays, not NumPy"
        if not self._dual.closed:
            return f"activation {self._dual.name!r} has no closed-form dual (quadrature runs in the reference path)"
        try:
            import numba  # noqa: F401
        except ImportError:
            return "numba is not installed"
        return None

    def _use_fused(self, xp) -> bool:
        reason = self._fused_unavailable(xp)
        if reason is not None and self.cpu_impl == "fused":
            raise ValueError(f"cpu_impl='fused' cannot run: {reason}; use cpu_impl='auto' or 'reference'")
        return reason is None

    def set_params(self, **params):
        """Change constructor arguments (validated as in ``__init__``); returns self."""
        unknown = set(params) - set(self._param_names)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; valid: {', '.join(self._param_names)}")
        self.__init__(**{**self.get_params(), **params})
        return self

    def __hash__(self):   # trained_layers may be given as a list: hash the set it names
        params = dict(self.get_params(), trained_layers=self._trained)
        return hash((type(self).__name__,) + tuple(params.items()))

    def __getstate__(self):
        return self.get_params()

    def __setstate__(self, state):
        self.__init__(**state)

    # public API
    def nngp(self, x1, x2=None):
        """NNGP kernel K(x1, x2) of the network output, shape (n1, n2)."""
        return self._compute(x1, x2, (True, False))[0]

    def ntk(self, x1, x2=None):
        """Neural tangent kernel Θ(x1, x2), shape (n1, n2)."""
        return self._compute(x1, x2, (False, True))[0]

    def kernels(self, x1, x2=None):
        """(NNGP, NTK) in one pass."""
        return tuple(self._compute(x1, x2, (True, True)))

    # internals
    def _inputs(self, x1, x2):
        was_torch = backend.is_torch(x1)
        x1 = check_array(x1, "x1", ndim=self._ndim, device=self.device, dtype=self.dtype)
        if x2 is not None:
            x2 = check_array(x2, "x2", ndim=self._ndim, device=backend.device_of(x1))
            if x2.dtype != x1.dtype:
                x2 = backend.get_namespace(x2).astype(x2, x1.dtype)
            if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
                raise ValueError(f"x2 must have the same feature shape as x1: x1 has {tuple(x1.shape[1:])}, "
                                 f"x2 has {tuple(x2.shape[1:])}")
        return x1, x2, was_torch

    def _compute(self, x1, x2, want):
        """The wanted outputs (NNGP, NTK): inputs checked and rescaled, the loops run, the scale restored."""
        x1, x2, was_torch = self._inputs(x1, x2)
        xp = backend.get_namespace(x1)
        size = max(_mean_square(xp, x1), _mean_square(xp, x2))
        out_dtype = x1.dtype
        x1, x2, rescale = self._rescaled(xp, x1, x2)
        x1, x2 = self._accumulation_dtype(xp, x1, x2)
        self._check_input_range(xp, x1, x2)
        outs = self._loops(xp, x1, x2, want, out_dtype)
        if rescale:
            with np.errstate(over="ignore"):   # an overflow here is reported by _check_overflow
                outs = [backend.times_power_of_two(o, rescale) for o in outs]
        for out, name in zip(outs, [n for n, w in zip(("NNGP", "NTK"), want) if w]):
            self._check_overflow(xp, out, name, size)
        if was_torch:
            outs = [backend.to_torch(o) for o in outs]
        return outs

    @staticmethod
    def _accumulation_dtype(xp, x1, x2):
        """float32 on the CPU is accumulated in float64 and rounded once at the end: the layer recursion amplifies
        rounding errors (chaotic activations, deep nets), and float64 costs about the same there. The CUDA
        kernels keep float32."""
        if xp.__name__.endswith("numpy") and not _uses_cuda_kernels(xp) and x1.dtype == xp.float32:
            return tuple(None if x is None else xp.astype(x, xp.float64) for x in (x1, x2))
        return x1, x2

    def _loops(self, xp, x1, x2, want, out_dtype):
        """The outputs in ``out_dtype`` from the fused CPU loops (numba) or the array-namespace reference tiles."""
        symmetric = x2 is None
        xb = x1 if symmetric else x2
        # CuPy queues on one stream and other namespaces are reference paths: threads only for NumPy
        n_jobs = (self.n_jobs or (os.cpu_count() or 1)) if xp.__name__.endswith("numpy") else 1
        fused = self._use_fused(xp)
        if fused:
            from kernels import _analytic_cpu   # compiles (once, then cached) on first use
            if x1.ndim == 4:
                return [o if o.dtype == out_dtype else xp.astype(o, out_dtype)
                        for o in _analytic_cpu.conv_kernels(self, x1, x2, want, n_jobs)]
            tile_fn = _analytic_cpu.fc_tile_function(self, x1, xb, symmetric, want[1])
        else:
            tile_fn = self._tile_function(xp, x1, xb, symmetric, want[1])
        return _run_tiles(xp, tile_fn, x1.shape[0], xb.shape[0], self._block(x1), symmetric, want, out_dtype,
                          x1.device, n_jobs)

    def _homogeneous(self) -> bool:
        """True when K(c·x, c·x') = c²·K(x, x') for c > 0: a piecewise-linear activation (ReLU, leaky ReLU,
        abs, identity) and no bias term (b_std None, or 0 with the 'ntk' parameterization)."""
        no_bias = self.b_std is None or (self.b_std == 0 and self.parameterization == "ntk")
        return no_bias and self._dual.name in ("relu", "leaky_relu", "abs", "identity")

    def _rescaled(self, xp, x1, x2):
        """Inputs divided by powers of two 2^e1, 2^e2 near their largest |values| when those lie outside
        [2^-16, 2^16] and the kernel is positively homogeneous, with the exponent e1 + e2 of the factor that
        restores the kernel (0: nothing rescaled).

        Without bias a ReLU-type network's kernels are homogeneous of degree one in each argument,
        K(a·x, b·x') = a·b·K(x, x') for a, b > 0 (every layer rule keeps k12 ∝ ab, k11 ∝ a², k22 ∝ b², and the
        duals' angle θ depends only on the correlation). Dividing by a power of two is exact, so the result
        equals the unscaled computation wherever that does not overflow or underflow (|x| ≈ 2e77 in float64
        or 2e10 in float32 used to give NaN), and x1, x2 of very different sizes lose nothing.
        """
        if not self._homogeneous():
            return x1, x2, 0
        e1 = backend.power_of_two_exponent(x1)
        e1 = e1 if abs(e1) > 16 else 0
        if x2 is None:
            return backend.times_power_of_two(x1, -e1), None, 2 * e1
        e2 = backend.power_of_two_exponent(x2)
        e2 = e2 if abs(e2) > 16 else 0
        return backend.times_power_of_two(x1, -e1), backend.times_power_of_two(x2, -e2), e1 + e2

    def _check_input_range(self, xp, x1, x2):
        """ValueError naming x1/x2 when (‖x‖²/d)² would overflow (the first layer multiplies two variances)."""
        dtype = str(x1.dtype).split(".")[-1]
        limit = math.sqrt(float(np.finfo(dtype).max))
        for x, name in ((x1, "x1"), (x2, "x2")):
            size = _mean_square(xp, x)
            if not size < limit:
                raise KernelOverflowError(
                    f"{name} is too large for {type(self).__name__}(activation={self.activation!r}) in {dtype}: "
                    f"its largest mean square ||x||^2/d is {size:.3g}, but it must stay below {limit:.2g} (the "
                    f"kernel multiplies two variances). Rescale {name} (e.g. standardise it)"
                    + (", or use float64 (limit 1.3e154)" if dtype == "float32" else "")
                    + "; ReLU-type kernels without bias scale exactly and accept any finite input")

    def _check_overflow(self, xp, out, name, size):
        """ValueError when the kernel came out non-finite although inputs and weights were finite."""
        if bool(xp.all(xp.isfinite(out))):
            return
        dtype = str(out.dtype).split(".")[-1]
        limit = math.sqrt(float(np.finfo(dtype).max))
        raise KernelOverflowError(
            f"the {name} of {self!r} overflowed {dtype} on inputs x1/x2 with largest mean square ||x||^2/d = "
            f"{size:.3g}: kernel values must stay below about {limit:.1g} in {dtype} (the recursion multiplies "
            f"two variances), and each of the depth={self.depth} layers scales them by about "
            f"w_std^2 = {float(self.w_std) ** 2:.3g} times the activation's gain. Rescale x1/x2 (e.g. "
            "standardise them) or lower w_std or depth" + (", or use float64" if dtype == "float32" else ""))

    def _block(self, x1):
        if self.block_size is not None:
            return self.block_size
        # CPU: 256² tiles keep a layer's temporaries in cache; GPU: large tiles amortise kernel launches
        return 4096 if backend.device_of(x1) == "cuda" else 256


# ----------------------------------------------------------------------------------------------- FC
class FullyConnected(_AnalyticKernel):
    """NNGP/NTK of ``depth`` × [Dense(width), activation] followed by Dense(1), at infinite width.

    ``parameterization='ntk'``: W ~ N(0, 1) scaled by w_std/√fan_in in the forward pass (kernel
    independent of width). ``'standard'``: W ~ N(0, w_std²/fan_in); its NTK depends on the input dimension
    and on ``width``. ``b_std=None`` means no bias. ``readout_w_std``/``readout_b_std`` give the readout layer
    its own scales (None and "same": as ``w_std``/``b_std``; ``readout_b_std=None``: no readout bias), the
    network ``nets.MLP(readout_w_std=, readout_b_std=)``. Inputs are (n, d) arrays (NumPy, CuPy or torch).
    ``block_size`` rows × columns per tile bounds memory (None: 256 on the CPU, 4096 on the GPU);
    ``n_jobs`` threads share the tiles (NumPy; None = all cores). ``trained_layers`` and ``cpu_impl``: see the
    module docstring.
    """
    _ndim = 2
    _param_names = _AnalyticKernel._param_names + ("readout_w_std", "readout_b_std")

    def __init__(self, depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.0, parameterization="ntk",
                 width=None, *, readout_w_std=None, readout_b_std="same", negative_slope=0.01, device=None,
                 dtype=None, block_size=None, n_jobs=None, trained_layers=None, cpu_impl="auto"):
        self.depth, self.activation, self.w_std, self.b_std = depth, activation, w_std, b_std
        self.parameterization, self.width, self.negative_slope = parameterization, width, negative_slope
        self.readout_w_std, self.readout_b_std = readout_w_std, readout_b_std
        self.device, self.dtype, self.block_size, self.n_jobs = device, dtype, block_size, n_jobs
        self.trained_layers, self.cpu_impl = trained_layers, cpu_impl
        self._check_params()
        w = self.w_std if readout_w_std is None else check_scalar(readout_w_std, "readout_w_std", float, min_val=0,
                                                                   include_boundaries="neither")
        b = self.b_std if isinstance(readout_b_std, str) and readout_b_std == "same" else check_scalar(
            readout_b_std, "readout_b_std", float, min_val=0, allow_none="no readout bias")
        self._readout = (w, b)

    def network(self, input_dim: int) -> rules.Network:
        """The network's layers in order: ``depth`` × [Dense, activation], then the Dense readout."""
        layers, fan_in = [], input_dim
        for layer in range(1, self.depth + 1):
            layers += [rules.Layer("dense", fan_in, layer in self._trained), rules.Layer("activation")]
            fan_in = self.width or 0
        own = self._readout != (self.w_std, self.b_std)
        layers.append(rules.Layer("dense", fan_in, trained=self.depth + 1 in self._trained,
                                  scales=self._readout if own else None))
        return rules.Network(tuple(layers), self.w_std, self.b_std, self.parameterization, self._dual)

    def _tile_function(self, xp, x1, x2, symmetric, want_ntk):
        d = x1.shape[1]
        sq1 = xp.sum(x1 * x1, axis=1) / d
        sq2 = sq1 if symmetric else xp.sum(x2 * x2, axis=1) / d
        network = self.network(d)
        fused = _fused_pairs(xp, network)

        def tile(i0, i1, j0, j1):
            k12 = (x1[i0:i1, :] @ x2[j0:j1, :].T) / d
            k11, k22 = xp.reshape(sq1[i0:i1], (-1, 1)), xp.reshape(sq2[j0:j1], (1, -1))
            state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
            state = rules.run(network, state, xp, symmetric and i0 == j0, fused)
            return state[0], state[3]

        return tile


def _uses_cuda_kernels(xp) -> bool:
    """Whether tiles in namespace ``xp`` run the CUDA kernels of ``kernels._analytic_cuda`` (CuPy arrays)."""
    return xp.__name__.endswith("cupy")


def _fused_pairs(xp, network):
    """The fused CuPy replacements for rule pairs when the tile is a CUDA array, else None (also when a layer
    has its own scales, which the fused kernels do not read, or is frozen: the CUDA kernels add every layer's
    NTK term, so frozen layers run the rule chain)."""
    if (not _uses_cuda_kernels(xp) or any(layer.scales for layer in network.layers)
            or not all(layer.trained for layer in network.layers)):
        return None
    # imported here, not at the top: the module imports CuPy, an optional dependency
    from kernels import _analytic_cuda
    return _analytic_cuda.replacements(network)


# ----------------------------------------------------------------------------------------------- Conv
class Convolutional(_AnalyticKernel):
    """NNGP/NTK of ``depth`` × [Conv(f×f, 'SAME'), activation], readout 'gap' or 'flatten', then Dense(1).

    Images are (N, C, H, W) as in PyTorch. 'gap' needs every pixel pair, (H·W)² numbers per image pair;
    'flatten' only matching pixels, H·W per pair. Rule chain: ``block_size`` is the number of images per
    tile side (None: chosen so a tile's state stays under ``memory_budget`` bytes). Fused CPU loop: it keeps
    no pixel-pair tile at all (a few hundred kB per thread), and ``block_size``² is its image pairs per work
    chunk (None: a few chunks per thread, at most 4096 pairs). ``trained_layers`` and ``cpu_impl``: see the
    module docstring.
    """
    _ndim = 4
    _param_names = _AnalyticKernel._param_names + ("filter_size", "readout", "memory_budget")

    def __init__(self, depth=2, activation="relu", w_std=2 ** 0.5, b_std=0.0, filter_size=3, readout="gap",
                 parameterization="ntk", width=None, *, negative_slope=0.01, device=None, dtype=None,
                 block_size=None, n_jobs=None, memory_budget=2 ** 28, trained_layers=None, cpu_impl="auto"):
        self.depth, self.activation, self.w_std, self.b_std = depth, activation, w_std, b_std
        self.filter_size, self.readout = filter_size, readout
        self.parameterization, self.width, self.negative_slope = parameterization, width, negative_slope
        self.device, self.dtype, self.block_size, self.n_jobs = device, dtype, block_size, n_jobs
        self.trained_layers, self.cpu_impl = trained_layers, cpu_impl
        self.memory_budget = memory_budget
        if check_scalar(filter_size, "filter_size", int, min_val=1) % 2 == 0:
            raise ValueError(f"filter_size must be a positive odd integer ('SAME' padding), got {filter_size!r}")
        check_choice(readout, "readout", READOUTS)
        check_scalar(memory_budget, "memory_budget", int, min_val=1)
        self._check_params()

    def _block(self, x1):
        if self.block_size is not None:
            return self.block_size
        h, w = x1.shape[2], x1.shape[3]
        per_pair = (h * w) ** (2 if self.readout == "gap" else 1) * x1.dtype.itemsize * 8
        return max(1, int(math.sqrt(self.memory_budget / per_pair)))

    def network(self, channels: int, height: int, width: int) -> rules.Network:
        """The network's layers in order: ``depth`` × [Conv, activation], the readout, then the Dense readout."""
        full = self.readout == "gap"
        area = self.filter_size ** 2
        layers, fan_in = [], channels * area
        for layer in range(1, self.depth + 1):
            layers += [rules.Layer("conv", fan_in, layer in self._trained), rules.Layer("activation")]
            fan_in = (self.width or 0) * area
        n_chan = channels if self.depth == 0 else (self.width or 0)
        layers += [rules.Layer("readout"),
                   rules.Layer("dense", n_chan * (1 if full else height * width), self.depth + 1 in self._trained)]
        return rules.Network(tuple(layers), self.w_std, self.b_std, self.parameterization, self._dual,
                             self.filter_size, full)

    def _tile_function(self, xp, x1, x2, symmetric, want_ntk):
        n_chan, h, w = x1.shape[1], x1.shape[2], x1.shape[3]
        full = self.readout == "gap"
        var1 = xp.sum(x1 * x1, axis=1) / n_chan                          # (N, H, W)
        var2 = var1 if symmetric else xp.sum(x2 * x2, axis=1) / n_chan
        network = self.network(n_chan, h, w)
        fused = _fused_pairs(xp, network)

        def tile(i0, i1, j0, j1):
            a, b = x1[i0:i1, ...], x2[j0:j1, ...]
            if full:   # K(p, q) = Σ_c a[c, p] b[c, q] / C, as (B1, B2, H, W, H, W)
                fa = xp.reshape(xp.permute_dims(a, (0, 2, 3, 1)), (-1, n_chan))
                fb = xp.reshape(xp.permute_dims(b, (0, 2, 3, 1)), (-1, n_chan))
                k12 = xp.reshape(fa @ fb.T / n_chan, (i1 - i0, h, w, j1 - j0, h, w))
                k12 = xp.permute_dims(k12, (0, 3, 1, 2, 4, 5))
                k11 = xp.reshape(var1[i0:i1, ...], (i1 - i0, 1, h, w, 1, 1))
                k22 = xp.reshape(var2[j0:j1, ...], (1, j1 - j0, 1, 1, h, w))
            else:      # matching pixels only, as (B1, B2, H, W)
                k12 = xp.sum(a[:, None, ...] * b[None, ...], axis=2) / n_chan
                k11 = xp.reshape(var1[i0:i1, ...], (i1 - i0, 1, h, w))
                k22 = xp.reshape(var2[j0:j1, ...], (1, j1 - j0, h, w))
            state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
            state = rules.run(network, state, xp, symmetric and i0 == j0, fused)
            return state[0], state[3]

        return tile
