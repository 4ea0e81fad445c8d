"""Benchmark: analytic NNGP + NTK (``kernels.FullyConnected`` / ``Convolutional`` / ``kernels.stax``) against
neural-tangents.

``python -m compare bench analytic [--repeats 5] [--quick] [--skip-peer] [--conv-images 200] [--fused-images 8]
[--stax-images 10] [--device auto]``

Cases (CPU): depth-3 ReLU FC kernel of 2000 inputs (d = 100) with itself in float32 and float64, the
same for 10,000 inputs, and a depth-3 GAP ReLU conv kernel of 200 images 3×16×16 with itself. The peer is
neural-tangents ``stax`` (jitted ``kernel_fn``, float64 through ``jax_enable_x64``; ``nt.batch`` for the
large cases), run in its own venv by ``compare.bench.peers`` in the same session. With a GPU, the FC and
conv (3×32×32) cases also run on CuPy, next to a floor: the time of the Gram product x1·x2ᵀ plus one
read and write of the output per layer. ``--device cpu`` runs only the CPU cases, ``--device cuda`` only the
GPU ones (an error without a GPU), ``auto`` (default) the CPU cases and, with a GPU, the GPU ones.

A second table (CPU cases) compares the fused CPU loop (``cpu_impl="fused"``, kernels/analytic/_cpu.py) with
the NumPy reference chain (``cpu_impl="reference"``, the implementation before it) on the same inputs: the
depth-3 GAP ReLU conv kernel of ``--fused-images`` images 3×32×32 in float64, and the FC case above, next
to neural-tangents and to the arithmetic floor of ``compare.bench.cpu_floor`` (the operations per pixel
pair and layer × pixel pairs × layers at this machine's measured rates, over all cores).

A third table (CPU, float64, x2 = None) does the same for ``kernels.stax`` networks, each against the same spec
in neural-tangents (its jitted ``kernel_fn``, timed after a warm-up call): a VGG-like stack (three [Conv 3×3
SAME, ReLU], AvgPool 2×2 stride 2 after the first two, GlobalAvgPool, Dense) on ``--stax-images`` images
3×32×32, and a residual network (Conv, a pre-activation block, a downsampling block with a 1×1 stride-2
shortcut, GlobalAvgPool, Dense) on images 3×16×16; the floor counts each row of the network
(``kernels.cpu_operation_counts``). The reference chain runs once (it takes seconds). With a GPU (``--device
cuda`` or ``auto``), the VGG-like stack also runs on CuPy (the CUDA kernels of ``kernels.analytic._cuda``) in
float32 and float64, against the fused CPU loop in float64 on the same images: both times, and the largest
difference of the kernels.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os

import numpy as np

from compare.bench import harness, peers

# gpu-check's run (its budget gives a benchmark about 70 s): the GPU cases at the --quick sizes
FC_CONFIG = dict(kind="fc", depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.0)
CONV_CONFIG = dict(kind="conv", depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.0, filter_size=3,
                   readout="gap")


def _stax_conv(filter_shape=(3, 3), strides=(1, 1)):
    return ["Conv", {"out_chan": 64, "filter_shape": list(filter_shape), "strides": list(strides), "padding": "SAME",
                     "W_std": 2 ** 0.5, "b_std": 0.1}]


_RELU, _POOL = ["Relu", {}], ["AvgPool", {"window_shape": [2, 2], "strides": [2, 2]}]
_HEAD = [["GlobalAvgPool", {}], ["Dense", {"out_dim": 1, "W_std": 2 ** 0.5}]]
# the stax specs of the third table, in neural-tangents' names (compare/bench/peers.py: JSON specs)
VGG_SPEC = ["serial", {}, [_stax_conv(), _RELU, _POOL, _stax_conv(), _RELU, _POOL, _stax_conv(), _RELU] + _HEAD]
RESNET_SPEC = ["serial", {}, [
    _stax_conv(),
    ["FanOut", {"num": 2}], ["parallel", {}, [["serial", {}, [_RELU, _stax_conv(), _RELU, _stax_conv()]],
                                              ["Identity", {}]]], ["FanInSum", {}],
    ["FanOut", {"num": 2}], ["parallel", {}, [["serial", {}, [_RELU, _stax_conv(strides=(2, 2)), _RELU,
                                                              _stax_conv()]],
                                              ["serial", {}, [_RELU, _stax_conv((1, 1), (2, 2))]]]], ["FanInSum", {}],
    _RELU] + _HEAD]
VGG_CASE = "VGG-like: 3 × [Conv 3×3 SAME, ReLU], 2 AvgPool 2×2/2, GAP"
RESNET_CASE = "ResNet-like: Conv, pre-activation block, downsampling block (1×1/2 shortcut), GAP"


def _kernel(config, **extra):
    from kernels import Convolutional, FullyConnected
    params = {k: v for k, v in config.items() if k != "kind"}
    return (FullyConnected if config["kind"] == "fc" else Convolutional)(**params, **extra)


def _peer(config, x, dtype, repeats, batch_size, skip):
    if skip:
        return math.nan, "skipped"
    try:
        times = peers.nt_time(config, x, dtype=dtype, repeats=repeats, batch_size=batch_size)
    except RuntimeError as err:
        return math.nan, peers.NOT_INSTALLED if peers.NOT_INSTALLED in str(err) else f"failed: {err}"[:80]
    return float(np.median(times)), ""


def _gpu_floor(x, n_layers, repeats):
    """Time of the Gram product x·xᵀ plus one read and one write of both outputs (NNGP, NTK) per layer,
    in row chunks of at most 2²⁸ entries (CuPy). For conv, x holds one row per pixel: its Gram is the
    pixel-pair covariance of all image pairs."""
    import cupy
    n = x.shape[0]
    rows = max(1, min(n, 2 ** 28 // n))
    out = cupy.empty((rows, n), dtype=x.dtype)
    sync = cupy.cuda.Device().synchronize

    def floor():
        for lo in range(0, n, rows):
            block = out[: min(rows, n - lo)]
            cupy.matmul(x[lo:lo + rows], x.T, out=block)
            for _ in range(2 * n_layers):
                cupy.multiply(block, 1, out=block)   # one read and one write of the chunk

    return harness.measure(floor, repeats, sync=sync).median


def run(args) -> str:
    rng = np.random.default_rng(0)
    rows = _cpu_rows(args, rng) if args.device in ("auto", "cpu") else []
    if args.device in ("auto", "cuda"):
        rows += _gpu_rows(args, rng)
    header = ["case", "device", "dtype", "lazykit (median)", "neural-tangents (median)", "speed-up", "note"]
    lines = [f"# analytic NNGP + NTK ({datetime.date.today().isoformat()})",
             f"machine: {harness.machine_info()}; load average (1 min) at the start {os.getloadavg()[0]:.2f}",
             f"command: python -m compare bench analytic {' '.join(args.argv)}".rstrip(),
             f"median of {args.repeats} repeats after 1 warm-up; both kernels (NNGP and NTK) of x with itself; "
             "speed-up = neural-tangents time / lazykit time, measured in the same run", "",
             harness.format_table(header, rows)]
    if args.device in ("auto", "cpu"):
        lines += ["", *_fused_table(args, rng), "", *_stax_table(args, rng)]
    if args.device in ("auto", "cuda"):
        lines += _gpu_stax_table(args, rng)
    return "\n".join(lines)


def _cpu_rows(args, rng) -> list:
    rows = []
    fc_sizes = [2000] if args.quick else [2000, 10_000]
    for n in fc_sizes:
        x64 = rng.standard_normal((n, 100))
        for dtype in ("float32", "float64"):
            x = x64.astype(dtype)
            kernel = _kernel(FC_CONFIG)
            ours = harness.measure(lambda: kernel.kernels(x), args.repeats).median
            peer, note = _peer(FC_CONFIG, x, dtype, args.repeats, 0 if n <= 2000 else 2000, args.skip_peer)
            rows.append([f"FC depth 3 ReLU, {n}×{n}, d=100", "CPU", dtype, harness.format_seconds(ours),
                         harness.format_seconds(peer), harness.ratio(peer, ours), note])
    n_img = 12 if args.quick else args.conv_images
    images = rng.standard_normal((n_img, 3, 16, 16))
    kernel = _kernel(CONV_CONFIG)
    ours = harness.measure(lambda: kernel.kernels(images), args.repeats).median
    batch = next(b for b in (20, 10, 8, 5, 4, 2, 1) if n_img % b == 0)
    peer, note = _peer(CONV_CONFIG, images, "float64", args.repeats, batch, args.skip_peer)
    rows.append([f"Conv depth 3 GAP ReLU, {n_img} images 3×16×16", "CPU", "float64",
                 harness.format_seconds(ours), harness.format_seconds(peer), harness.ratio(peer, ours), note])
    return rows


def _fused_table(args, rng) -> list:
    """Fused CPU loop vs the NumPy reference vs neural-tangents, and the conv case's arithmetic floor."""
    from compare.bench import cpu_floor     # numba, as the fused loops: only where they are measured (CPU)
    threads = os.cpu_count() or 1
    rate = cpu_floor.rates(args.repeats)
    n_img = 4 if args.quick else args.fused_images
    images = rng.standard_normal((n_img, 3, 32, 32))
    depth = CONV_CONFIG["depth"]
    pixel_pair_layers = n_img * (n_img + 1) / 2 * (32 * 32) ** 2 * depth
    floor = cpu_floor.floor_seconds(pixel_pair_layers, threads, rate)
    batch = next(b for b in (20, 10, 8, 5, 4, 2, 1) if n_img % b == 0)
    cases = [(f"Conv depth 3 GAP ReLU, {n_img} images 3×32×32", CONV_CONFIG, images, batch, floor),
             ("FC depth 3 ReLU, 2000×2000, d=100", FC_CONFIG, rng.standard_normal((2000, 100)), 0, math.nan)]
    rows = []
    for case, config, x, batch, floor in cases:
        fused, reference = (harness.measure(lambda: _kernel(config, cpu_impl=impl).kernels(x), args.repeats).median
                            for impl in ("fused", "reference"))
        peer, note = _peer(config, x, "float64", args.repeats, batch, args.skip_peer)
        rows.append([case, harness.format_seconds(fused), harness.format_seconds(reference),
                     harness.ratio(reference, fused), harness.format_seconds(peer), harness.ratio(peer, fused),
                     harness.format_seconds(floor), "-" if floor != floor else f"{fused / floor:.1f}×", note])
    header = ["case (CPU, float64)", "fused", "reference", "fused speed-up", "neural-tangents",
              "speed-up vs NT", "floor", "fused / floor", "note"]
    ns = {op: f"{seconds * 1e9:.2f} ns" for op, seconds in rate.items()}
    return [f"## fused CPU loop (cpu_impl='fused') vs the NumPy reference (cpu_impl='reference'), {threads} threads",
            f"floor: {' + '.join(f'{n} {op}' for op, n in cpu_floor.OPS_PER_PIXEL_PAIR.items())} per pixel pair "
            f"and layer, at the rates measured here on one thread ({', '.join(f'{op} {v}' for op, v in ns.items())}), "
            f"× {pixel_pair_layers:.3g} pixel-pair layers / {threads} cores", "",
            harness.format_table(header, rows)]


