"""Regenerate tests/kernels/fixtures/nt_stax_reference.npz: neural-tangents 0.6.5 ``stax`` kernels of whole
architectures written as JSON specs (float64, ``jax_enable_x64``), the reference for ``kernels.stax``.

Run from the repository root, with the neural-tangents venv of ``compare/bench/peers.py`` installed (install
commands: docs/conventions.md, *Benchmarks*)::

    python -m compare.bench.make_stax_reference

A spec uses neural-tangents' layer and argument names verbatim: ``[name, kwargs]`` for a layer,
``[name, kwargs, [children...]]`` for ``serial`` / ``parallel`` (``peers.stax_from_spec`` builds it with
``getattr(stax, name)(**kwargs)``, JSON lists as tuples). Inputs are drawn here with a fixed seed (standard
normal): ``fc`` 6 and 4 points of dimension 5; ``img8`` 3 and 2 images 3×8×8; ``img7`` 3 and 2 images 2×7×7
(odd size, so that 'SAME' padding of even filters / strides is asymmetric). Images are stored (N, C, H, W),
lazykit's layout; the worker moves channels last (stax's default NHWC) before calling ``kernel_fn``.

The .npz holds, for data set D: ``D_x1``, ``D_x2``; for each case C: ``C_nngp_same`` / ``C_ntk_same``
(``kernel_fn(x1, None)``, shape (n1, n1)) and ``C_nngp_cross`` / ``C_ntk_cross`` (``kernel_fn(x1, x2)``,
(n1, n2)); ``cases`` is a JSON list of {"name", "data", "spec", "checks"}; ``versions`` is JSON with the
neural-tangents and JAX versions that made it. The same case list (name -> spec, data, checks) is written to
``CASES_JSON`` when its folder exists (``/work/notes`` for the engineers; set ``LAZYKIT_STAX_CASES_JSON`` to
move it). Comparing to these: 1e-9 relative off the diagonal, 1e-6 on it (NT's diagonal goes through the
general arccos / arcsin formulas with a clamped square root).

Cases (name [data]: what it checks; numbers 1-7 are the ones the issue requires):

* fc_mixed [fc]: 1. FC: Relu/Erf/LeakyRelu(0.2)/Abs duals, biases on and off (Dense b_std default None), 'ntk'
* fc_standard_bias [fc]: 2. 'standard': NTK's fan-in term n_in*K_in (5, then 64, then 128) and +1 per layer for
  the bias
* fc_standard_nobias [fc]: 2. 'standard' with b_std=None: no +1 term
* fc_standard_b0 [fc]: 2. 'standard' with b_std=0.0: NNGP as no-bias, but the NTK still gets +1 per layer (0.0
  != None)
* conv_valid_avgpool_same_flatten [img8]: 3. VALID conv, AvgPool 2x2/2, SAME conv, Flatten (mean of matching
  pixels) -> full spatial kernel
* conv_strided_same_gap [img8]: 4. stride-2 SAME 3x3 conv on 8x8 (lax SAME: total pad 1 -> low 0, high 1), GAP
* conv_even4_same_gap [img7]: 4. even 4x4 SAME filter on odd 7x7 input: asymmetric pads (1, 2); GAP
* conv_even2_stride2_same_gap [img7]: 4. even 2x2 filter, stride 2, SAME on 7x7 -> 4x4 (pads (0, 1)); GAP
* resnet_preact_block [img8]: 5. pre-activation residual block: FanInSum adds the branch kernels (K_f + K_x, no
  cross term)
* vgg_two_avgpools [img8]: 6. VGG-like: two AvgPool 2x2/2 (full pixel-pair covariance pooled), GAP
* resnet_downsample_block [img8]: 7. downsampling residual block: 3x3/2 + 3x3 branch and 1x1/2 shortcut,
  FanInSum, Relu, GAP
* avgpool_same_s1_edges_false [img8]: AvgPool 3x3/1 SAME, normalize_edges=False: border windows divided by the
  window size 9
* avgpool_same_s1_edges_true [img8]: AvgPool 3x3/1 SAME, normalize_edges=True: divided by n_valid(p) *
  n_valid(p') per pixel pair
* avgpool_even_same_s2_edges_true [img7]: AvgPool 2x2/2 SAME on 7x7 (pads (0, 1), out 4x4),
  normalize_edges=True, then conv and Flatten
* avgpool_default_strides [img8]: AvgPool(window_shape=(2, 2)) defaults: strides None means 1 (not the window),
  padding VALID
* conv_nonsquare [img8]: non-square filters (3, 1) SAME then (1, 3) VALID: filter_shape is (H, W)
* conv_standard_bias [img8]: 'standard' conv: NTK fan-in = in_chan x filter area (3*9, then 16*9), readout fan-
  in 32
* conv_standard_nobias_flatten [img8]: 'standard' conv, no biases, Flatten: readout fan-in = C*H*W = 8*4*4
* conv_erf_gelu [img8]: Erf and Gelu duals on conv pixel-pair covariances
* conv_erf_abc_flatten [img8]: Erf(a, b, c): K <- a^2 * erf_dual(b^2 K) + c^2, NTK a^2 b^2 * ...; Flatten
  (diagonal_spatial path)
* fc_depth0 [fc]: FC depth 0: a single Dense(1); NNGP = W^2 x.x'/d + b^2, NTK = NNGP
* fc_depth0_standard [fc]: single standard Dense(1): NTK = x.x' (d * x.x'/d) + 1
* fc_identity_layers [fc]: Identity layers are no-ops
* fc_parallel3_faninsum [fc]: 3 branches summed: K = K_relu_branch + K_erf_branch + K_identity, same for the NTK
* resnet_preact_two_blocks [img8]: two residual blocks in a row, Relu after the last FanInSum
* conv_strided_flatten [img8]: stride-2 SAME conv then Flatten (NT runs diagonal_spatial=True here; pixel
  diagonal only)
* conv_strided_valid_flatten [img7]: stride-2 VALID 3x3 on 7x7 (-> 3x3), 2x2 VALID, Flatten
* conv_circular_gap [img7]: CIRCULAR padding (wrap-around SAME pads), odd and even filters
* sumpool_globalsumpool [img8]: SumPool / GlobalSumPool: like the Avg versions without the division
* fc_activation_zoo_a [fc]: Gelu, Sigmoid_like (= Erf(0.5, 1/2.4020563531719796, 0.5)), ABRelu(a, b), Erf(a, b,
  c)
* fc_activation_zoo_b [fc]: Sin(a, b, c): a^2/2 (e^{b^2(K-S/2)} - e^{-b^2(K+S/2)} cos 2c); Rbf(gamma):
  e^{-gamma(K11+K22-2K)}
* fc_activation_zoo_c [fc]: Cos (= Sin with c + pi/2), Gaussian(a, b) = a e^{b x^2}, Exp(a, b) = a e^{b x}
* fc_dropout_train [fc]: Dropout(rate = KEEP rate 0.8, 'train'): same-input diagonal x 1/rate, x1 vs x2
  unchanged
* dense_on_images_gap [img8]: Dense on images acts per pixel pair (a 1x1 conv); GAP
* activation_after_gap [img8]: GAP keeps the kernel Gaussian: an activation may follow, on the mean of the
  pixel-pair variances
* dropout_on_images_then_pool_relu [img8]: Dropout on pixel pairs (same image, same pixel x 1/rate), AvgPool then
  Relu (pixel-pair variances)
* fc_standard_s [fc]: 'standard' with s: n_in = width / s[0], output width out_dim * s[1] (48, read as 48/4)
"""
from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np

