"""Analytic NNGP and NTK of infinitely wide fully-connected and convolutional networks.

A network is a list of per-layer rules acting on the kernel *state*
``(k12, k11, k22, ntk)``: the NNGP cross term of a tile of input pairs, the two diagonals (variances of
the rows' and the columns' inputs, broadcastable against k12) and the NTK (None when only the NNGP is
wanted). Conventions follow neural-tangents' ``stax`` (Novak et al. 2020; GUIDE §2):

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
"""
from __future__ import annotations

import concurrent.futures
import math
import numbers
import os

import numpy as np
import threadpoolctl

from kernels import backend
from kernels.duals import get_dual
from kernels.parameters import ParameterHolder

PARAMETERIZATIONS = ("ntk", "standard")
READOUTS = ("gap", "flatten")


# ----------------------------------------------------------------------------------------------- layer rules
def dense_rule(state, w_std: float, b_std, parameterization: str, fan_in: int):
    """Affine layer (Dense, or a Conv whose patch sum was already taken): returns the next state.

    Rules consume their state: the tile owns its arrays, so they are updated in place where possible.
    """
    k12, k11, k22, ntk = state
    w2, b2 = w_std * w_std, (0.0 if b_std is None else b_std * b_std)
    if ntk is not None:
        ntk *= w2
        if parameterization == "standard":
            ntk += fan_in * k12
            if b_std is not None:
                ntk += 1.0
    k12 *= w2
    if b2:
        k12 += b2
    if ntk is not None and parameterization == "ntk":
        ntk += k12
    k11, k22 = (None if v is None else w2 * v + b2 for v in (k11, k22))
    return k12, k11, k22, ntk


def activation_rule(state, dual):
    """Elementwise nonlinearity: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)], diagonals K ← E[φ(u)²]."""
    k12, k11, k22, ntk = state
    if ntk is None:
        k12 = dual.nngp(k12, k11, k22)
    else:
        k12, factor = dual.both(k12, k11, k22)
        ntk *= factor
    return k12, dual.nngp(k11, k11, k11), dual.nngp(k22, k22, k22), ntk


def patch_sum(a, axis_groups, filter_size: int):
    """Σ_o a[p + o] / f² over offsets o ∈ [−r, r]² ('SAME' zero padding, r = f//2).

    ``axis_groups`` pairs each spatial direction with the axes that shift together: ((2, 4), (3, 5)) for a
    pixel-pair tile (B1, B2, H, W, H, W) — both pixels of the pair move by the same offset — or ((1,), (2,))
    for per-pixel maps (…, H, W). The 2-D sum is separable into one 1-D sum per direction.
    """
    r = filter_size // 2
    for axes in axis_groups:
        size = a.shape[axes[0]]
        out = a + 0.0
        for d in range(1, r + 1):
            if d >= size:
                break
            for shift in (d, -d):
                dst, src = [slice(None)] * a.ndim, [slice(None)] * a.ndim
                for ax in axes:
                    dst[ax] = slice(max(0, -shift), size - max(0, shift))
                    src[ax] = slice(max(0, shift), size - max(0, -shift))
                out[tuple(dst)] += a[tuple(src)]
        a = out
    return a / float(filter_size * filter_size)


def conv_rule(state, w_std: float, b_std, parameterization: str, fan_in: int, filter_size: int,
              full_spatial: bool):
    """Convolution: patch-sum every term (pixel pairs, per-pixel variances), then the affine rule."""
    k12, k11, k22, ntk = state
    pairs = ((2, 4), (3, 5)) if full_spatial else ((2,), (3,))
    k12 = patch_sum(k12, pairs, filter_size)
    if ntk is not None:
        ntk = patch_sum(ntk, pairs, filter_size)
    # variances broadcast as (B1, 1, H, W, 1, 1) and (1, B2, 1, 1, H, W), or (B1, 1, H, W) and (1, B2, H, W)
    k11 = patch_sum(k11, ((2,), (3,)), filter_size)
    k22 = patch_sum(k22, ((4,), (5,)) if full_spatial else ((2,), (3,)), filter_size)
    return dense_rule((k12, k11, k22, ntk), w_std, b_std, parameterization, fan_in)


