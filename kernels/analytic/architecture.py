"""A network written in neural-tangents' stax language, as the layer table every engine reads.

``compile_network(spec, feature_shape)`` walks a spec (the nodes that ``kernels.stax`` builds: ``(name, kwargs,
children)`` with every argument bound) from the input's feature shape, (d,) or (C, H, W), and returns the
``kernels.analytic.rules.Network``: one row per layer that changes the kernel (Identity, Dropout in 'test'
mode and FanOut disappear; FanOut → parallel → FanInSum becomes one ``branches`` row), the finite widths
that the 'standard' parameterization reads (neural-tangents' n_in: the input width, then each layer's
``out_dim·s[1]``; channels × filter area for a convolution; C·H·W after Flatten), and the tile layout:

* pixel pairs (``full_spatial``) when the network pools (AvgPool, SumPool, GlobalAvgPool, GlobalSumPool),
  matching pixels otherwise (pixelwise layers, convolutions and Flatten only need the pixel diagonal);
* pixel-pair variances (``pair_variances``) when an activation follows a pooling layer.

This is neural-tangents' own rule (``diagonal_spatial`` from the layers' requirements, see
``_src/utils/kernel.py`` and ``requirements.py``). It also enforces neural-tangents' checks: an activation
or a FanInSum of several branches needs a Gaussian input (the output of Dense, Conv or a pooling layer, not
of an activation, Flatten or Dropout), FanInSum needs branches of equal shapes, and the network must end in
vectors (after GlobalAvgPool or Flatten on images). Errors name the layer and its place in the spec.

``reference_tiles`` builds the tile function of the reference engine: the input state of each tile (NNGP
cross term x·x'/d, per pixel pair averaged over channels for images, Θ = 0) and ``rules.run``.
"""
from __future__ import annotations

import dataclasses

from kernels.analytic import rules

POOLS = ("AvgPool", "SumPool")
GLOBAL_POOLS = {"GlobalAvgPool": "gap", "GlobalSumPool": "gsp"}


class ArchitectureError(ValueError):
    """A spec that is not a valid network for its inputs: the message names the layer and where it sits."""


@dataclasses.dataclass
class _Shape:
    channels: float          # the finite width: features of a vector, channels of an image
    spatial: tuple           # () for vectors, (H, W) for images
    gaussian: bool           # the output of a Dense/Conv/pooling layer (an activation may follow)


@dataclasses.dataclass
class _Stream:
    layers: list
    shape: _Shape
    parent: "_Stream | None" = None
    touched: bool = False    # some layer was applied since the input


def _describe(shape: _Shape) -> str:
    if not shape.spatial:
        return f"vectors of width {shape.channels:g}"
    h, w = ("?" if n is None else n for n in shape.spatial)
    return f"images of {shape.channels:g} channels × {h} × {w} pixels"


def _label(stack) -> str:
    """The default name of the failing node (the last of ``stack``): name(kwargs)."""
    name, kwargs = stack[-1][0], stack[-1][1]
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


