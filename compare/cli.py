"""The lazykit command line: ``python -m compare [EXPERIMENT | bench NAME | gpu-check | data ...]``.

An experiment's command resolves the options once (:mod:`compare.options`: preset, overrides, device), lets the
experiment plan its runs, runs them through :func:`compare.sweep.sweep.run_sweep` (resuming), writes the report and
prints the summary. Experiments come from the registry (:mod:`compare.experiments`).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import sys
import time
from pathlib import Path

from kernels import check_choice, check_writable

from compare import experiments, grams, options
from compare.present import report
from compare import sweep
from compare.bench import BENCHMARKS, FIGURE_SCRIPTS
from compare.present.tables import format_table

DEFAULT_EXPERIMENT = "equivalence"
TOOLS = {"bench": None, "gpu-check": "compare.gpu.check", "data": "compare.data.cli"}

USAGE = """python -m compare [EXPERIMENT] [options]     run an experiment (default: equivalence, quick preset, digits)
       python -m compare bench NAME [options]      benchmark against peers measured in the same run
       python -m compare gpu-check [--data-dir D]  GPU tests and benchmarks in one short call
       python -m compare data install NAME         fetch a dataset that does not ship with a dependency"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compare", usage=USAGE,
        description="lazykit: lazy training vs kernel methods, side by side.",
        epilog="subcommands:\n"
               + "".join(f"  {name:<17} {experiments.get(name).one_line}\n" for name in experiments.names())
               + f"  {'bench':<17} benchmarks: {', '.join(BENCHMARKS)}; `bench readme` reruns the figures of README.md and the docs\n"
               + f"  {'gpu-check':<17} run tests/gpu and the GPU benchmarks, print a table naming the card\n"
               + f"  {'data':<17} `data install fashion-mnist`, `data list`\n"
               + "\nRun `python -m compare SUBCOMMAND --help` for a subcommand's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def main(argv=None) -> int:
    """Run the command line; Ctrl-C prints one line (how many runs were saved, how to resume) and returns 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130


def _main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0
    if argv and argv[0] in TOOLS:
        return _run_tool(argv[0], argv[1:])
    name = DEFAULT_EXPERIMENT
    if argv and not argv[0].startswith("-"):
        name, argv = argv[0], argv[1:]
    if name not in experiments.names():
        valid = ", ".join(experiments.names() + list(TOOLS))
        print(f"error: unknown experiment or subcommand {name!r}; valid: {valid}", file=sys.stderr)
        return 2
    experiment = experiments.get(name)
    return run_experiment(experiment, options.build_parser(experiment).parse_args(argv))


def with_threads(run_one, threads: int, run, memo=None) -> dict:
    """Run one run with torch's intra-op threads and the BLAS threads (NumPy, SciPy) both set to ``threads``
    (oversubscribed cores make small matrix products orders of magnitude slower). The count is recorded in every
    row: reductions summed by another number of threads differ in their last digits (1e-13 between --jobs 1 and
    --jobs 2 rows), so a sweep never mixes counts (``compare.sweep.run_sweep(threads=)``)."""
    import threadpoolctl
    import torch
    torch.set_num_threads(threads)
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        return run_one(run, memo)


def choose_threads(args, out, default: int) -> int:
    """--threads, else the count the rows already in ``out`` were computed with (so a resume with another --jobs
    does not mix counts), else ``default`` (the cores shared out among --jobs workers, ``options.resolve_jobs``)."""
    if args.threads is None and args.resume:
        recorded = sweep.recorded_threads(out)
        if len(recorded) == 1:
            return recorded.pop()
    return args.threads if args.threads is not None else default


def overridden_keys(args) -> set:
    """The preset keys given with --set."""
    return {item.partition("=")[0].strip() for item in args.overrides}


def with_data_identity(runs, config):
    """The runs with the content checksum of a file data set (``data_sha256``) in their params: the runner
    leaves ``data_dir`` out of run keys and fingerprints, so the same files found another way resume the same
    sweep, and other files in the same folder are refused."""
    from compare import data
    if config.dataset not in data.IMAGE_DATASETS:
        return runs
    digest = data.content_sha256(config.dataset, config.data_dir)
    return [run.replace(params={**run.params, "data_sha256": digest}) for run in runs]


def resolved_execution(config, args) -> dict:
    """How the sweep executes, as resolved once (kept in DIR/config.json beside the fingerprinted settings, and
    printed by --dry-run): the devices of nets and kernels, local workers, torch threads per worker."""
    return {"devices": config.devices, "jobs": config.jobs if args.backend == "loky" else None,
            "threads": config.threads, "backend": args.backend, "scheduler": args.scheduler}


def devices_notice(config):
    """One line when the nets and the kernels run on different devices (None when they agree)."""
    from kernels import Devices
    return Devices(config.device, config.kernels_device).notice()


def dry_run(experiment, config, runs, out: Path, resolved: dict) -> dict:
    """What a run of this command would do, without running or writing anything: the resolved execution, the
    number of runs (and how many are already finished in ``out``), the out folder, the preset's settings."""
    done = 0
    results = out / sweep.RESULTS
    if results.is_file():
        finished = {row.get("run_key") for row in sweep.read_results(results)}
        done = sum(sweep.run_key(run.config()) in finished for run in runs)
    return {"experiment": experiment.name, "dataset": config.dataset, "preset": config.preset, **resolved,
            "runs": len(runs), "runs_finished": done, "out": str(out), "params": sweep.to_jsonable(config.params),
            "notice": devices_notice(config)}