def _variance_chain(kernel, var, spread):
    """K_ii ← w²·spread(K_ii) + b² before each hidden activation, K_ii ← E[φ(u)²] after it."""
    w2, b2 = kernel.w_std ** 2, 0.0 if kernel.b_std is None else kernel.b_std ** 2
    out, v = [], var
    for _ in range(kernel.depth):
        v = w2 * spread(v) + b2
        out.append(v)
        v = kernel._dual.nngp(v, v, v)
    return out


def variance_chain(kernel, var):
    """FC: the pre-activation variance K(x, x) before each hidden activation (a list of ``depth`` vectors)."""
    return _variance_chain(kernel, var, lambda v: v)


def conv_variance_chain(kernel, var):
    """Conv: the per-pixel pre-activation variances (B, H, W) before each hidden activation."""
    return _variance_chain(kernel, var, lambda v: patch_sum(v, ((1,), (2,)), kernel.filter_size))


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
        if n_jobs > 1 and len(tiles) > 1:
            with concurrent.futures.ThreadPoolExecutor(n_jobs) as pool:
                for _ in pool.map(work, tiles):
                    pass
        else:
            for t in tiles:
                work(t)
    return [o for o in outs if o is not None]


def _is_numpy_or_cupy(xp) -> bool:
    return xp.__name__.endswith(("numpy", "cupy"))


def _pin_diagonal(xp, k12, k11):
    """Set K(x_i, x_i) to the variance of x_i on a same-input tile (so θ = 0 exactly there)."""
    n = k12.shape[0]
    if _is_numpy_or_cupy(xp) and k12.flags.c_contiguous:
        k12.reshape(-1)[::n + 1] = k11   # a strided view of the diagonal: no mask pass
        return k12
    eye = xp.reshape(xp.arange(n), (n, 1)) == xp.reshape(xp.arange(n), (1, n))
    return xp.where(eye, xp.reshape(k11, (n, 1)) + xp.zeros_like(k12), k12)


# ----------------------------------------------------------------------------------------------- base class
def _mean_square(xp, x) -> float:
    """max over samples of ‖x‖²/d (0 for None); +inf when the squares overflow."""
    if x is None:
        return 0.0
    with np.errstate(over="ignore"):
        return float(xp.max(xp.sum(x * x, axis=tuple(range(1, x.ndim))))) / math.prod(x.shape[1:])


