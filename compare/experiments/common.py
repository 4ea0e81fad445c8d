"""What every experiment shares: command-line options, presets, and the path sweep → report → summary."""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

from kernels.validation import check_choice

from compare.overrides import parse_override
from compare.tables import format_table

PRESETS = ("quick", "full", "paper")


def add_common_arguments(parser: argparse.ArgumentParser, datasets, default_dataset: str, presets: dict):
    """The options of ``python -m compare EXPERIMENT`` (identical for every experiment)."""
    timing = "; ".join(f"{name}: {p['expected']}" for name, p in presets.items())
    parser.add_argument("--dataset", default=default_dataset, metavar="NAME",
                        help=f"data set, one of: {', '.join(datasets)} (default {default_dataset})")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder holding downloaded data sets (CIFAR-10, Fashion-MNIST); see compare.data")
    parser.add_argument("--preset", default="quick", metavar="NAME",
                        help=f"size of the sweep, one of {', '.join(presets)} (expected time — {timing})")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output directory for results.jsonl, config.json, report.md and plots "
                             "(default results/EXPERIMENT-DATASET-PRESET)")
    parser.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="parallel runs through joblib (default 1; -1 = all cores)")
    parser.add_argument("--backend", default="loky", metavar="NAME", help="loky (local) or dask (default loky)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="dask scheduler address, e.g. tcp://127.0.0.1:8786 (with --backend dask)")
    parser.add_argument("--seeds", type=int, default=None, metavar="K",
                        help="number of seeds per configuration (default: the preset's)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="skip runs already in DIR/results.jsonl (default); --no-resume sets old results "
                             "aside and starts afresh")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one preset entry, e.g. --set n_train=200 --set scales=[1,100] "
                             "(repeatable; values are Python literals)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads per run (default: CPU cores / jobs, at least 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve_preset(presets: dict, args) -> dict:
    """The preset named by --preset, with --seeds and --set overrides applied (validated)."""
    if args.preset not in presets:
        raise ValueError(f"unknown preset {args.preset!r}; valid: {', '.join(presets)}")
    preset = {k: v for k, v in presets[args.preset].items() if k != "expected"}
    for item in args.overrides:
        key, value = parse_override(item, presets)
        preset[key] = value
    if args.seeds is not None:
        if isinstance(args.seeds, bool) or args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        preset["seeds"] = args.seeds
    return preset


def resolve_torch_device(device: str) -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"; "cuda" without one is an error."""
    import torch
    check_choice(device, "device", ("auto", "cpu", "cuda"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def with_threads(run_one, threads: int, config: dict) -> dict:
    """Run one configuration with torch limited to ``threads`` intra-op threads (oversubscribed cores make
    small matrix products orders of magnitude slower)."""
    import torch
    torch.set_num_threads(threads)
    return run_one(config)


def execute(args, experiment: str, presets: dict, datasets, plan, run_one, intro: str = "") -> int:
    """Validate the options, plan the sweep, run it (resuming), write the report, print the summary.

    ``plan(preset, args, device) -> (configs, sweep_config)``; ``run_one(config) -> row`` runs one config.
    ``sweep_config`` holds every setting shared by the runs but not the sweep's axes (seeds, α, τ, d, models):
    rerunning with more seeds or another grid reuses the finished runs, while a changed setting (sizes,
    steps, widths, device...) is refused by the runner rather than mixed.
    Bad options print one clear error line and return 2.
    """
    from compare import report, runner
    try:
        check_choice(args.dataset, "dataset", datasets)
        check_choice(args.backend, "backend", runner.BACKENDS)
        preset = resolve_preset(presets, args)
        device = resolve_torch_device(args.device)
        configs, sweep_config = plan(preset, args, device)
        out = Path(args.out or f"results/{experiment}-{args.dataset}-{args.preset}")
        start = time.perf_counter()
        threads = args.threads if args.threads is not None else max(1, (os.cpu_count() or 1) // max(1, args.jobs))
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        func = functools.partial(with_threads, run_one, threads)
        rows = runner.run_sweep(func, configs, out, sweep_config, jobs=args.jobs, backend=args.backend,
                                scheduler=args.scheduler, resume=args.resume, device=device,
                                progress=not args.quiet, desc=experiment)
    except (ValueError, ConnectionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = report.write_report(out, experiment, rows, sweep_config, intro=intro)
    headers, body = report.summary_table(rows, paper=experiment == "table")
    print(f"\n{experiment} on {args.dataset} ({args.preset} preset, {len(rows)} runs, "
          f"{time.perf_counter() - start:.0f} s, device {device}):\n")
    print(format_table(headers, body, style="text"))
    print(f"\nreport: {path}")
    return 0


def teacher_student_tensors(config: dict):
    """The float64 teacher–student split for ``config`` (n_train, n_test, d, seed) and its torch tensors on
    ``config["device"]``: ``(ds, X_train, X_test, y_train)`` with ``y_train`` of shape (n_train, 1)."""
    import numpy as np
    import torch
    from compare import data
    ds = data.load("teacher-student", n_train=config["n_train"], n_test=config["n_test"], d=config["d"],
                   seed=config["seed"], dtype="float64")
    X_train, X_test = (torch.as_tensor(x, device=config["device"]) for x in (ds.X_train, ds.X_test))
    y_train = torch.as_tensor(np.reshape(ds.y_train, (-1, 1)), device=config["device"])
    return ds, X_train, X_test, y_train


def load_split(dataset, n_train, n_test, seed, data_dir=None, classes=None, **kwargs):
    """``compare.data.load`` with sizes capped at what a scikit-learn set holds, and image archives decoded
    only as far as needed (``first_per_class``)."""
    from compare import data
    if dataset in data.IMAGE_DATASETS:
        n_kept = len(classes) if classes else 10
        kwargs["first_per_class"] = -(-max(n_train or 0, n_test or 0) // n_kept) or None
    else:
        full = data.load(dataset, seed=seed)
        n_train = None if n_train is None or n_train >= full.n_train else n_train
        n_test = None if n_test is None or n_test >= full.n_test else n_test
    return data.load(dataset, n_train=n_train, n_test=n_test, seed=seed, data_dir=data_dir,
                     classes=list(classes) if classes else None, **kwargs)