class _Compiler:
    def __init__(self, duals_of, describe):
        self.duals_of, self.describe = duals_of, describe or _label
        self.stack = []                       # the nodes from the root to the one being compiled
        self.pooled = False                   # a pooling layer came before (in the spec's order)
        self.activation_after_pool = False

    def fail(self, node, path: str, message: str):
        raise ArchitectureError(f"{self.describe(self.stack)} at {path or 'the top'}: {message}")

    def walk(self, node, streams: list, path: str) -> list:
        self.stack.append(node)
        try:
            return self._walk(node, streams, path)
        finally:
            self.stack.pop()

    def _walk(self, node, streams: list, path: str) -> list:
        name, kwargs, children = node[:3]
        if name == "serial":
            for i, child in enumerate(children):
                streams = self.walk(child, streams, f"{path}{'.' if path else ''}serial[{i}]")
            return streams
        if name == "parallel":
            if len(streams) != len(children):
                self.fail(node, path, f"parallel applies one layer per input but receives {len(streams)} "
                          f"input{'s' if len(streams) != 1 else ''} for {len(children)} layers; put "
                          f"FanOut({len(children)}) before it")
            out = []
            for i, (child, stream) in enumerate(zip(children, streams)):
                result = self.walk(child, [stream], f"{path}{'.' if path else ''}parallel[{i}]")
                if len(result) != 1:
                    self.fail(child, f"{path}.parallel[{i}]", f"a branch must end as one input, this one ends "
                              f"as {len(result)}: close its FanOut with FanInSum()")
                out += result
            return out
        if name == "FanOut":
            if len(streams) != 1:
                self.fail(node, path, f"FanOut takes one input, got {len(streams)} branches")
            (stream,) = streams
            return [_Stream([], dataclasses.replace(stream.shape), stream, True) for _ in range(kwargs["num"])]
        if name == "FanInSum":
            return [self.fan_in_sum(node, streams, path)]
        if len(streams) != 1:
            self.fail(node, path, f"this layer takes one input but receives {len(streams)} branches; apply it "
                      "per branch inside parallel(...) or merge the branches with FanInSum() first")
        (stream,) = streams
        self.layer(node, stream, path)
        stream.touched = True
        return streams

    def fan_in_sum(self, node, streams, path):
        parent = streams[0].parent
        if parent is None or any(s.parent is not parent for s in streams):
            self.fail(node, path, "FanInSum sums the branches of a FanOut, but there is no FanOut open here")
        first = streams[0].shape
        for i, s in enumerate(streams[1:], 1):
            if (s.shape.spatial, s.shape.channels) != (first.spatial, first.channels):
                self.fail(node, path, f"FanInSum needs branches of one shape: branch 0 gives {_describe(first)}, "
                          f"branch {i} gives {_describe(s.shape)}")
        if len(streams) > 1:
            for i, s in enumerate(streams):
                if not s.shape.gaussian:
                    self.fail(node, path, f"branch {i} is not Gaussian (it ends in an activation, Flatten or "
                              "Dropout, or is the raw input); neural-tangents sums only Gaussian branches (the "
                              "outputs of Dense, Conv or pooling layers), because the sum of a non-Gaussian input "
                              "has no closed-form kernel after it. Move the activation into the branches (a "
                              "pre-activation residual block) or use kernels.monte_carlo_kernel")
        parent.layers.append(rules.branches(*[s.layers for s in streams]))
        parent.shape = _Shape(first.channels, first.spatial, all(s.shape.gaussian for s in streams))
        parent.touched = True
        return parent

    def layer(self, node, stream: _Stream, path: str):
        name, kw = node[0], node[1]
        shape = stream.shape
        if name == "Identity":
            return
        if name == "Dense":
            s0, s1 = kw["s"]
            std = kw["parameterization"] == "standard"
            stream.layers.append(rules.dense(shape.channels / s0 if std else 0, kw["W_std"], kw["b_std"],
                                             kw["parameterization"]))
            stream.shape = _Shape(kw["out_dim"] * s1, shape.spatial, True)
            return
        if name in ("Conv",) + POOLS:
            if not shape.spatial:
                self.fail(node, path, f"{name} needs images (N, C, H, W), but its input is {_describe(shape)}")
            window = tuple(kw["filter_shape" if name == "Conv" else "window_shape"])
            strides = tuple(kw["strides"]) if kw["strides"] is not None else (1,) * len(window)
            if len(window) != 2 or len(strides) != 2:
                self.fail(node, path, "lazykit images have two spatial axes (H, W): give two filter/window sizes "
                          f"and two strides, got {window} and {strides}")
            padding = kw["padding"]
            out = []
            for axis, (n, f, s) in enumerate(zip(shape.spatial, window, strides)):
                if n is None:        # a structure check without image sizes (``check_structure``)
                    out.append(None)
                    continue
                size, lo, hi = rules.window_geometry(n, f, s, rules.axis_padding(padding, axis))
                if size < 1:
                    self.fail(node, path, f"a 'VALID' window of {f} does not fit the {n} pixels along "
                              f"{'HW'[axis]}")
                if padding == "CIRCULAR" and max(lo, hi) > n:
                    self.fail(node, path, f"'CIRCULAR' pads ({lo}, {hi}) along {'HW'[axis]} exceed its {n} pixels")
                out.append(size)
            if name == "Conv":
                s0, s1 = kw["s"]
                std = kw["parameterization"] == "standard"
                fan_in = shape.channels * window[0] * window[1] / s0 if std else 0
                stream.layers.append(rules.conv(fan_in, kw["W_std"], kw["b_std"], kw["parameterization"],
                                                window=window, strides=strides, padding=padding))
                stream.shape = _Shape(kw["out_chan"] * s1, tuple(out), True)
            else:
                norm = "none" if name == "SumPool" else (
                    "edges" if kw.get("normalize_edges") and padding not in ("VALID", "CIRCULAR") else "window")
                stream.layers.append(rules.avg_pool(window, strides, padding, norm))
                stream.shape = _Shape(shape.channels, tuple(out), shape.gaussian)
                self.pooled = True
            return
        if name in GLOBAL_POOLS:
            if not shape.spatial:
                self.fail(node, path, f"{name} averages over pixels and needs images (N, C, H, W), but its input "
                          f"is {_describe(shape)}")
            stream.layers.append(rules.readout(GLOBAL_POOLS[name]))
            stream.shape = _Shape(shape.channels, (), shape.gaussian)
            self.pooled = True
            return
        if name == "Flatten":
            if shape.spatial:
                stream.layers.append(rules.readout("flatten"))
                h, w = shape.spatial
                stream.shape = _Shape(shape.channels * (h or 1) * (w or 1), (), False)
            else:
                stream.shape = _Shape(shape.channels, (), False)
            return
        if name == "Dropout":
            if not stream.touched and stream.parent is None:
                self.fail(node, path, "Dropout cannot be applied to the input (neural-tangents refuses it too): "
                          "put it after a layer")
            if kw["mode"] == "train" and kw["rate"] != 1:
                stream.layers.append(rules.dropout(kw["rate"]))
            stream.shape = _Shape(shape.channels, shape.spatial, False if kw["mode"] == "train" else shape.gaussian)
            return
        dual = self.duals_of(node)
        if dual is None:
            self.fail(node, path, f"unknown layer {name!r}")
        if not shape.gaussian:
            self.fail(node, path, "the input to an activation must be Gaussian: the output of Dense, Conv or a "
                      "pooling layer, not of another activation, Flatten, Dropout or the raw input "
                      "(neural-tangents' rule: the closed-form duals assume a Gaussian pre-activation). "
                      "Put a Dense or Conv before it")
        if self.pooled:
            self.activation_after_pool = True
        stream.layers.append(rules.activation(dual))
        stream.shape = _Shape(shape.channels, shape.spatial, False)