def _check_std(value, name: str, positive: bool):
    """w_std / b_std: a real number (not a bool), finite with a finite square (|value| < 1e150), > 0 or >= 0."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0) and abs(value) < 1e150
    if not ok:
        bound = "> 0" if positive else ">= 0"
        extra = "" if positive else " or None (no bias)"
        raise ValueError(f"{name} must be a finite number {bound} and below 1e150 (its square must be finite)"
                         f"{extra}, got {value!r}")

class _AnalyticKernel(ParameterHolder):
    """Shared parameter handling, validation and the public nngp / ntk / kernels methods."""

    _param_names = ("depth", "activation", "w_std", "b_std", "parameterization", "width",
                    "negative_slope", "device", "dtype", "block_size", "n_jobs")

    def _check_params(self):
        if isinstance(self.depth, bool) or not isinstance(self.depth, numbers.Integral) or self.depth < 0:
            raise ValueError(f"depth must be an integer >= 0, got {self.depth!r}")
        _check_std(self.w_std, "w_std", positive=True)
        if self.b_std is not None:
            _check_std(self.b_std, "b_std", positive=False)
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}")
        if self.parameterization == "standard":
            if (isinstance(self.width, bool) or not isinstance(self.width, numbers.Integral)
                    or self.width < 1):
                raise ValueError("parameterization='standard' needs width= (the hidden width, a positive "
                                 f"integer), because its NTK depends on it; got width={self.width!r}")
        if self.block_size is not None and (isinstance(self.block_size, bool)
                                            or not isinstance(self.block_size, numbers.Integral)
                                            or self.block_size < 1):
            raise ValueError(f"block_size must be None or a positive integer, got {self.block_size!r}")
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, numbers.Integral)
                                        or self.n_jobs < 1):
            raise ValueError(f"n_jobs must be None or a positive integer, got {self.n_jobs!r}")
        if self.device is not None:
            backend.resolve_device(self.device)
        if self.dtype is not None:
            backend.resolve_dtype(self.dtype, "cpu")
        self._dual = get_dual(self.activation, self.negative_slope)   # validates activation, negative_slope

    def set_params(self, **params):
        """Change constructor arguments (validated as in ``__init__``); returns self."""
        unknown = set(params) - set(self._param_names)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; valid: {', '.join(self._param_names)}")
        self.__init__(**{**self.get_params(), **params})
        return self

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
        x1 = backend.check_array(x1, "x1", ndim=self._ndim, device=self.device, dtype=self.dtype)
        if x2 is not None:
            x2 = backend.check_array(x2, "x2", ndim=self._ndim, device=backend.device_of(x1))
            if x2.dtype != x1.dtype:
                x2 = backend.get_namespace(x2).astype(x2, x1.dtype)
            if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
                raise ValueError(f"x2 must have the same feature shape as x1: x1 has {tuple(x1.shape[1:])}, "
                                 f"x2 has {tuple(x2.shape[1:])}")
        return x1, x2, was_torch

    def _compute(self, x1, x2, want):
        x1, x2, was_torch = self._inputs(x1, x2)
        xp = backend.get_namespace(x1)
        size = max(_mean_square(xp, x1), _mean_square(xp, x2))
        x1, x2, rescale = self._rescaled(xp, x1, x2)
        self._check_input_range(xp, x1, x2)
        symmetric = x2 is None
        xb = x1 if symmetric else x2
        n_jobs = self.n_jobs or (os.cpu_count() or 1)
        if not xp.__name__.endswith("numpy"):
            n_jobs = 1   # CuPy queues on one stream; other namespaces are reference paths
        tile_fn = self._tile_function(xp, x1, xb, symmetric, want[1])
        outs = _run_tiles(xp, tile_fn, x1.shape[0], xb.shape[0], self._block(x1), symmetric, want,
                          x1.dtype, x1.device, n_jobs)
        if rescale:
            with np.errstate(over="ignore"):   # an overflow here is reported by _check_overflow
                outs = [backend.times_power_of_two(o, rescale) for o in outs]
        for out, name in zip(outs, [n for n, w in zip(("NNGP", "NTK"), want) if w]):
            self._check_overflow(xp, out, name, size)
        if was_torch:
            outs = [backend.to_torch(o) for o in outs]
        return outs

    def _homogeneous(self) -> bool:
        """True when K(c·x, c·x') = c²·K(x, x') for c > 0: a piecewise-linear activation (ReLU, leaky ReLU,
        abs, identity) and no bias term (b_std None, or 0 with the 'ntk' parameterization)."""
        no_bias = self.b_std is None or (self.b_std == 0 and self.parameterization == "ntk")
        return no_bias and self._dual.name in ("relu", "leaky_relu", "abs", "identity")

    def _rescaled(self, xp, x1, x2):
        """Inputs divided by a power of two 2^e near their largest |value| when that lies outside
        [2^-16, 2^16] and the kernel is positively homogeneous, with the exponent 2e of the factor 4^e that
        restores the kernel (0: nothing rescaled).

        Dividing by a power of two is exact, so the result equals the unscaled computation wherever that
        does not overflow or underflow (|x| ≈ 2e77 in float64 or 2e10 in float32 used to give NaN).
        """
        if not self._homogeneous():
            return x1, x2, 0
        e = backend.power_of_two_exponent(*((x1,) if x2 is None else (x1, x2)))
        if abs(e) <= 16:
            return x1, x2, 0
        return (backend.times_power_of_two(x1, -e), None if x2 is None else backend.times_power_of_two(x2, -e), 2 * e)

    def _check_input_range(self, xp, x1, x2):
        """ValueError naming x1/x2 when (‖x‖²/d)² would overflow (the first layer multiplies two variances)."""
        dtype = str(x1.dtype).split(".")[-1]
        limit = math.sqrt(float(np.finfo(dtype).max))
        for x, name in ((x1, "x1"), (x2, "x2")):
            size = _mean_square(xp, x)
            if not size < limit:
                raise backend.KernelOverflowError(
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
        raise backend.KernelOverflowError(
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
    and on ``width``. ``b_std=None`` means no bias. Inputs are (n, d) arrays (NumPy, CuPy or torch).
    ``block_size`` rows × columns per tile bounds memory (None: 256 on the CPU, 4096 on the GPU);
    ``n_jobs`` threads share the tiles (NumPy; None = all cores).
    """
    _ndim = 2

    def __init__(self, depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.0, parameterization="ntk",
                 width=None, *, negative_slope=0.01, device=None, dtype=None, block_size=None, n_jobs=None):
        self.depth, self.activation, self.w_std, self.b_std = depth, activation, w_std, b_std
        self.parameterization, self.width, self.negative_slope = parameterization, width, negative_slope
        self.device, self.dtype, self.block_size, self.n_jobs = device, dtype, block_size, n_jobs
        self._check_params()

    def layer_rules(self, input_dim: int):
        """The network as a list of functions state -> state (hidden blocks, then the readout)."""
        rules, fan_in = [], input_dim
        for _ in range(self.depth):
            rules.append(lambda s, f=fan_in: dense_rule(s, self.w_std, self.b_std, self.parameterization, f))
            rules.append(lambda s: activation_rule(s, self._dual))
            fan_in = self.width
        rules.append(lambda s, f=fan_in: dense_rule(s, self.w_std, self.b_std, self.parameterization, f))
        return rules

    def _tile_function(self, xp, x1, x2, symmetric, want_ntk):
        d = x1.shape[1]
        sq1 = xp.sum(x1 * x1, axis=1) / d
        sq2 = sq1 if symmetric else xp.sum(x2 * x2, axis=1) / d
        fused = _fused_fc(xp, self, want_ntk)
        rules = self.layer_rules(d)

        def tile(i0, i1, j0, j1):
            k12 = (x1[i0:i1, :] @ x2[j0:j1, :].T) / d
            k11, k22 = xp.reshape(sq1[i0:i1], (-1, 1)), xp.reshape(sq2[j0:j1], (1, -1))
            pin = symmetric and i0 == j0
            if pin:
                k12 = _pin_diagonal(xp, k12, sq1[i0:i1])
            state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
            if fused is not None:
                return fused(state, pin, d)
            for rule in rules:
                state = rule(state)
                if pin:
                    state = (_pin_diagonal(xp, state[0], xp.reshape(state[1], (-1,))),) + state[1:]
            return state[0], state[3]

        return tile