def run_experiment(experiment, args) -> int:
    """Validate the options, plan the sweep, run it (resuming), write the report, print the summary.

    The sweep's configuration (fingerprinted in DIR/config.json) holds every setting the runs share but not
    the experiment's axes (seeds, α, τ, d, models): rerunning with more seeds or another grid reuses the
    finished runs, while a changed setting (sizes, steps, widths, device...) is refused by the runner rather
    than mixed. Bad options print one clear error line and return 2.
    """
    try:
        check_choice(args.backend, "backend", sweep.BACKENDS)
        config = options.resolve(experiment, args)
        # every option is checked before the data are looked for: a bad value is named even where the data
        # set is missing
        planned = experiment.plan(config)
        if args.scheduler and args.backend != "dask":
            raise ValueError("--scheduler is only used with --backend dask")
        out = Path(args.out or f"results/{experiment.name}-{args.dataset}-{args.preset}")
        check_writable(out, "--out", directory=True)
        if args.gram_store is not None:
            check_writable(args.gram_store, "--gram-store", directory=True)
        sizes, notes = options.data_sizes(args.dataset, config.params, args.data_dir, overridden_keys(args))
        runs = with_data_identity(planned, config)
        sweep_config = experiment.sweep_config(runs)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        config = dataclasses.replace(config, threads=choose_threads(args, out, config.threads))
        resolved = resolved_execution(config, args)
        if sizes:                            # what ran, once capped by the data (beside the fingerprint)
            resolved["data_sizes"] = sizes
        if args.dry_run:
            print(json.dumps(dry_run(experiment, config, runs, out, resolved), indent=2))
            return 0
        notice = devices_notice(config)
        if notice:
            print(notice, file=sys.stderr)
        start = time.perf_counter()
        func = functools.partial(with_threads, experiment.run_one, config.threads)
        if args.gram_store is not None:     # where the kernel matrices live, not part of the runs' identity
            func = functools.partial(grams.with_gram_store, func, args.gram_store)
        rows = sweep.run_sweep(func, runs, out, sweep_config, jobs=config.jobs, backend=args.backend,
                               scheduler=args.scheduler, resume=args.resume, device=config.device,
                               progress=not args.quiet, desc=experiment.name, shared_work=experiment.shared_work,
                               resolved=resolved, threads=config.threads)
    except (ValueError, ConnectionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = report.write_report(out, experiment, rows, sweep_config, intro=experiment.summary)
    headers, body = report.summary_table(rows, experiment)
    print(f"\n{experiment.name} on {args.dataset} ({args.preset} preset, {len(rows)} runs, "
          f"{time.perf_counter() - start:.0f} s, device {config.device}):\n")
    print(format_table(headers, body, style="text"))
    note = experiment.notes(rows) if experiment.notes else None
    if note:
        print(f"\n{note}")
    print(f"\nreport: {path}")
    return 0


def _run_tool(tool: str, argv: list) -> int:
    if tool == "bench":
        if not argv or argv[0] in ("-h", "--help"):
            lines = [f"  {b.name:<10} {b.summary}" for b in {**BENCHMARKS, **FIGURE_SCRIPTS}.values()]
            print("usage: python -m compare bench NAME [options]   (NAME --help: its options)\n" + "\n".join(lines))
            return 0 if argv else 2
        modules = {**BENCHMARKS, **FIGURE_SCRIPTS}
        if argv[0] not in modules:
            print(f"error: unknown benchmark {argv[0]!r}; valid: {', '.join(modules)}", file=sys.stderr)
            return 2
        return int(importlib.import_module(modules[argv[0]].module).main(argv[1:]) or 0)
    return int(importlib.import_module(TOOLS[tool]).main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
