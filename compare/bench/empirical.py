"""Benchmark: empirical NTK (``python -m compare bench empirical [--quick] [--repeats R] [--skip-cnn]``).

1. MLP 100 → 1024 → 1024 → 1 (ReLU, no bias), 500 inputs, float32: lazykit's "structured" and "jacobian"
   against the torch.func NTK tutorial's Jacobian contraction (``vmap(jacrev)`` then ``einsum``) and against
   neural-tangents' structured derivatives (a peer in its own venv, compare/bench/peers.py), all in the same
   run, plus the matrix-product floor: the same-shape matmuls of the forward pass, the backward signals and
   the per-layer Gram matrices, timed on their own.
2. CNN (3 conv layers of 64 channels, 3×32×32 inputs, GAP, 10 outputs): time and peak memory of each method,
   each in a fresh subprocess (its peak resident set, VmHWM in /proc/self/status, minus its resident set
   VmRSS after the model and data were built; not ``ru_maxrss``, which on Linux carries the parent's
   high-water mark across fork + exec). "ntvp" costs ≈ N·O vjp+jvp pairs over the whole batch (N²·O forward passes),
   so it runs only on a small batch.
3. With a CUDA GPU: the MLP and the CNN on the GPU (peak memory from ``torch.cuda.max_memory_allocated``).

Times are medians of ``--repeats`` runs after one warm-up (compare/bench/harness.py). The script also runs as
a worker: ``--child`` (one CNN measurement) and ``--nt-worker`` (neural-tangents, run by its venv's Python).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

MLP = dict(n=500, d=100, width=1024)
# --quick: the per-sample Jacobians of the tutorial and of "jacobian" hold n·P floats per side (P ≈ 1.15 M at
# width 1024: 2.3 GB each for 500 inputs); width 256 and 100 inputs hold 37 MB, so a smoke run stays small
MLP_QUICK = dict(n=100, d=100, width=256)
# --quick CNN: 16 channels (P ≈ 5 k instead of 76 k), 16 inputs in 2 blocks, "ntvp" on 4 inputs (N²·O passes);
# with --quick's one torch thread the whole run costs ~30 s of CPU time, under 0.5 GB
CNN_QUICK = dict(n=16, channels=16, small_n=4)
CNN = dict(n=256, channels=64, size=32, outputs=10)
CNN_SMALL_N = 8        # batch on which every method, "ntvp" included, is timed
NT_CLAIM = "0.038 s (docs/conventions.md, Benchmarks: measured on this kind of 2-core machine)"


# ----------------------------------------------------------------------------------------------- models
def mlp_model(d, width, device="cpu", dtype=None):
    import torch
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(d, width, bias=False), nn.ReLU(), nn.Linear(width, width, bias=False),
                        nn.ReLU(), nn.Linear(width, 1, bias=False))
    return net.to(device=device, dtype=dtype or torch.float32)


def cnn_model(channels, outputs, device="cpu"):
    import torch
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, outputs))
    return net.to(device)


def tutorial_ntk(net, x1, x2):
    """The torch.func NTK tutorial's method: per-sample Jacobians by vmap(jacrev) over functional_call, one
    einsum per parameter tensor, summed; returns (n1, n2, O, O)."""
    import torch
    from torch.func import functional_call, jacrev, vmap
    params = {name: p.detach() for name, p in net.named_parameters()}

    def single(p, x):
        return functional_call(net, p, (x.unsqueeze(0),)).squeeze(0)

    def jac(x):
        return [j.flatten(2) for j in vmap(jacrev(single), (None, 0))(params, x).values()]

    return sum(torch.einsum("Naf,Mbf->NMab", a, b) for a, b in zip(jac(x1), jac(x2)))


# ----------------------------------------------------------------------------------------------- MLP
def mlp_floor(n, d, width, device, dtype):
    """(fn, flops): the matmuls "structured" cannot avoid, on random operands of the same shapes.

    forward: X W1ᵀ, H1 W2ᵀ, H2 W3ᵀ; backward signals ∂f/∂y2 = (∂f/∂y3) W3 and ∂f/∂y1 = (∂f/∂y2 ⊙ relu') W2;
    Gram matrices, per layer, of its inputs (X, H1, H2) and of its output gradients (G1, G2, G3).
    """
    import torch
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape):
        return torch.randn(shape, generator=g, device=device, dtype=dtype)

    x, h1, h2, g1, g2, g3 = r(n, d), r(n, width), r(n, width), r(n, width), r(n, width), r(n, 1)
    w1, w2, w3 = r(width, d), r(width, width), r(1, width)
    products = [(x, w1.T), (h1, w2.T), (h2, w3.T), (g3, w3), (g2, w2),
                (x, x.T), (g1, g1.T), (h1, h1.T), (g2, g2.T), (h2, h2.T), (g3, g3.T)]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)

    def fn():
        for a, b in products:
            a @ b
    return fn, flops


def bench_mlp(device, repeats, nt, sizes=None):
    import numpy as np
    import torch
    from compare.bench.harness import format_seconds, format_table, measure
    from kernels import empirical_ntk, to_numpy
    sizes = sizes or MLP
    n, d, width = sizes["n"], sizes["d"], sizes["width"]
    net = mlp_model(d, width, device)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1)).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    floor_fn, flops = mlp_floor(n, d, width, device, torch.float32)
    runs = {
        "torch.func tutorial (vmap(jacrev) + einsum)": lambda: tutorial_ntk(net, x, x),
        "lazykit jacobian": lambda: empirical_ntk(net, x, method="jacobian"),
        "lazykit structured": lambda: empirical_ntk(net, x, method="structured"),
        "matmul floor (same shapes)": floor_fn,
    }
    times = {name: measure(fn, repeats=repeats, sync=sync).median for name, fn in runs.items()}
    reference = to_numpy(tutorial_ntk(net, x, x)[:, :, 0, 0])
    ours = to_numpy(empirical_ntk(net, x, method="structured"))
    agreement = float(np.abs(ours - reference).max() / np.abs(reference).max())
    base, floor = times["torch.func tutorial (vmap(jacrev) + einsum)"], times["matmul floor (same shapes)"]
    if nt is not None and device == "cpu":
        nt_times = nt_empirical_times(nt, n, d, width, repeats)
        if nt_times is not None:
            times["neural-tangents structured (peer)"] = float(np.median(nt_times))
    rows = [[name, format_seconds(t), f"{base / t:.1f}×", f"{t / floor:.2f}"] for name, t in times.items()]
    lines = [f"MLP {d}→{width}→{width}→1 (ReLU, no bias), {n} inputs, float32, {device}; Θ (n×n, symmetric)",
             "", format_table(["method", "median time", "speed-up vs tutorial", "time / floor"], rows), "",
             f"Floor: {flops / 1e9:.2f} GFLOP of matmuls (forward {_mlp_part(n, d, width, 'forward')}, "
             f"backward signals {_mlp_part(n, d, width, 'backward')}, Gram matrices {_mlp_part(n, d, width, 'gram')})"
             f" at {flops / floor / 1e9:.0f} GFLOP/s measured here = {format_seconds(floor)}.",
             f"structured vs tutorial: max relative difference {agreement:.1e} (float32).",
             f"Goals: ≥ 50× faster than the tutorial → {base / times['lazykit structured']:.0f}×; "
             f"≤ 1.5× the floor → {times['lazykit structured'] / floor:.2f}×."]
    if "neural-tangents structured (peer)" not in times and device == "cpu":
        lines.append(f"neural-tangents: not run here (not installed, failed or --skip-peer); its structured "
                     f"derivatives took {NT_CLAIM}.")
    return "\n".join(lines)


def _mlp_part(n, d, w, part):
    flops = {"forward": 2 * n * (d * w + w * w + w), "backward": 2 * n * (w + w * w),
             "gram": 2 * n * n * (d + 4 * w + 1)}[part]
    return f"{flops / 1e9:.2f}"


# ----------------------------------------------------------------------------------------------- CNN
def cnn_child(spec):
    """One CNN measurement: times and peak memory above the post-setup baseline (run in a fresh process on
    the CPU; in-process on the GPU, where the allocator's peak counter is reset here)."""
    import torch
    from compare.bench.harness import measure
    from kernels import empirical_ntk
    device = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    net = cnn_model(spec.get("channels", CNN["channels"]), CNN["outputs"], device)
    x = torch.randn(spec["n"], 3, CNN["size"], CNN["size"], generator=torch.Generator().manual_seed(2)).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _proc_status_bytes("VmRSS")
    timing = measure(lambda: empirical_ntk(net, x, method=spec["method"], block_size=spec.get("block_size")),
                     repeats=spec["repeats"], sync=sync)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _proc_status_bytes("VmHWM") - base
    n_params = sum(p.numel() for p in net.parameters())
    return {"median": timing.median, "peak_bytes": peak, "params": n_params}


def _proc_status_bytes(field):
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status (peak memory is measured on Linux only)")


def run_child(spec, timeout=3600):
    proc = subprocess.run([sys.executable, "-m", "compare.bench.empirical", "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"CNN measurement {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_cnn(device, repeats, quick, threads=None):
    from compare.bench.harness import format_seconds, format_table
    n_big, c, n_small = ((CNN_QUICK["n"], CNN_QUICK["channels"], CNN_QUICK["small_n"]) if quick
                         else (CNN["n"], CNN["channels"], CNN_SMALL_N))
    cases = [(n_big, "jacobian", None), (n_big, "structured", None),
             (n_big, "structured", n_big // (2 if quick else 4)), (n_small, "ntvp", None)]
    if not quick:  # every method on the small batch too (each case costs a fresh process: ~3 s of imports)
        cases[3:3] = [(n_small, "jacobian", None)]
        cases.append((n_small, "structured", None))
    rows, budget, o = [], None, CNN["outputs"]
    for n, method, block in cases:
        spec = {"device": device, "n": n, "method": method, "repeats": repeats, "block_size": block,
                "channels": c, "threads": threads}
        # CPU: a fresh process per case, so that its peak RSS is this case's; GPU: the allocator's own peak
        r = cnn_child(spec) if device == "cuda" else run_child(spec)
        jac_bytes = n * o * r["params"] * 4
        if n == n_big:
            budget = jac_bytes
        rows.append([n, method, block or "-", format_seconds(r["median"]), f"{r['peak_bytes'] / 2**20:.0f} MiB",
                     f"{jac_bytes / 2**20:.0f} MiB"])
    how = ("torch.cuda.max_memory_allocated" if device == "cuda"
           else "peak resident set (VmHWM) of a fresh process minus its resident set after setup")
    s = CNN["size"]
    return "\n".join([
        f"CNN 3×{s}×{s} → conv3×3({c}) → conv3×3({c}, stride 2) → conv3×3({c}, stride 2) → GAP → dense({o}), "
        f"ReLU, float32, {device}, output='mean', x2=None", "",
        format_table(["inputs", "method", "block_size", "median time", "peak memory", "N×O×P floats"], rows), "",
        f"Peak memory: {how}. The last column is the size of the full Jacobian J (N×O×P, float32) that "
        f"\"jacobian\" materialises; \"structured\" holds per layer one output's per-sample weight gradients "
        f"(N×P_layer) and the activations, so it must stay below it ({budget / 2**20:.0f} MiB at N = {n_big}); "
        f"block_size bounds it further (activations of two blocks), at the price of recomputing each block's "
        f"forward and backward passes once per pair of blocks."])


# ----------------------------------------------------------------------------------------------- peer
def _peers():
    from compare.bench import peers
    return peers


def nt_empirical_times(python, n, d, width, repeats):
    """neural-tangents' empirical NTK (structured derivatives, jitted, float32) of the same MLP, run by the
    interpreter ``python`` of its venv; None (with the reason on stderr) when that fails."""
    task = {"n": n, "d": d, "width": width, "repeats": repeats}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    proc = subprocess.run([python, os.path.abspath(__file__), "--nt-worker", json.dumps(task)],
                          capture_output=True, text=True, timeout=1800, env=env)
    if proc.returncode != 0:
        print(f"neural-tangents worker failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["times"]


def nt_worker(task):
    """Runs under the neural-tangents venv: time ``empirical_ntk_fn`` (STRUCTURED_DERIVATIVES) on the MLP."""
    import time

    import jax
    import neural_tangents as nt
    from neural_tangents import stax
    n, d, width = task["n"], task["d"], task["width"]
    init_fn, apply_fn, _ = stax.serial(stax.Dense(width, b_std=None), stax.Relu(),
                                       stax.Dense(width, b_std=None), stax.Relu(), stax.Dense(1, b_std=None))
    key = jax.random.PRNGKey(0)
    _, params = init_fn(key, (-1, d))
    x = jax.random.normal(jax.random.PRNGKey(1), (n, d))
    ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                         implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
    ntk_fn(x, None, params).block_until_ready()  # warm-up (compiles)
    times = []
    for _ in range(task["repeats"]):
        start = time.perf_counter()
        ntk_fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - start)
    print(json.dumps({"times": times}))


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m compare bench empirical", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case after one warm-up (>= 5 "
                                                                "for reported figures)")
    parser.add_argument("--quick", action="store_true", help="smoke run (under a minute and 1 GB; its figures are not the published ones): 2 repeats, "
                             "MLP width 256 on 100 inputs, CNN with 16 channels on 16 inputs")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads (default: torch's own, all cores; 1 with --quick, since small "
                             "products on a busy machine slow down many-fold with more threads than free cores)")
    parser.add_argument("--skip-cnn", action="store_true", help="only the MLP table(s)")
    parser.add_argument("--skip-mlp", action="store_true", help="only the CNN table(s)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run neural-tangents")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="'all': the CPU, and the GPU when torch sees one")
    args = parser.parse_args(argv)
    import torch
    from compare.bench.harness import machine_info
    repeats = 2 if args.quick else args.repeats
    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads is not None:
        if threads < 1:
            parser.error(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device (use --device cpu, or all: the GPU when there is one)")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [dev for dev in devices if dev == "cpu" or torch.cuda.is_available()]
    nt = None if args.skip_peer else _peers().nt_python()
    if nt is not None and not os.path.exists(nt):
        nt = None
    command = "python -m compare bench empirical " + " ".join(argv or [])
    print(f"# Empirical NTK benchmark\n\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"`{command.strip()}`; {machine_info()}; torch threads {torch.get_num_threads()}; load average "
          f"{os.getloadavg()[0]:.1f} at start; median of {repeats} runs after 1 warm-up.\n", flush=True)
    for device in devices:
        if not args.skip_mlp:
            print(bench_mlp(device, repeats, nt, MLP_QUICK if args.quick else MLP) + "\n", flush=True)
        if not args.skip_cnn:
            print(bench_cnn(device, repeats, args.quick, threads) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--nt-worker":
        nt_worker(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(cnn_child(json.loads(sys.argv[2]))))
    else:
        sys.exit(main(sys.argv[1:]))
