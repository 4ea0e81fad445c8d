"""The options of ``python -m compare EXPERIMENT`` and their resolution into a :class:`compare.experiment.Config`.

The options are the same for every experiment; their help text names the experiment's data sets and presets
(with the hardware each preset is meant for and its wall time as ``python -m compare bench readme`` measured it). The device is resolved here, once: "auto" becomes "cuda" when torch sees
a GPU, else "cpu", and every run of the sweep carries the result.
"""
from __future__ import annotations

import argparse
import os

from kernels import check_choice

from compare.experiment import Config, Experiment
from compare.overrides import parse_override

DEVICES = ("auto", "cpu", "cuda")


def build_parser(experiment: Experiment) -> argparse.ArgumentParser:
    """The parser of ``python -m compare NAME``: the shared options, described for this experiment."""
    parser = argparse.ArgumentParser(prog=f"python -m compare {experiment.name}", description=experiment.summary,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    presets, datasets, default = experiment.presets, experiment.datasets, experiment.default_dataset
    timing = preset_help(experiment.name, presets)
    parser.add_argument("--dataset", default=default, metavar="NAME",
                        help=f"data set, one of: {', '.join(datasets)} (default {default})")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help=f"folders holding downloaded data sets (CIFAR-10, Fashion-MNIST), searched in order, "
                             f"separated by {os.pathsep!r}; see compare.data")
    parser.add_argument("--preset", default="quick", metavar="NAME",
                        help=f"size of the sweep, one of {', '.join(presets)} ({timing})")
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
    parser.add_argument("--gram-store", default=None, metavar="DIR",
                        help="keep the kernel rows' Gram matrices in resumable stores under DIR (kernels.gram; "
                             "shared by runs and reruns; with --backend dask their tiles run on the cluster)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def preset_help(experiment: str, presets: dict) -> str:
    """Each preset's hardware and its wall time as `python -m compare bench readme` last measured it
    (docs/figures.json): --help quotes no time that script did not measure."""
    from compare.bench.readme import preset_time
    parts = []
    for name, p in presets.items():
        measured = preset_time(experiment, name)
        parts.append(f"{name}: for {p.hardware}, " + (measured or "time not measured yet (python -m compare "
                                                                  f"bench readme --presets {name})"))
    return "; ".join(parts)


def resolve_preset(presets: dict, args) -> dict:
    """The settings of the preset named by --preset, with --seeds and --set overrides applied (validated)."""
    check_choice(args.preset, "preset", tuple(presets))
    settings = dict(presets[args.preset].settings)
    for item in args.overrides:
        key, value = parse_override(item, presets)
        settings[key] = value
    if args.seeds is not None:
        if isinstance(args.seeds, bool) or args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        settings["seeds"] = args.seeds
    return settings


def resolve_device(device: str) -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"; "cuda" without one is an error."""
    import torch
    check_choice(device, "device", DEVICES)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def resolve_threads(args) -> int:
    """--threads, else the CPU cores shared out among --jobs workers (at least 1)."""
    if args.threads is None:
        return max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    return args.threads


def resolve(experiment: Experiment, args) -> Config:
    """The :class:`Config` the options describe (a bad name or value: ValueError naming it)."""
    check_choice(args.dataset, "dataset", experiment.datasets)
    params = resolve_preset(experiment.presets, args)
    return Config(experiment.name, args.dataset, args.preset, params, resolve_device(args.device), args.data_dir)