from compare.bench.peers import nt_stax_kernels_many

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "kernels" / "fixtures" / "nt_stax_reference.npz"
CASES_JSON = pathlib.Path(os.environ.get("LAZYKIT_STAX_CASES_JSON", "/work/notes/nt_stax_cases.json"))
HIDDEN = 512   # out_dim / out_chan of hidden layers where the ('ntk') kernel ignores it


# ------------------------------------------------------------------------------- spec helpers
def serial(*layers):
    return ["serial", {}, list(layers)]


def parallel(*layers):
    return ["parallel", {}, list(layers)]


def L(name, **kwargs):   # noqa: N802 - a layer, named as in stax
    return [name, kwargs]


def dense(out_dim=HIDDEN, **kw):
    return L("Dense", out_dim=out_dim, **kw)


def conv(filter_shape=(3, 3), out_chan=HIDDEN, **kw):
    return L("Conv", out_chan=out_chan, filter_shape=list(filter_shape), **kw)


def relu():
    return L("Relu")


def gap():
    return L("GlobalAvgPool")


def readout(**kw):
    kw.setdefault("W_std", 1.1)
    kw.setdefault("b_std", 0.05)
    return dense(1, **kw)


def _cases():
    """(name, data set, spec, what it checks)."""
    c = []

    def add(name, data, spec, checks):
        c.append({"name": name, "data": data, "spec": spec, "checks": checks})

    # --- required by the issue -------------------------------------------------------------------------
    add("fc_mixed", "fc", serial(
        dense(W_std=1.5, b_std=0.2), relu(),
        dense(W_std=1.3), L("Erf"),                      # b_std omitted: stax default None, no bias
        dense(W_std=1.2, b_std=0.1), L("LeakyRelu", alpha=0.2),
        dense(W_std=1.4, b_std=0.3), L("Abs"),
        readout()),
        "1. FC: Relu/Erf/LeakyRelu(0.2)/Abs duals, biases on and off (Dense b_std default None), 'ntk'")
    add("fc_standard_bias", "fc", serial(
        dense(64, W_std=1.4, b_std=0.1, parameterization="standard"), relu(),
        dense(128, W_std=1.3, b_std=0.1, parameterization="standard"), relu(),
        dense(1, W_std=1.0, b_std=0.1, parameterization="standard")),
        "2. 'standard': NTK's fan-in term n_in*K_in (5, then 64, then 128) and +1 per layer for the bias")
    add("fc_standard_nobias", "fc", serial(
        dense(64, W_std=1.4, parameterization="standard"), relu(),
        dense(128, W_std=1.3, parameterization="standard"), relu(),
        dense(1, W_std=1.0, parameterization="standard")),
        "2. 'standard' with b_std=None: no +1 term")
    add("fc_standard_b0", "fc", serial(
        dense(64, W_std=1.4, b_std=0.0, parameterization="standard"), relu(),
        dense(128, W_std=1.3, b_std=0.0, parameterization="standard"), relu(),
        dense(1, W_std=1.0, b_std=0.0, parameterization="standard")),
        "2. 'standard' with b_std=0.0: NNGP as no-bias, but the NTK still gets +1 per layer (0.0 != None)")
    add("conv_valid_avgpool_same_flatten", "img8", serial(
        conv(padding="VALID", W_std=1.4, b_std=0.1), relu(),              # 8x8 -> 6x6
        L("AvgPool", window_shape=[2, 2], strides=[2, 2]),                # 6x6 -> 3x3
        conv(padding="SAME", W_std=1.3, b_std=0.1), relu(),               # 3x3
        L("Flatten"), readout()),
        "3. VALID conv, AvgPool 2x2/2, SAME conv, Flatten (mean of matching pixels) -> full spatial kernel")
    add("conv_strided_same_gap", "img8", serial(
        conv(strides=[2, 2], padding="SAME", W_std=1.4, b_std=0.1), relu(),   # 8 -> 4, pads (0, 1)
        conv(padding="SAME", W_std=1.3, b_std=0.1), relu(),
        gap(), readout()),
        "4. stride-2 SAME 3x3 conv on 8x8 (lax SAME: total pad 1 -> low 0, high 1), GAP")
    add("conv_even4_same_gap", "img7", serial(
        conv((4, 4), padding="SAME", W_std=1.4, b_std=0.1), relu(),          # 7x7, pads (1, 2)
        conv(padding="SAME", W_std=1.3), relu(),
        gap(), readout()),
        "4. even 4x4 SAME filter on odd 7x7 input: asymmetric pads (1, 2); GAP")
    add("conv_even2_stride2_same_gap", "img7", serial(
        conv((2, 2), strides=[2, 2], padding="SAME", W_std=1.4, b_std=0.1), relu(),   # 7 -> 4, pads (0, 1)
        conv(padding="SAME", W_std=1.3, b_std=0.1), relu(),
        gap(), readout()),
        "4. even 2x2 filter, stride 2, SAME on 7x7 -> 4x4 (pads (0, 1)); GAP")
    add("resnet_preact_block", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1),
        L("FanOut", num=2),
        parallel(serial(relu(), conv(padding="SAME", W_std=1.3, b_std=0.1),
                        relu(), conv(padding="SAME", W_std=1.2, b_std=0.1)),
                 L("Identity")),
        L("FanInSum"), gap(), readout()),
        "5. pre-activation residual block: FanInSum adds the branch kernels (K_f + K_x, no cross term)")
    add("vgg_two_avgpools", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("AvgPool", window_shape=[2, 2], strides=[2, 2]),               # 8 -> 4
        conv(padding="SAME", W_std=1.3, b_std=0.1), relu(),
        L("AvgPool", window_shape=[2, 2], strides=[2, 2]),               # 4 -> 2
        conv(padding="SAME", W_std=1.2, b_std=0.1), relu(),
        gap(), readout()),
        "6. VGG-like: two AvgPool 2x2/2 (full pixel-pair covariance pooled), GAP")
    add("resnet_downsample_block", "img8", serial(
        L("FanOut", num=2),
        parallel(serial(conv(strides=[2, 2], padding="SAME", W_std=1.4, b_std=0.1), relu(),
                        conv(padding="SAME", W_std=1.3, b_std=0.1)),
                 conv((1, 1), strides=[2, 2], padding="SAME", W_std=1.2, b_std=0.1)),
        L("FanInSum"), relu(), gap(), readout()),
        "7. downsampling residual block: 3x3/2 + 3x3 branch and 1x1/2 shortcut, FanInSum, Relu, GAP")

    # --- coverage --------------------------------------------------------------------------------------
    add("avgpool_same_s1_edges_false", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("AvgPool", window_shape=[3, 3], strides=[1, 1], padding="SAME", normalize_edges=False),
        L("Flatten"), readout()),
        "AvgPool 3x3/1 SAME, normalize_edges=False: border windows divided by the window size 9")
    add("avgpool_same_s1_edges_true", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("AvgPool", window_shape=[3, 3], strides=[1, 1], padding="SAME", normalize_edges=True),
        L("Flatten"), readout()),
        "AvgPool 3x3/1 SAME, normalize_edges=True: divided by n_valid(p) * n_valid(p') per pixel pair")
    add("avgpool_even_same_s2_edges_true", "img7", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("AvgPool", window_shape=[2, 2], strides=[2, 2], padding="SAME", normalize_edges=True),
        conv(padding="SAME", W_std=1.3), relu(),
        L("Flatten"), readout()),
        "AvgPool 2x2/2 SAME on 7x7 (pads (0, 1), out 4x4), normalize_edges=True, then conv and Flatten")
    add("avgpool_default_strides", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("AvgPool", window_shape=[2, 2]),                                # strides None -> (1, 1): 8 -> 7
        gap(), readout()),
        "AvgPool(window_shape=(2, 2)) defaults: strides None means 1 (not the window), padding VALID")
    add("conv_nonsquare", "img8", serial(
        conv((3, 1), padding="SAME", W_std=1.4, b_std=0.1), relu(),       # filter_shape[0] runs along H
        conv((1, 3), padding="VALID", W_std=1.3, b_std=0.1), relu(),      # 8x8 -> 8x6
        gap(), readout()),
        "non-square filters (3, 1) SAME then (1, 3) VALID: filter_shape is (H, W)")
    add("conv_standard_bias", "img8", serial(
        conv(out_chan=16, padding="SAME", W_std=1.4, b_std=0.1, parameterization="standard"), relu(),
        conv(out_chan=32, padding="SAME", W_std=1.3, b_std=0.1, parameterization="standard"), relu(),
        gap(), dense(1, W_std=1.1, b_std=0.05, parameterization="standard")),
        "'standard' conv: NTK fan-in = in_chan x filter area (3*9, then 16*9), readout fan-in 32")
    add("conv_standard_nobias_flatten", "img8", serial(
        conv(out_chan=16, strides=[2, 2], padding="SAME", W_std=1.4, parameterization="standard"), relu(),
        conv(out_chan=8, padding="SAME", W_std=1.3, parameterization="standard"), relu(),
        L("Flatten"), dense(1, W_std=1.1, parameterization="standard")),
        "'standard' conv, no biases, Flatten: readout fan-in = C*H*W = 8*4*4")
    add("conv_erf_gelu", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), L("Erf"),
        conv(padding="SAME", W_std=1.3, b_std=0.1), L("Gelu"),
        gap(), readout()),
        "Erf and Gelu duals on conv pixel-pair covariances")
    add("conv_erf_abc_flatten", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), L("Erf", a=1.3, b=0.7, c=0.1),
        conv(padding="SAME", W_std=1.3, b_std=0.1), L("LeakyRelu", alpha=0.1),
        L("Flatten"), readout()),
        "Erf(a, b, c): K <- a^2 * erf_dual(b^2 K) + c^2, NTK a^2 b^2 * ...; Flatten (diagonal_spatial path)")
    add("fc_depth0", "fc", serial(dense(1, W_std=1.3, b_std=0.2)),
        "FC depth 0: a single Dense(1); NNGP = W^2 x.x'/d + b^2, NTK = NNGP")
    add("fc_depth0_standard", "fc", serial(dense(1, W_std=1.3, b_std=0.2, parameterization="standard")),
        "single standard Dense(1): NTK = x.x' (d * x.x'/d) + 1")
    add("fc_identity_layers", "fc", serial(
        L("Identity"), dense(W_std=1.3, b_std=0.1), L("Identity"), relu(), L("Identity"), readout()),
        "Identity layers are no-ops")
    add("fc_parallel3_faninsum", "fc", serial(
        dense(W_std=1.3, b_std=0.1),
        L("FanOut", num=3),
        parallel(serial(relu(), dense(W_std=1.2, b_std=0.1)),
                 serial(L("Erf"), dense(W_std=1.1)),
                 L("Identity")),
        L("FanInSum"), relu(), readout()),
        "3 branches summed: K = K_relu_branch + K_erf_branch + K_identity, same for the NTK")
    add("resnet_preact_two_blocks", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1),
        L("FanOut", num=2),
        parallel(serial(relu(), conv(padding="SAME", W_std=1.3, b_std=0.1)), L("Identity")),
        L("FanInSum"),
        L("FanOut", num=2),
        parallel(serial(relu(), conv(padding="SAME", W_std=1.2, b_std=0.1)), L("Identity")),
        L("FanInSum"), relu(), gap(), readout()),
        "two residual blocks in a row, Relu after the last FanInSum")
    add("conv_strided_flatten", "img8", serial(
        conv(strides=[2, 2], padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("Flatten"), readout()),
        "stride-2 SAME conv then Flatten (NT runs diagonal_spatial=True here; pixel diagonal only)")
    add("conv_strided_valid_flatten", "img7", serial(
        conv(strides=[2, 2], padding="VALID", W_std=1.4, b_std=0.1), relu(),   # 7 -> 3
        conv((2, 2), padding="VALID", W_std=1.3, b_std=0.1), relu(),           # 3 -> 2
        L("Flatten"), readout()),
        "stride-2 VALID 3x3 on 7x7 (-> 3x3), 2x2 VALID, Flatten")
    add("conv_circular_gap", "img7", serial(
        conv(padding="CIRCULAR", W_std=1.4, b_std=0.1), relu(),
        conv((2, 2), padding="CIRCULAR", W_std=1.3, b_std=0.1), relu(),
        gap(), readout()),
        "CIRCULAR padding (wrap-around SAME pads), odd and even filters")
    add("sumpool_globalsumpool", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        L("SumPool", window_shape=[2, 2], strides=[2, 2]),
        conv(padding="SAME", W_std=0.5), relu(),
        L("GlobalSumPool"), readout(W_std=0.2)),
        "SumPool / GlobalSumPool: like the Avg versions without the division")
    add("fc_activation_zoo_a", "fc", serial(
        dense(W_std=1.2, b_std=0.1), L("Gelu"),
        dense(W_std=1.3, b_std=0.1), L("Sigmoid_like"),
        dense(W_std=1.4, b_std=0.1), L("ABRelu", a=-0.3, b=1.2),
        dense(W_std=1.2, b_std=0.1), L("Erf", a=1.3, b=0.7, c=0.1),
        readout()),
        "Gelu, Sigmoid_like (= Erf(0.5, 1/2.4020563531719796, 0.5)), ABRelu(a, b), Erf(a, b, c)")
    add("fc_activation_zoo_b", "fc", serial(
        dense(W_std=1.5, b_std=0.1), L("Sin", a=1.1, b=0.9, c=0.3),
        dense(W_std=1.5, b_std=0.1), L("Rbf", gamma=0.5),
        readout()),
        "Sin(a, b, c): a^2/2 (e^{b^2(K-S/2)} - e^{-b^2(K+S/2)} cos 2c); Rbf(gamma): e^{-gamma(K11+K22-2K)}")
    add("fc_activation_zoo_c", "fc", serial(
        dense(W_std=1.2, b_std=0.1), L("Cos"),
        dense(W_std=1.5, b_std=0.1), L("Gaussian", a=1.0, b=-0.5),
        dense(W_std=1.5, b_std=0.1), L("Exp", a=0.7, b=0.4),
        readout()),
        "Cos (= Sin with c + pi/2), Gaussian(a, b) = a e^{b x^2}, Exp(a, b) = a e^{b x}")
    add("fc_dropout_train", "fc", serial(
        dense(W_std=1.3, b_std=0.1), relu(), L("Dropout", rate=0.8, mode="train"),
        readout()),
        "Dropout(rate = KEEP rate 0.8, 'train'): same-input diagonal x 1/rate, x1 vs x2 unchanged")
    add("dense_on_images_gap", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(),
        dense(W_std=1.3, b_std=0.1), relu(),                               # Dense on images: per pixel, over channels
        gap(), readout()),
        "Dense on images acts per pixel pair (a 1x1 conv); GAP")
    add("activation_after_gap", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), gap(),
        L("Erf"), readout()),
        "GAP keeps the kernel Gaussian: an activation may follow, on the mean of the pixel-pair variances")
    add("dropout_on_images_then_pool_relu", "img8", serial(
        conv(padding="SAME", W_std=1.4, b_std=0.1), relu(), L("Dropout", rate=0.7, mode="train"),
        conv(padding="SAME", W_std=1.3), L("AvgPool", window_shape=[2, 2], strides=[2, 2]), relu(),
        gap(), readout()),
        "Dropout on pixel pairs (same image, same pixel x 1/rate), AvgPool then Relu (pixel-pair variances)")
    add("fc_standard_s", "fc", serial(
        dense(16, W_std=1.4, b_std=0.1, parameterization="standard", s=[2, 3]), relu(),
        dense(1, W_std=1.1, b_std=0.1, parameterization="standard", s=[4, 1])),
        "'standard' with s: n_in = width / s[0], output width out_dim * s[1] (48, read as 48/4)")
    return c


