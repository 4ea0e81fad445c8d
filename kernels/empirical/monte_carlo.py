"""``monte_carlo_kernel(module_fn, n_samples)``: the NNGP and NTK of a network estimated over random inits
(neural-tangents' ``monte_carlo_kernel_fn``), for any torch module, with the standard errors of the estimates.

For each of ``n_samples`` fresh modules (``module_fn()`` called under its own seed):

    NTK:   Θ̂_s(x, x') = kernels.empirical_ntk(module_s, x, x', output="mean")     (the trace over outputs / O)
    NNGP:  K̂_s(x, x') = (1/O) Σ_o f_o(x) f_o(x')                                   (the output covariance)

and the estimates are their means over s, with standard errors std_s / √n_samples (the sample standard
deviation, ddof = 1, accumulated by Welford's update, so no sample is held). As the widths grow both converge
to the infinite-width kernels (``kernels.infinite_width``): the mean of a finite net differs from them by
O(1/width) (the NNGP of a one-hidden-layer net not at all: its hidden pre-activations are exactly Gaussian),
and the standard error falls as 1/√(width · n_samples).

Seeds: sample s draws its module under ``torch.manual_seed`` of ``numpy.random.SeedSequence([seed, s])``
(torch's global generator is saved and restored around it), so an estimate is reproducible and a larger
``n_samples`` extends a smaller one. Modules run in eval mode (``kernels.empirical_ntk``'s convention), in their
own dtype (float64 recommended: build it with ``.double()`` in ``module_fn``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from kernels import backend
from kernels.empirical import METHODS, _as_input, _model_device_dtype, empirical_ntk
from kernels.validation import check_choice, check_scalar

GETS = ("nngp", "ntk")


@dataclasses.dataclass(frozen=True)
class MonteCarloEstimate:
    """Means over ``n_samples`` inits and their standard errors (each (n1, n2) NumPy arrays; None for one that
    was not asked for)."""

    nngp: np.ndarray
    ntk: np.ndarray
    nngp_stderr: np.ndarray
    ntk_stderr: np.ndarray
    n_samples: int


class MonteCarloKernel:
    """The Monte Carlo NNGP/NTK of ``module_fn()`` as a kernel object (``.nngp``, ``.ntk``, ``.kernels``,
    ``.estimate``), for ``kernels.gram`` and the estimators. Not thread-safe (modules are traced while
    computing)."""

    thread_safe = False

    def __init__(self, module_fn, n_samples, *, seed=0, method="auto", block_size=None):
        if not callable(module_fn) or _is_module(module_fn):
            raise TypeError(f"module_fn must be a function returning a fresh torch.nn.Module (e.g. lambda: MyNet()), "
                            f"got {type(module_fn).__name__}: every sample needs its own init")
        self.module_fn = module_fn
        self.n_samples = check_scalar(n_samples, "n_samples", int, min_val=2)   # a standard error needs two
        self.seed = check_scalar(seed, "seed", int, min_val=0)
        self.method = check_choice(method, "method", METHODS)
        self.block_size = check_scalar(block_size, "block_size", int, min_val=1, allow_none="all inputs at once")

    def get_params(self, deep: bool = True) -> dict:
        return {"module_fn": self.module_fn, "n_samples": self.n_samples, "seed": self.seed,
                "method": self.method, "block_size": self.block_size}

    def __repr__(self):
        name = getattr(self.module_fn, "__qualname__", repr(self.module_fn))
        return f"monte_carlo_kernel({name}, n_samples={self.n_samples}, seed={self.seed})"

    def module(self, sample: int):
        """The module of sample ``sample`` (0 ≤ sample < n_samples), drawn under its own seed."""
        import torch
        seed = int(np.random.SeedSequence([self.seed, int(sample)]).generate_state(1, np.uint64)[0] % 2 ** 63)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.module_fn()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module_fn must return a torch.nn.Module, got {type(module).__name__}")
        return module

    def estimate(self, x1, x2=None, get=GETS) -> MonteCarloEstimate:
        """Means and standard errors of the NNGP and NTK estimates on (x1, x2) (x2=None: x2 = x1); ``get``
        names the ones to compute ("nngp" alone needs forward passes only), the others are None."""
        wanted = (get,) if isinstance(get, str) else tuple(get)
        if not wanted:
            raise ValueError("get must name at least one of 'nngp', 'ntk'")
        for name in wanted:
            check_choice(name, "get", GETS)
        sums = {name: None for name in GETS}
        for s in range(self.n_samples):
            module = self.module(s)
            values = {}
            if "nngp" in wanted:
                values["nngp"] = _output_covariance(module, x1, x2)
            if "ntk" in wanted:
                values["ntk"] = backend.to_numpy(empirical_ntk(module, x1, x2, method=self.method,
                                                               block_size=self.block_size)).astype(np.float64)
            for name, value in values.items():   # Welford: mean and sum of squared deviations
                if sums[name] is None:
                    sums[name] = [value.copy(), np.zeros_like(value)]
                    continue
                mean, m2 = sums[name]
                delta = value - mean
                mean += delta / (s + 1)
                m2 += delta * (value - mean)
        n = self.n_samples
        mean = {name: None if sums[name] is None else sums[name][0] for name in GETS}
        se = {name: None if sums[name] is None else np.sqrt(sums[name][1] / (n - 1) / n) for name in GETS}
        return MonteCarloEstimate(mean["nngp"], mean["ntk"], se["nngp"], se["ntk"], n)

    def kernels(self, x1, x2=None):
        """(NNGP, NTK) estimates (the means)."""
        e = self.estimate(x1, x2)
        return e.nngp, e.ntk

    def nngp(self, x1, x2=None):
        return self.estimate(x1, x2, get="nngp").nngp

    def ntk(self, x1, x2=None):
        return self.estimate(x1, x2, get="ntk").ntk

    def __call__(self, x1, x2=None, get="ntk"):
        """neural-tangents' ``kernel_fn(x1, x2, get)`` of ``monte_carlo_kernel_fn``: "nngp", "ntk" or a tuple."""
        names = (get,) if isinstance(get, str) else tuple(get)
        for name in names:
            check_choice(name, "get", GETS)
        e = self.estimate(x1, x2, get=names)
        outs = tuple(getattr(e, name) for name in names)
        return outs[0] if isinstance(get, str) else outs


