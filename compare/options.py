"""The options of ``python -m compare EXPERIMENT`` and their resolution into a :class:`compare.experiment.Config`.

The options are the same for every experiment; their help text names the experiment's data sets and presets
(with the hardware each preset is meant for and its wall time as ``python -m compare bench readme`` measured it).

Everything a run depends on is resolved here, once, at the edge: the devices (``kernels.resolve_devices``: the
nets where torch sees a GPU, the kernels where CuPy does; every run carries both), the number of local workers
(``--jobs``, -1 = one per core) and the torch threads per worker (``--threads``, default: the cores shared out
among those workers). ``--dry-run`` prints the result as one JSON object.
"""
from __future__ import annotations

import argparse
import os

from kernels import DEVICES, check_choice, resolve_devices

from compare.experiment import Config, Experiment
from compare.overrides import parse_override



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
    parser.add_argument("--dry-run", action="store_true",
                        help="resolve every option and print the configuration (devices, jobs, threads, runs, out "
                             "folder) as one JSON object; run and write nothing")
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


def resolve_jobs(args) -> tuple:
    """(local worker processes, torch threads per worker), decided together: ``--jobs -1`` is one worker per
    core, and each worker's threads default to the cores shared out among the workers (at least 1), so
    workers × threads never exceeds the cores unless ``--threads`` asks for it."""
    jobs, threads = args.jobs, args.threads
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0 or jobs < -1:
        raise ValueError(f"--jobs must be a positive integer or -1 (all cores), got {jobs!r}")
    cores = os.cpu_count() or 1
    workers = cores if jobs == -1 else jobs
    if threads is None:
        return workers, max(1, cores // workers)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads!r}")
    return workers, threads


def resolve(experiment: Experiment, args) -> Config:
    """The :class:`Config` the options describe (a bad name or value: ValueError naming it)."""
    check_choice(args.dataset, "dataset", experiment.datasets)
    params = resolve_preset(experiment.presets, args)
    check_choice(args.device, "device", DEVICES)
    try:
        devices = resolve_devices(args.device)
    except ValueError as exc:
        raise ValueError(f"--device {args.device}: {exc}") from None
    jobs, threads = resolve_jobs(args)
    return Config(experiment.name, args.dataset, args.preset, params, devices.nets, args.data_dir,
                  kernel_device=devices.kernels, jobs=jobs, threads=threads)