def compile_network(spec, feature_shape: tuple, duals_of, describe=None) -> rules.Network:
    """The layer table of ``spec`` for inputs of ``feature_shape`` ((d,) or (C, H, W); H, W may be None for a
    structure check, see ``check_structure``).

    Nodes are ``(name, kwargs, children, ...)`` with every argument bound. ``duals_of(node)`` gives an
    activation node its ``Dual`` and any other node None; ``describe(stack)`` names the failing node in errors
    from the list of nodes leading to it (``kernels.stax`` passes its own: the code written, and the module it
    came from)."""
    if len(feature_shape) not in (1, 3):
        raise ArchitectureError(f"inputs must be vectors (N, d) or images (N, C, H, W), got feature shape "
                                f"{tuple(feature_shape)}")
    shape = _Shape(feature_shape[0], tuple(feature_shape[1:]), False)
    root = _Stream([], shape)
    compiler = _Compiler(duals_of, describe)
    streams = compiler.walk(spec, [root], "")
    if len(streams) != 1 or streams[0] is not root:
        raise ArchitectureError(f"the network ends in {len(streams)} branches: merge them with FanInSum() (a kernel "
                                "is one (n1, n2) matrix)")
    if root.shape.spatial:
        raise ArchitectureError(f"the network's output is {_describe(root.shape)}: end it with Flatten() or "
                                "GlobalAvgPool() (lazykit's kernels are (n1, n2) matrices of the outputs)")
    layers = tuple(root.layers)
    full = compiler.pooled and len(feature_shape) == 3
    return rules.Network(layers, full, full and compiler.activation_after_pool)