def _stax_peer(spec, x, repeats, skip):
    """neural-tangents' median time for the stax ``spec`` on x (with itself), or NaN and why not."""
    if skip:
        return math.nan, "skipped"
    try:
        return float(np.median(peers.nt_stax_time(spec, x, repeats=repeats))), ""
    except RuntimeError as err:
        return math.nan, peers.NOT_INSTALLED if peers.NOT_INSTALLED in str(err) else f"failed: {err}"[:80]


def _stax_table(args, rng) -> list:
    """kernels.stax networks: the fused CPU loop, the reference chain, neural-tangents and the floor."""
    from compare.bench import cpu_floor     # numba, as the fused loops: only where they are measured (CPU)
    from kernels import StaxKernel
    threads = os.cpu_count() or 1
    rate = cpu_floor.rates(args.repeats)
    n = 4 if args.quick else args.stax_images
    size = 16 if args.quick else 32
    rows = []
    for case, spec, shape in ((VGG_CASE, VGG_SPEC, (3, size, size)), (RESNET_CASE, RESNET_SPEC, (3, 16, 16))):
        x = rng.standard_normal((n,) + shape)
        fused_kernel, reference_kernel = (StaxKernel(spec, cpu_impl=impl) for impl in ("fused", "reference"))
        fused = harness.measure(lambda: fused_kernel.kernels(x), args.repeats).median
        reference = harness.measure(lambda: reference_kernel.kernels(x), 1, warmup=0).median
        peer, note = _stax_peer(spec, x, args.repeats, args.skip_peer)
        floor = cpu_floor.network_seconds(fused_kernel, shape, n * (n + 1) / 2, threads, rate)
        rows.append([f"{case}, {n} images {shape[0]}×{shape[1]}×{shape[2]}", harness.format_seconds(fused),
                     harness.format_seconds(reference), harness.ratio(reference, fused), harness.format_seconds(peer),
                     harness.ratio(peer, fused), harness.format_seconds(floor), f"{fused / floor:.1f}×", note])
    header = ["case (CPU, float64, x2=None)", "fused", "reference (1 run)", "fused speed-up", "neural-tangents",
              "speed-up vs NT", "floor", "fused / floor", "note"]
    return [f"## kernels.stax: fused CPU loop vs the reference chain and neural-tangents (same spec), {threads} threads",
            "goal (VGG-like, 10 images 3×32×32): ≥ 10× neural-tangents, fused / floor ≤ 3×; floor: each row's "
            "operations (compare/bench/cpu_floor.py) at the rates of the table above, over all cores", "",
            harness.format_table(header, rows)]


