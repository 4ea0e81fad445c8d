"""``python -m compare data list`` and ``python -m compare data install NAME``."""
from __future__ import annotations

import argparse
import os
import sys

from kernels import check_choice

from compare.data.catalog import (DATASETS, DOWNLOADS, ENV_DATA_DIR, KIND_DESCRIPTIONS, SKLEARN_DATASETS,
                                  CorruptDataError)
from compare.data.install import install
from compare.data.locate import find
from compare.present.tables import format_table


def describe(name: str, data_dir=None) -> str:
    """Where ``name`` comes from now (for ``python -m compare data list``)."""
    check_choice(name, "dataset name", DATASETS)
    if name in SKLEARN_DATASETS:
        return f"scikit-learn (bundled: load_{name})"
    if name == "teacher-student":
        return "generated (no files)"
    found = find(name, data_dir)
    if found is None:
        how = "python -m compare data install " + name
        return f"not found (get it: `{how}`; or --data-dir DIR / {ENV_DATA_DIR})"
    path, kind = found
    return f"{path} ({KIND_DESCRIPTIONS[kind]})"


def main(argv=None) -> int:
    """``python -m compare data list [--data-dir DIR]`` / ``python -m compare data install NAME [--data-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m compare data",
                                     description="List the data sets and where each is found; install those that "
                                                 "do not ship with a dependency.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,install}")
    listing = commands.add_parser("list", help="the data sets and where each is found now")
    listing.add_argument("--data-dir", default=None, metavar="DIR", help=f"folders to search, in order, "
                         f"separated by {os.pathsep!r} (default: ${ENV_DATA_DIR}, else <checkout>/data and "
                         f"a shared/data folder beside the checkout)")
    installing = commands.add_parser("install", help=f"get one of: {', '.join(DOWNLOADS)}")
    installing.add_argument("name", metavar="NAME", help=f"one of: {', '.join(DOWNLOADS)}")
    installing.add_argument("--data-dir", default=None, metavar="DIR",
                            help=f"install into DIR (the first of several; default ${ENV_DATA_DIR}, else "
                                 f"<checkout>/data)")
    installing.add_argument("--from", dest="source", default=None, metavar="FILE.deb|FOLDER",
                            help="fashion-mnist offline: copy from a downloaded .deb (`apt-get download "
                                 "dataset-fashion-mnist`) or a folder of the four IDX files, checked by SHA-256")
    installing.add_argument("--no-apt", action="store_true", help="download even where apt-get could install")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "list":
        rows = [(name, "regression" if name in ("diabetes", "teacher-student") else "classification",
                 describe(name, args.data_dir)) for name in DATASETS]
        print(format_table(["dataset", "task", "source"], rows))
        return 0
    try:
        where = install(args.name, args.data_dir, apt=False if args.no_apt else None, source=args.source)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) and not isinstance(exc, CorruptDataError) else 1
    print(f"{args.name} is in {where}")
    return 0