def check_structure(spec, image: bool, duals_of, describe=None):
    """The checks of ``compile_network`` that do not need the input's sizes (Gaussian inputs, branches, the
    kinds of input each layer takes), for vectors or images: errors before any data is seen."""
    compile_network(spec, (1, None, None) if image else (1,), duals_of, describe)


# ----------------------------------------------------------------------------------------------- reference tiles
def reference_tiles(xp, network: rules.Network, x1, x2, symmetric: bool, want_ntk: bool, replacements=None):
    """Tile function ``tile(i0, i1, j0, j1) -> (nngp, ntk)`` of the reference engine for any network.

    The input state: vectors K⁰ = x·x'/d; images K⁰(p, q) = Σ_c x[c, p]·x'[c, q]/C on every pixel pair
    (``full_spatial``) or on matching pixels, with per-pixel variances, or per pixel pair of the same image
    (``pair_variances``); Θ⁰ = 0. Then ``rules.run`` (``replacements``: the fused CUDA pairs on CuPy)."""
    if x1.ndim == 2:
        d = x1.shape[1]
        sq1 = xp.sum(x1 * x1, axis=1) / d
        sq2 = sq1 if symmetric else xp.sum(x2 * x2, axis=1) / d

        def tile(i0, i1, j0, j1):
            k12 = (x1[i0:i1, :] @ x2[j0:j1, :].T) / d
            k11, k22 = xp.reshape(sq1[i0:i1], (-1, 1)), xp.reshape(sq2[j0:j1], (1, -1))
            state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
            state = rules.run(network, state, xp, symmetric and i0 == j0, replacements)
            return state[0], state[3]

        return tile

    n_chan, h, w = x1.shape[1], x1.shape[2], x1.shape[3]
    full, pairs = network.full_spatial, network.pair_variances
    var1 = xp.sum(x1 * x1, axis=1) / n_chan                          # (N, H, W)
    var2 = var1 if symmetric else xp.sum(x2 * x2, axis=1) / n_chan

    def channels_last(a):
        return xp.reshape(xp.permute_dims(a, (0, 2, 3, 1)), (a.shape[0], h * w, n_chan))

    def tile(i0, i1, j0, j1):
        a, b = x1[i0:i1, ...], x2[j0:j1, ...]
        b1, b2 = i1 - i0, j1 - j0
        if full:   # K(p, q) = Σ_c a[c, p] b[c, q] / C, as (B1, B2, H, W, H, W)
            fa, fb = channels_last(a), channels_last(b)
            k12 = xp.reshape(xp.reshape(fa, (-1, n_chan)) @ xp.reshape(fb, (-1, n_chan)).T / n_chan,
                             (b1, h, w, b2, h, w))
            k12 = xp.permute_dims(k12, (0, 3, 1, 2, 4, 5))
            if pairs:   # every pixel pair of each image with itself
                k11 = xp.reshape(fa @ xp.permute_dims(fa, (0, 2, 1)) / n_chan, (b1, 1, h, w, h, w))
                k22 = xp.reshape(fb @ xp.permute_dims(fb, (0, 2, 1)) / n_chan, (1, b2, h, w, h, w))
            else:
                k11 = xp.reshape(var1[i0:i1, ...], (b1, 1, h, w, 1, 1))
                k22 = xp.reshape(var2[j0:j1, ...], (1, b2, 1, 1, h, w))
        else:      # matching pixels only, as (B1, B2, H, W)
            k12 = xp.sum(a[:, None, ...] * b[None, ...], axis=2) / n_chan
            k11 = xp.reshape(var1[i0:i1, ...], (b1, 1, h, w))
            k22 = xp.reshape(var2[j0:j1, ...], (1, b2, h, w))
        state = (k12, k11, k22, xp.zeros_like(k12) if want_ntk else None)
        state = rules.run(network, state, xp, symmetric and i0 == j0, replacements)
        return state[0], state[3]

    return tile


def bytes_per_pair(network: rules.Network, feature_shape: tuple, itemsize: int) -> int:
    """Memory of one input pair in a reference tile: a few arrays of (H·W)² (pixel pairs) or H·W numbers."""
    if len(feature_shape) == 1:
        return 8 * itemsize
    h, w = feature_shape[1], feature_shape[2]
    return (h * w) ** (2 if network.full_spatial else 1) * itemsize * 8