def _gpu_stax_table(args, rng) -> list:
    """The VGG-like stax stack on CuPy (the CUDA kernels of kernels.analytic._cuda) against the fused CPU loop on
    the same images in float64, measured in the same run, with their largest difference."""
    from kernels import StaxKernel, gpu_available
    if not gpu_available():
        return []
    import cupy
    sync = cupy.cuda.Device().synchronize
    n = 8 if args.quick else 20
    images = rng.standard_normal((n, 3, 32, 32))
    cpu_kernel = StaxKernel(VGG_SPEC)
    cpu = harness.measure(lambda: cpu_kernel.kernels(images), args.repeats).median
    want = cpu_kernel.kernels(images)
    rows = []
    for dtype in ("float32", "float64"):
        x = cupy.asarray(images, dtype=dtype)
        kernel = StaxKernel(VGG_SPEC, memory_budget=2 ** 31)
        cuda = harness.measure(lambda: kernel.kernels(x), args.repeats, sync=sync).median
        got = kernel.kernels(x)
        diff = max(float(np.abs(cupy.asnumpy(g) - w).max() / np.abs(w).max()) for g, w in zip(got, want))
        rows.append([f"{VGG_CASE}, {n} images 3×32×32", dtype, harness.format_seconds(cuda),
                     harness.format_seconds(cpu), harness.ratio(cpu, cuda), f"{diff:.1e}"])
    header = ["case (x2=None)", "GPU dtype", "CUDA kernels", "fused CPU loop (float64)", "GPU speed-up",
              "max |GPU − CPU| / max |K|"]
    return ["", f"## kernels.stax on the GPU ({harness.gpu_name()}): CUDA kernels vs the fused CPU loop", "",
            harness.format_table(header, rows)]