def _is_module(value) -> bool:
    import torch
    return isinstance(value, torch.nn.Module)


def _output_covariance(module, x1, x2):
    """(1/O) Σ_o f_o(x1) f_o(x2) of the module in eval mode, as float64 NumPy."""
    import torch
    device, dtype = _model_device_dtype(module)
    a = _as_input(x1, "x1", device, dtype)
    b = None if x2 is None else _as_input(x2, "x2", device, dtype)
    training = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            fa = module(a)
            fb = fa if b is None else module(b)
    finally:
        for m, flag in training.items():
            m.training = flag
    for f, x, name in ((fa, a, "x1"), (fb, a if b is None else b, "x2")):
        if f.ndim not in (1, 2) or f.shape[0] != x.shape[0]:
            raise ValueError(f"the module must map {name} of shape (n, ...) to outputs (n, O) or (n,), got outputs "
                             f"of shape {tuple(f.shape)} for {name} of shape {tuple(x.shape)}")
    fa = fa.reshape(fa.shape[0], -1).double()
    fb = fb.reshape(fb.shape[0], -1).double()
    return backend.to_numpy((fa @ fb.T / fa.shape[1]).cpu())


def monte_carlo_kernel(module_fn, n_samples, *, seed=0, method="auto", block_size=None) -> MonteCarloKernel:
    """The Monte Carlo NNGP and NTK of the network ``module_fn()`` over ``n_samples`` seeded inits (the module
    docstring): ``.estimate(x1, x2)`` gives the means and their standard errors, ``.kernels(x1, x2)`` the
    means. ``method``/``block_size``: those of ``kernels.empirical_ntk``. neural-tangents'
    ``monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples)`` counterpart, for a torch module."""
    return MonteCarloKernel(module_fn, n_samples, seed=seed, method=method, block_size=block_size)
