"""Benchmark: analytic NNGP + NTK (``kernels.FullyConnected`` / ``Convolutional``) against neural-tangents.

``python -m compare bench analytic [--repeats 5] [--quick] [--skip-peer] [--conv-images 200] [--fused-images 8]
[--device auto]``

Cases (CPU): depth-3 ReLU FC kernel of 2000 inputs (d = 100) with itself in float32 and float64, the
same for 10,000 inputs, and a depth-3 GAP ReLU conv kernel of 200 images 3×16×16 with itself. The peer is
neural-tangents ``stax`` (jitted ``kernel_fn``, float64 through ``jax_enable_x64``; ``nt.batch`` for the
large cases), run in its own venv by ``compare.bench.peers`` in the same session. With a GPU, the FC and
conv (3×32×32) cases also run on CuPy, next to a floor: the time of the Gram product x1·x2ᵀ plus one
read and write of the output per layer. ``--device cpu`` runs only the CPU cases, ``--device cuda`` only the
GPU ones (an error without a GPU), ``auto`` (default) the CPU cases and, with a GPU, the GPU ones.

A second table (CPU cases) compares the fused CPU loop (``cpu_impl="fused"``, kernels/_analytic_cpu.py) with
the NumPy reference chain (``cpu_impl="reference"``, the implementation before it) on the same inputs: the
depth-3 GAP ReLU conv kernel of ``--fused-images`` images 3×32×32 in float64, and the FC case above, next
to neural-tangents and to the arithmetic floor of ``compare.bench.cpu_floor`` (the operations per pixel
pair and layer × pixel pairs × layers at this machine's measured rates, over all cores).
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
             f"machine: {harness.machine_info()}",
             f"command: python -m compare bench analytic {' '.join(args.argv)}".rstrip(),
             f"median of {args.repeats} repeats after 1 warm-up; both kernels (NNGP and NTK) of x with itself; "
             "speed-up = neural-tangents time / lazykit time, measured in the same run", "",
             harness.format_table(header, rows)]
    if args.device in ("auto", "cpu"):
        lines += ["", *_fused_table(args, rng)]
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
                        help="smoke run: 2000-point FC only, 12 conv images (not for the table)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run neural-tangents")
    parser.add_argument("--conv-images", type=int, default=200, help="images in the CPU conv case")
    parser.add_argument("--fused-images", type=int, default=8,
                        help="images 3×32×32 in the fused-vs-reference conv case (the reference takes "
                             "~0.17 s per image pair on 2 cores)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="cpu: the CPU cases only; cuda: the GPU cases only; auto (default): both, GPU if found")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.conv_images < 2 or args.fused_images < 1:
        parser.error("--repeats must be >= 1, --conv-images >= 2 and --fused-images >= 1")
    from kernels import gpu_available
    if args.device == "cuda" and not gpu_available():
        parser.error("--device cuda: CuPy is not installed or sees no GPU")
    args.argv = list(argv)
    print(run(args))
    return 0