def _fused_fc(xp, kernel, want_ntk):
    """The CuPy fused per-layer chain for closed-form activations on a CUDA array, else None."""
    if not xp.__name__.endswith("cupy") or not kernel._dual.closed:
        return None
    from kernels import _analytic_cuda
    return _analytic_cuda.fc_chain(kernel, want_ntk)


# ----------------------------------------------------------------------------------------------- Conv
class Convolutional(_AnalyticKernel):
    """NNGP/NTK of ``depth`` × [Conv(f×f, 'SAME'), activation], readout 'gap' or 'flatten', then Dense(1).

    Images are (N, C, H, W) as in PyTorch. 'gap' needs every pixel pair, (H·W)² numbers per image pair;
    'flatten' only matching pixels, H·W per pair. ``block_size`` is the number of images per tile side
    (None: chosen so a tile's state stays under ``memory_budget`` bytes).
    """
    _ndim = 4
    _param_names = _AnalyticKernel._param_names + ("filter_size", "readout", "memory_budget")

    def __init__(self, depth=2, activation="relu", w_std=2 ** 0.5, b_std=0.0, filter_size=3, readout="gap",
                 parameterization="ntk", width=None, *, negative_slope=0.01, device=None, dtype=None,
                 block_size=None, n_jobs=None, memory_budget=2 ** 28):
        self.depth, self.activation, self.w_std, self.b_std = depth, activation, w_std, b_std
        self.filter_size, self.readout = filter_size, readout
        self.parameterization, self.width, self.negative_slope = parameterization, width, negative_slope
        self.device, self.dtype, self.block_size, self.n_jobs = device, dtype, block_size, n_jobs
        self.memory_budget = memory_budget
        if (isinstance(filter_size, bool) or not isinstance(filter_size, numbers.Integral)
                or filter_size < 1 or filter_size % 2 == 0):
            raise ValueError(f"filter_size must be a positive odd integer ('SAME' padding), got {filter_size!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, numbers.Integral) or memory_budget < 1:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
        self._check_params()

    def _block(self, x1):
        if self.block_size is not None:
            return self.block_size
        h, w = x1.shape[2], x1.shape[3]
        per_pair = (h * w) ** (2 if self.readout == "gap" else 1) * x1.dtype.itemsize * 8
        return max(1, int(math.sqrt(self.memory_budget / per_pair)))

    def layer_rules(self, channels: int, height: int, width: int):
        """The network as a list of functions state -> state (conv blocks, readout, Dense(1))."""
        full = self.readout == "gap"
        area = self.filter_size ** 2
        rules, fan_in = [], channels * area
        for _ in range(self.depth):
            rules.append(lambda s, f=fan_in: conv_rule(s, self.w_std, self.b_std, self.parameterization, f,
                                                       self.filter_size, full))
            rules.append(lambda s: activation_rule(s, self._dual))
            fan_in = (self.width or 0) * area
        n_chan = channels if self.depth == 0 else self.width
        readout_fan_in = (n_chan or 0) * (1 if full else height * width)
        rules.append(lambda s: _readout_rule(s, full))
        rules.append(lambda s: dense_rule(s, self.w_std, self.b_std, self.parameterization, readout_fan_in))
        return rules

    def _tile_function(self, xp, x1, x2, symmetric, want_ntk):
        n_chan, h, w = x1.shape[1], x1.shape[2], x1.shape[3]
        full = self.readout == "gap"
        var1 = xp.sum(x1 * x1, axis=1) / n_chan                          # (N, H, W)
        var2 = var1 if symmetric else xp.sum(x2 * x2, axis=1) / n_chan
        rules = self.layer_rules(n_chan, h, w)
        fused = _fused_conv(xp, self, want_ntk)

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
            pin = symmetric and i0 == j0
            state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
            if pin:
                state = _pin_conv(xp, state, full)
            if fused is not None:
                return fused(state, pin, var1[i0:i1, ...], var2[j0:j1, ...], n_chan, h, w)
            for rule in rules:
                state = rule(state)
                if pin and state[0].ndim > 2:
                    state = _pin_conv(xp, state, full)
            return state[0], state[3]

        return tile


def _pin_conv(xp, state, full: bool):
    """Same-image pairs (i, i) of a diagonal tile: set K(p, p) to the pixel variance (θ = 0 exactly)."""
    k12, k11, k22, ntk = state
    b, h, w = k12.shape[0], k12.shape[2], k12.shape[3]
    if _is_numpy_or_cupy(xp) and full:   # fancy-index the (i, i, p, p) entries: no mask pass
        img, pix = xp.arange(b)[:, None], xp.arange(h * w)[None, :]
        if not k12.flags.c_contiguous:
            k12 = k12.copy()
        k12.reshape(b, b, h * w, h * w)[img, img, pix, pix] = k11.reshape(b, h * w)
        return k12, k11, k22, ntk
    same = xp.reshape(xp.arange(b), (b, 1)) == xp.reshape(xp.arange(b), (1, b))
    if full:
        pix = xp.reshape(xp.arange(h * w), (h * w, 1)) == xp.reshape(xp.arange(h * w), (1, h * w))
        mask = xp.reshape(same, (b, b, 1, 1, 1, 1)) & xp.reshape(pix, (1, 1, h, w, h, w))
        var = k11 + xp.zeros((1, 1, 1, 1, h, w), dtype=k11.dtype, device=k11.device)
    else:
        mask = xp.reshape(same, (b, b, 1, 1))
        var = k11
    return xp.where(mask, var + xp.zeros_like(k12), k12), k11, k22, ntk


def _readout_rule(state, full: bool):
    """'gap': mean over all pixel pairs; 'flatten': mean over matching pixels; the tile becomes (B1, B2).

    The diagonals are not carried on: only the Dense readout follows, and it needs none.
    """
    k12, _, _, ntk = state
    xp = backend.get_namespace(k12)
    axes = (2, 3, 4, 5) if full else (2, 3)
    return xp.mean(k12, axis=axes), None, None, None if ntk is None else xp.mean(ntk, axis=axes)


def _fused_conv(xp, kernel, want_ntk):
    """The CuPy raw-kernel conv chain ('gap', closed-form activations) on a CUDA array, else None."""
    if not xp.__name__.endswith("cupy") or not kernel._dual.closed or kernel.readout != "gap":
        return None
    from kernels import _analytic_cuda
    return _analytic_cuda.conv_chain(kernel, want_ntk)
