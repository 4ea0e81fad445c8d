"""The lazykit command line: ``python -m compare [EXPERIMENT | bench NAME | gpu-check | data ...]``."""
from __future__ import annotations

import argparse
import importlib
import sys

from compare.bench import BENCHMARKS

# experiment name on the command line -> module in compare.experiments (each exposes add_arguments/run)
EXPERIMENTS = {
    "equivalence": "compare.experiments.equivalence",
    "teacher-student": "compare.experiments.teacher_student",
    "rates": "compare.experiments.rates",
    "table": "compare.experiments.table",
}
DEFAULT_EXPERIMENT = "equivalence"
TOOLS = ("bench", "gpu-check", "data")

USAGE = """python -m compare [EXPERIMENT] [options]     run an experiment (default: equivalence, quick preset, digits)
       python -m compare bench NAME [options]      benchmark against peers measured in the same run
       python -m compare gpu-check [--data-dir D]  GPU tests and benchmarks in one short call
       python -m compare data install NAME         fetch a dataset that does not ship with a dependency"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compare", usage=USAGE,
        description="lazykit: lazy training vs kernel methods, side by side.",
        epilog="subcommands:\n"
               + "".join(f"  {name:<17} experiment\n" for name in EXPERIMENTS)
               + f"  {'bench':<17} benchmarks: {', '.join(BENCHMARKS)}\n"
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
    if name not in EXPERIMENTS:
        valid = ", ".join(list(EXPERIMENTS) + list(TOOLS))
        print(f"error: unknown experiment or subcommand {name!r}; valid: {valid}", file=sys.stderr)
        return 2
    module = importlib.import_module(EXPERIMENTS[name])
    parser = argparse.ArgumentParser(prog=f"python -m compare {name}", description=module.__doc__)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv)) or 0)


def _run_tool(tool: str, argv: list) -> int:
    if tool == "bench":
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: python -m compare bench NAME [options]\nbenchmarks: {', '.join(BENCHMARKS)}")
            return 0 if argv else 2
        if argv[0] not in BENCHMARKS:
            print(f"error: unknown benchmark {argv[0]!r}; valid: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        return int(importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:]) or 0)
    module = importlib.import_module({"gpu-check": "compare.gpu_check", "data": "compare.data"}[tool])
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