def main() -> int:
    rng = np.random.default_rng(20261207)
    data = {"fc_x1": rng.standard_normal((6, 5)), "fc_x2": rng.standard_normal((4, 5)),
            "img8_x1": rng.standard_normal((3, 3, 8, 8)), "img8_x2": rng.standard_normal((2, 3, 8, 8)),
            "img7_x1": rng.standard_normal((3, 2, 7, 7)), "img7_x2": rng.standard_normal((2, 2, 7, 7))}
    cases = _cases()
    names = [case["name"] for case in cases]
    if len(set(names)) != len(names):
        raise ValueError("duplicate case names")
    requests = []
    for case in cases:
        x1, x2 = data[case["data"] + "_x1"], data[case["data"] + "_x2"]
        requests += [(case["spec"], x1, None), (case["spec"], x1, x2)]
    results, versions = nt_stax_kernels_many(requests)
    for i, case in enumerate(cases):
        (nngp_s, ntk_s), (nngp_c, ntk_c) = results[2 * i], results[2 * i + 1]
        for key, value in (("nngp_same", nngp_s), ("ntk_same", ntk_s),
                           ("nngp_cross", nngp_c), ("ntk_cross", ntk_c)):
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{case['name']}: non-finite {key}")
            data[f"{case['name']}_{key}"] = value
    versions["dtype"] = "float64"
    data["cases"] = np.asarray(json.dumps(cases))
    data["versions"] = np.asarray(json.dumps(versions))
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases, neural-tangents "
          f"{versions['neural_tangents']}, jax {versions['jax']})")
    if CASES_JSON.parent.is_dir():
        entries = [f'  {json.dumps(case["name"])}: {{"data": {json.dumps(case["data"])}, '
                   f'"checks": {json.dumps(case["checks"])},\n   "spec": {json.dumps(case["spec"])}}}'
                   for case in cases]
        CASES_JSON.write_text("{\n" + ",\n".join(entries) + "\n}\n")
        print(f"wrote {CASES_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
