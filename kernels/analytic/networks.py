"""Analytic NNGP and NTK of infinitely wide fully connected and convolutional networks of one fixed shape.

``FullyConnected``: ``depth`` × [Dense, activation], then a Dense readout; ``Convolutional``: ``depth`` ×
[Conv(f×f, 'SAME'), activation], the readout ('gap' or 'flatten'), then Dense. Each builds its layer table
(``network``) and the reference tile state; ``kernels.analytic.base`` runs the engines on it. Conventions follow
neural-tangents' ``stax`` (Novak et al. 2020; docs/conventions.md):

* input:  K⁰(x, x') = x·x'/d (per pixel pair and averaged over channels for images), Θ⁰ = 0;
* Dense/Conv, 'ntk':      K ← w²·K + b²,  Θ ← K_new + w²·Θ;
* Dense/Conv, 'standard': Θ ← n_in·K_old + w²·Θ + [bias],  K ← w²·K + b², where n_in is the fan-in
  (input width, or channels × filter area for a convolution); ``b_std=None`` drops the bias entirely;
* activation: K ← E[φ(u)φ(v)], Θ ← Θ·E[φ'(u)φ'(v)] (``kernels.analytic.duals``), diagonals K_ii ← E[φ(u)²];
* convolution ('SAME' zero padding, f×f filter): the pixel-pair covariance is summed over the aligned
  patch, K(p, q) ← Σ_o K(p+o, q+o) / f² (Arora et al. 2019, CNTK), and so are the per-pixel variances;
* readout: 'gap' averages over all pixel pairs, 'flatten' over matching pixels, then a Dense layer with
  one output. ``depth`` counts the hidden [Dense/Conv, activation] blocks before it.

``trained_layers`` (None: all) names the layers whose weights and biases are trained, 1 … depth for the
hidden Dense/Conv layers and depth + 1 for the readout: a frozen layer keeps its own term out of Θ (its
rule does Θ ← w²·Θ only), while the NNGP is unchanged. ``cpu_impl``: which engine runs
(``kernels.analytic.base``).
"""
from __future__ import annotations

import math

from kernels import backend
from kernels.analytic import rules
from kernels.analytic.base import AnalyticKernel, cuda_replacements
from kernels.validation import check_choice, check_scalar

READOUTS = ("gap", "flatten")


# ----------------------------------------------------------------------------------------------- FC
class FullyConnected(AnalyticKernel):
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
    _param_names = AnalyticKernel._param_names + ("readout_w_std", "readout_b_std")

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
        """The layer table: ``depth`` × [Dense, activation], then the Dense readout (its own scales if given)."""
        layers, fan_in = [], input_dim
        for layer in range(1, self.depth + 1):
            layers += [rules.dense(fan_in, self.w_std, self.b_std, self.parameterization, layer in self._trained),
                       rules.activation(self._dual)]
            fan_in = self.width or 0
        w_read, b_read = self._readout
        layers.append(rules.dense(fan_in, w_read, b_read, self.parameterization, self.depth + 1 in self._trained))
        return rules.Network(tuple(layers))

    def _block(self, x1):
        if self.block_size is not None:
            return self.block_size
        # CPU: 256² tiles keep a layer's temporaries in cache; GPU: large tiles amortise kernel launches
        return 4096 if backend.device_of(x1) == "cuda" else 256

    def _reference_tiles(self, xp, network, x1, x2, symmetric, want_ntk):
        d = x1.shape[1]
        sq1 = xp.sum(x1 * x1, axis=1) / d
        sq2 = sq1 if symmetric else xp.sum(x2 * x2, axis=1) / d
        fused = cuda_replacements(xp, network)

        def tile(i0, i1, j0, j1):
            k12 = (x1[i0:i1, :] @ x2[j0:j1, :].T) / d
            k11, k22 = xp.reshape(sq1[i0:i1], (-1, 1)), xp.reshape(sq2[j0:j1], (1, -1))
            state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
            state = rules.run(network, state, xp, symmetric and i0 == j0, fused)
            return state[0], state[3]

        return tile


# ----------------------------------------------------------------------------------------------- Conv
class Convolutional(AnalyticKernel):
    """NNGP/NTK of ``depth`` × [Conv(f×f, 'SAME'), activation], readout 'gap' or 'flatten', then Dense(1).

    Images are (N, C, H, W) as in PyTorch. 'gap' needs every pixel pair, (H·W)² numbers per image pair;
    'flatten' only matching pixels, H·W per pair. Rule chain: ``block_size`` is the number of images per
    tile side (None: chosen so a tile's state stays under ``memory_budget`` bytes). Fused CPU loop: it keeps
    no pixel-pair tile at all (a few hundred kB per thread), and ``block_size``² is its image pairs per work
    chunk (None: a few chunks per thread, at most 4096 pairs). ``trained_layers`` and ``cpu_impl``: see the
    module docstring.
    """
    _ndim = 4
    _param_names = AnalyticKernel._param_names + ("filter_size", "readout", "memory_budget")

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
        """The layer table: ``depth`` × [Conv, activation], the readout, then the Dense readout."""
        full = self.readout == "gap"
        area = self.filter_size ** 2
        layers, fan_in = [], channels * area
        for layer in range(1, self.depth + 1):
            layers += [rules.conv(fan_in, self.w_std, self.b_std, self.parameterization, self.filter_size,
                                  layer in self._trained), rules.activation(self._dual)]
            fan_in = (self.width or 0) * area
        n_chan = channels if self.depth == 0 else (self.width or 0)
        layers += [rules.readout("gap" if full else "flatten"), rules.dense(n_chan * (1 if full else height * width), self.w_std, self.b_std,
                                                self.parameterization, self.depth + 1 in self._trained)]
        return rules.Network(tuple(layers), full)

    def _reference_tiles(self, xp, network, x1, x2, symmetric, want_ntk):
        n_chan, h, w = x1.shape[1], x1.shape[2], x1.shape[3]
        full = network.full_spatial
        var1 = xp.sum(x1 * x1, axis=1) / n_chan                          # (N, H, W)
        var2 = var1 if symmetric else xp.sum(x2 * x2, axis=1) / n_chan
        fused = cuda_replacements(xp, network)

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