def _gpu_rows(args, rng) -> list:
    from kernels import gpu_available
    if not gpu_available():
        return []
    import cupy
    sync = cupy.cuda.Device().synchronize
    rows = []
    for n in ([2000] if args.quick else [2000, 10_000]):
        x = cupy.asarray(rng.standard_normal((n, 100)), dtype=cupy.float32)
        kernel = _kernel(FC_CONFIG, block_size=4096)
        ours = harness.measure(lambda: kernel.kernels(x), args.repeats, sync=sync).median
        floor = _gpu_floor(x, FC_CONFIG["depth"] + 1, args.repeats)
        rows.append(_gpu_row(f"FC depth 3 ReLU, {n}×{n}, d=100", ours, floor))
    n_img = 20 if args.quick else 200
    images = cupy.asarray(rng.standard_normal((n_img, 3, 32, 32)), dtype=cupy.float32)
    kernel = _kernel(CONV_CONFIG, memory_budget=2 ** 31)
    ours = harness.measure(lambda: kernel.kernels(images), args.repeats, sync=sync).median
    flat = cupy.reshape(cupy.transpose(images, (0, 2, 3, 1)), (-1, 3))
    floor = _gpu_floor(flat, CONV_CONFIG["depth"] + 1, args.repeats)
    rows.append(_gpu_row(f"Conv depth 3 GAP ReLU, {n_img} images 3×32×32", ours, floor))
    return rows


def _gpu_row(case: str, ours: float, floor: float) -> list:
    """A float32 GPU table row: no peer, the floor time and our multiple of it in the note."""
    return [case, "GPU", "float32", harness.format_seconds(ours), "-", "-",
            f"floor {harness.format_seconds(floor)} ({ours / floor:.1f}× floor)"]


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare bench analytic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2000-point FC only, 12 conv images, 4 stax images 3×16×16 (GPU: 8 "
                             "images 3×32×32) (not for the table)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run neural-tangents")
    parser.add_argument("--conv-images", type=int, default=200, help="images in the CPU conv case")
    parser.add_argument("--fused-images", type=int, default=8,
                        help="images 3×32×32 in the fused-vs-reference conv case (the reference takes "
                             "~0.17 s per image pair on 2 cores)")
    parser.add_argument("--stax-images", type=int, default=10,
                        help="images in the kernels.stax cases (the reference chain takes ~7 s for 10 images "
                             "3×32×32 on 2 cores)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="cpu: the CPU cases only; cuda: the GPU cases only; auto (default): both, GPU if found")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.conv_images < 2 or args.fused_images < 1 or args.stax_images < 1:
        parser.error("--repeats must be >= 1, --conv-images >= 2, --fused-images >= 1 and --stax-images >= 1")
    from kernels import gpu_available
    if args.device == "cuda" and not gpu_available():
        parser.error("--device cuda: CuPy is not installed or sees no GPU")
    args.argv = list(argv)
    print(run(args))
    return 0
