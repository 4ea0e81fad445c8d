"""What every analytic kernel shares: parameters and their checks, the public ``nngp`` / ``ntk`` / ``kernels``
methods, and the choice of engine.

A kernel describes its network once, as a layer table (``network(*feature_shape)``, a
``kernels.analytic.rules.Network``), and every engine reads that table:

* the fused numba loops (``kernels.analytic._cpu``, driven by ``_cpu_drivers``) on NumPy arrays, when every
  activation has a closed form and the network has a shape the loops cover (``cpu_impl='auto'``);
* the reference rule chain (``rules.run`` on each tile's state, written against the array API) otherwise:
  quadrature activations, array-API namespaces other than NumPy (array-api-strict) and ``cpu_impl='reference'``;
  ``cpu_impl='fused'`` insists on the loops and raises where they cannot run;
* on CuPy arrays the rule chain with pairs of rules replaced by fused CUDA kernels (``kernels.analytic._cuda``)
  wherever their activation has a closed form.

Kernels are computed in tiles (bounding peak memory to the output plus a few tiles); when ``x2`` is None only
tiles on or above the diagonal are computed and mirrored, and the diagonal of a same-input tile is pinned to
the variances, so θ = 0 exactly there.
"""
from __future__ import annotations

import os

from kernels import backend
from kernels.analytic import _numerics, rules
from kernels.analytic._tiles import run_tiles
from kernels.analytic.duals import get_dual
from kernels.parameters import ParameterHolder
from kernels.validation import check_array, check_choice, check_scalar

PARAMETERIZATIONS = ("ntk", "standard")
CPU_IMPLS = ("auto", "fused", "reference")


def check_trained_layers(trained_layers, depth: int) -> frozenset:
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


def cuda_replacements(xp, network: rules.Network):
    """The fused CuPy replacements for rule pairs when the tile is a CUDA array, else None."""
    if not _numerics.uses_cuda_kernels(xp):
        return None
    # imported here, not at the top: the module imports CuPy, an optional dependency
    from kernels.analytic import _cuda
    return _cuda.replacements(network)


class AnalyticKernel(ParameterHolder):
    """Shared parameter handling, validation, the public nngp / ntk / kernels methods and the engine choice.

    Subclasses define ``network(*feature_shape)``, ``_reference_tiles(xp, network, x1, x2, symmetric,
    want_ntk)`` (the rule chain's tile function), ``_block(x1)`` and ``_ndim`` (2: vectors, 4: images, None: the
    network says, as ``kernels.stax.StaxKernel``).
    """

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
        self._trained = check_trained_layers(self.trained_layers, self.depth)

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

    # engine choice
    def _fused_unavailable(self, xp, network, image: bool):
        """Why the fused CPU loops cannot compute this kernel on vectors or on images (None when they can)."""
        if self.cpu_impl == "reference":
            return "cpu_impl='reference'"
        if not xp.__name__.endswith("numpy"):
            return f"the inputs are {xp.__name__} arrays, not NumPy"
        try:
            import numba  # noqa: F401
        except ImportError:
            return "numba is not installed"
        from kernels.analytic import _cpu_drivers   # compiles (once, then cached) on first use
        return _cpu_drivers.unsupported(network, image)

    def _use_fused(self, xp, network, image: bool) -> bool:
        reason = self._fused_unavailable(xp, network, image)
        if reason is not None and self.cpu_impl == "fused":
            raise ValueError(f"cpu_impl='fused' cannot run: {reason}; use cpu_impl='auto' or 'reference'")
        return reason is None

    # internals
    def _inputs(self, x1, x2):
        was_torch = backend.is_torch(x1)
        x1 = check_array(x1, "x1", ndim=self._ndim, device=self.device, dtype=self.dtype)
        if x2 is not None:
            x2 = check_array(x2, "x2", ndim=x1.ndim, device=backend.device_of(x1))
            if x2.dtype != x1.dtype:
                x2 = backend.get_namespace(x2).astype(x2, x1.dtype)
            if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
                raise ValueError(f"x2 must have the same feature shape as x1: x1 has {tuple(x1.shape[1:])}, "
                                 f"x2 has {tuple(x2.shape[1:])}")
        return x1, x2, was_torch

    def _compute(self, x1, x2, want):
        """The wanted outputs (NNGP, NTK): inputs checked and rescaled, the engine run, the scale restored."""
        x1, x2, was_torch = self._inputs(x1, x2)
        xp = backend.get_namespace(x1)
        network = self.network(*x1.shape[1:])
        size = max(_numerics.mean_square(xp, x1), _numerics.mean_square(xp, x2))
        out_dtype = x1.dtype
        x1, x2, exponent = _numerics.rescaled(network.homogeneous, x1, x2)
        x1, x2 = _numerics.working_inputs(xp, x1, x2)
        _numerics.check_input_range(xp, x1, x2, self._owner())
        outs = _numerics.restored(self._engine(xp, network, x1, x2, want, out_dtype), exponent)
        depth, w_std = self._depth_and_scale(network)
        for out, name in zip(outs, [n for n, w in zip(("NNGP", "NTK"), want) if w]):
            _numerics.check_overflow(xp, out, name, size, repr(self), depth, w_std)
        if was_torch:
            outs = [backend.to_torch(o) for o in outs]
        return outs

    def _owner(self) -> str:
        """The kernel as input-range errors name it."""
        return f"{type(self).__name__}(activation={self.activation!r})"

    def _depth_and_scale(self, network) -> tuple:
        """(layers, weight scale) as overflow errors report them."""
        return self.depth, float(self.w_std)

    def _engine(self, xp, network, x1, x2, want, out_dtype):
        """The outputs in ``out_dtype`` from the fused CPU loops or the reference tiles (CUDA kernels on CuPy)."""
        symmetric = x2 is None
        xb = x1 if symmetric else x2
        # CuPy queues on one stream and other namespaces are reference paths: threads only for NumPy
        n_jobs = (self.n_jobs or (os.cpu_count() or 1)) if xp.__name__.endswith("numpy") else 1
        if self._use_fused(xp, network, x1.ndim == 4):
            from kernels.analytic import _cpu_drivers
            if x1.ndim == 4:
                return [o.astype(out_dtype, copy=False) for o in
                        _cpu_drivers.image_kernels(network, x1, x2, want, n_jobs, self.block_size)]
            tile_fn = _cpu_drivers.fc_tile_function(network, x1, xb, symmetric, want[1])
        else:
            tile_fn = self._reference_tiles(xp, network, x1, xb, symmetric, want[1])
        return run_tiles(xp, tile_fn, x1.shape[0], xb.shape[0], self._block(x1), symmetric, want, out_dtype,
                         x1.device, n_jobs)
