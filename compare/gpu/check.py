"""``python -m compare gpu-check``: the GPU tests, the GPU benchmarks, then a short table naming the card.

Made for a bare GPU machine that has CuPy, PyTorch and scikit-learn, no network and only this checkout
(docs/gpu.md, *The GPU check*).
Two steps: ``--prepare DIR`` where the package registries are reachable writes an offline bundle (wheels of
what the machine lacks, the CIFAR-10 archive, a manifest; see ``compare.gpu.bundle``); on the GPU machine
``--bundle DIR`` installs from it with ``pip install --no-index`` and runs everything. Steps, each a
subprocess with its own time limit, so one failure or hang does not stop the rest:

0. with ``--bundle``: the offline install;
1. ``python -m pytest tests/gpu -m gpu``;
2. ``python -m compare bench NAME ARGS`` for each benchmark declared in ``compare.bench.BENCHMARKS``, with the
   GPU arguments its record declares (``gpu_args``; None: a CPU-only benchmark, listed as skipped);
3. for each experiment that declares a GPU run (``Experiment.gpu``; today ``table``), when its data set is
   found (``--data-dir``, e.g. a git-ignored ``data/`` in the checkout holding cifar10-jpeg.tar.gz):
   ``python -m compare table --preset quick --device cuda``.

The benchmarks' tables are repeated at the end, then the summary table, last. ``--budget`` (default 480 s)
bounds the total, install included; ``--dry-run`` prints the commands without running anything.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from compare.gpu import bundle as gpu_bundle
from compare.bench import BENCHMARKS
from compare.bench.harness import gpu_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUDGET_S = 480.0
# fraction of the budget each kind of step may use at most (a step also never outlasts what is left)
SHARES = {"install": 0.10, "tests": 0.30, "bench": 0.15, "experiment": 0.25}
MIN_STEP_S = 10.0
NO_GPU = "no GPU: CuPy not installed or sees no device"
PACKAGES = ("numpy", "scipy", "sklearn", "torch", "cupy", "array_api_compat", "PIL", "pytest")
REQUIRED = ("numpy", "scipy", "sklearn", "torch", "array_api_compat")  # lazykit itself does not run without
PYPI_NAMES = {"sklearn": "scikit-learn", "array_api_compat": "array-api-compat", "PIL": "pillow"}
EXPERIMENTS_OUT = REPO_ROOT / "results" / "gpu-check"  # results/ is git-ignored
DATA_NAMES = {"cifar10": ("CIFAR-10", "cifar10-jpeg.tar.gz"), "fashion-mnist": ("Fashion-MNIST", "its IDX files")}


SKIPPED = "skipped: "


@dataclasses.dataclass
class Step:
    """One command of the check. ``outcome`` says how it went, in one field: "not run" (planned), "ok",
    "FAILED (rc N)", "TIMEOUT (N s)", or "skipped: why" (nothing to run it on, or no time left)."""

    name: str
    argv: list
    kind: str                 # "install" | "tests" | "bench" | "experiment"
    outcome: str = "not run"
    seconds: float = float("nan")
    output: list = dataclasses.field(default_factory=list)

    @property
    def command(self) -> str:
        return shlex.join(["python" if a == sys.executable else a for a in self.argv])

    @property
    def skipped(self) -> bool:
        return self.outcome.startswith(SKIPPED)

    def skip(self, why: str) -> "Step":
        self.outcome = SKIPPED + why
        return self

    @property
    def passed(self) -> bool:
        """ok, or skipped (which does not fail the check)."""
        return self.outcome == "ok" or self.skipped


def plan(data_dir=None, before_install: bool = False) -> list:
    """The steps gpu-check runs, in order (nothing is run here).

    The experiments come from compare's registry, which imports lazykit's dependencies: ``before_install`` (a
    dry run with ``--bundle``, whose install would bring them) lists them as planned after the install when that
    import fails; otherwise the failure is a FAILED step, never a silent skip.
    """
    python = sys.executable
    steps = [Step("tests/gpu", [python, "-m", "pytest", "tests/gpu", "-m", "gpu", "-q", "-p", "no:cacheprovider"],
                  "tests")]
    for bench in BENCHMARKS.values():
        step = Step(f"bench {bench.name}", [python, "-m", "compare", "bench", bench.name, *(bench.gpu_args or ())],
                    "bench")
        steps.append(step if bench.gpu_args is not None else step.skip("CPU-only benchmark (no gpu_args)"))
    try:  # the registry imports lazykit's dependencies, which a bare GPU machine has only after the install
        from compare import experiments
        declared = [experiments.get(name) for name in experiments.names()]
    except ImportError as err:
        if before_install:
            return steps + [Step("experiments", [], "experiment").skip(
                f"lazykit's dependencies are not installed yet ({err})")]
        return steps + [Step("experiments", [], "experiment",
                             outcome=f"FAILED (the experiment registry does not import: {err})")]
    for experiment in declared:
        if experiment.gpu is not None:
            steps.append(experiment_step(experiment, data_dir))
    return steps


def experiment_step(experiment, data_dir=None) -> Step:
    """The step running ``experiment``'s declared GPU run, marked skipped when its data set is not found."""
    from compare.data import IMAGE_DATASETS, find
    gpu = experiment.gpu
    dataset = gpu.dataset or experiment.default_dataset
    out = EXPERIMENTS_OUT / f"{experiment.name}-{gpu.preset}"
    step = Step(f"{experiment.name} ({gpu.preset})",
                [sys.executable, "-m", "compare", experiment.name, "--preset", gpu.preset, "--device", "cuda",
                 "--out", str(out), "--no-resume"]
                + (["--dataset", dataset] if dataset != experiment.default_dataset else [])
                + (["--data-dir", str(data_dir)] if data_dir is not None else []), "experiment")
    if dataset in IMAGE_DATASETS and find(dataset, data_dir) is None:
        # nothing to run it on: reported as "skipped", which does not fail the check
        title, files = DATA_NAMES.get(dataset, (dataset, "its files"))
        step.skip(f"no {title} under " + (str(data_dir) if data_dir is not None else
                            "the default data folders") + f" (copy {files} into data/ and pass --data-dir data)")
    return step


def missing_advice(missing: list) -> str:
    """What to do about lazykit's dependencies (import names) missing on this machine: the bundle's own
    requirements arrive with ``--bundle``; the image's packages only when the bundle was prepared with them
    (``--add``); PyTorch is installed for the machine's CUDA, never bundled."""
    pypi = [PYPI_NAMES.get(name, name) for name in missing]
    bundled = {_canonical(r) for r in gpu_bundle.REQUIREMENTS}
    own = [p for p in pypi if _canonical(p) in bundled]
    image = [p for p in pypi if p not in own and p != "torch"]
    parts = [f"lazykit needs these packages, which are not installed here: {', '.join(missing)}."]
    if own:
        parts.append(f"The bundle brings {', '.join(own)}: run with `--bundle DIR`.")
    if image:
        parts.append(f"The GPU image is expected to have {', '.join(image)}, so a bundle holds them only when "
                     "prepared with them: where the package registries are reachable run `python -m compare "
                     f"gpu-check --prepare DIR --add {' '.join(image)}`, copy DIR here and run with `--bundle DIR`.")
    if "torch" in pypi:
        parts.append("PyTorch is not bundled (its CUDA builds are gigabytes): install the build for this "
                     "machine's CUDA (README, Install).")
    return " ".join(parts)


def _canonical(requirement: str) -> str:
    """The normalised project name of a requirement (PEP 503; without packaging, which may not be installed)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def versions() -> dict:
    """Installed version of each package gpu-check relies on (None where it does not import)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception:  # a broken CuPy install raises more than ImportError
            found[name] = None
    return found


def run_step(step: Step, limit_s: float, env: dict) -> None:
    """Run ``step`` as a subprocess in its own process group, echoing its output live; after ``limit_s``
    seconds the whole group is killed and the step marked TIMEOUT."""
    print(f"\n=== {step.name}: {step.command}  (limit {limit_s:.0f} s)", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(step.argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)

    def pump():
        for line in proc.stdout:
            step.output.append(line.rstrip("\n"))
            print(line, end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=limit_s)
        step.outcome = "ok" if rc == 0 else f"FAILED (rc {rc})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        step.outcome = f"TIMEOUT ({limit_s:.0f} s)"
    reader.join(timeout=5)
    step.seconds = time.perf_counter() - start


def detail(step: Step) -> str:
    """One short line on how a step went."""
    if step.skipped:
        return step.outcome[len(SKIPPED):]
    lines = [line.strip() for line in step.output if line.strip()]
    if step.kind == "tests":
        summary = [line for line in lines if any(w in line for w in (" passed", " failed", " error", " skipped",
                                                                      "no tests ran"))]
        if summary:
            return summary[-1].strip("= ")
    if step.kind == "bench" and step.outcome == "ok":
        rows = [line for line in lines if line.startswith("|")]
        return f"{max(len(rows) - 2, 0)} table rows (above)"
    last = lines[-1] if lines else "no output"
    return last if len(last) <= 100 else last[:97] + "..."


def report(steps: list, gpu: str, found_versions: dict, budget_s: float) -> str:
    """Benchmark tables, then the summary table (Markdown)."""
    from compare.bench.harness import format_seconds
    from compare.present.tables import format_table
    parts = []
    for step in steps:
        table = [line for line in step.output if line.startswith("|")]
        if step.kind == "bench" and table:
            parts += [f"### {step.name} (`{step.command}`)", "", *table, ""]
    libs = ", ".join(f"{k} {v}" for k, v in found_versions.items() if v is not None)
    parts += [f"## gpu-check summary: GPU {gpu}", "",
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; budget {budget_s:.0f} s; {libs}", "",
              format_table(["step", "status", "time", "detail"],
                           [(s.name, "skipped" if s.skipped else s.outcome, format_seconds(s.seconds), detail(s))
                            for s in steps])]
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compare gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder with the data the GPU steps need (e.g. data/ holding cifar10-jpeg.tar.gz); "
                             "passed to every step as LAZYKIT_DATA_DIR")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                        help=f"total time for all steps (default {DEFAULT_BUDGET_S:.0f}); each step gets at most "
                             + ", ".join(f"{k} {v:.0%}%" for k, v in SHARES.items()) + " of it")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the tables and summary to FILE")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and their limits; run nothing")
    bundle = parser.add_argument_group("offline bundle (for a GPU machine without network)")
    bundle.add_argument("--prepare", metavar="DIR", default=None,
                        help="write the bundle into DIR (needs the package registries) and exit")
    bundle.add_argument("--bundle", metavar="DIR", default=None,
                        help="install from the bundle in DIR offline first, then run; its data/ is the default "
                             "--data-dir")
    bundle.add_argument("--python-version", default=None, metavar="X.Y",
                        help="with --prepare: only the wheels for this Python (default: every Python lazykit "
                             f"supports, {', '.join(gpu_bundle.SUPPORTED_PYTHONS)})")
    bundle.add_argument("--add", nargs="+", default=(), metavar="REQUIREMENT",
                        help="with --prepare: also bundle these, e.g. `--add scipy scikit-learn` for a GPU machine "
                             "whose image lacks them")
    bundle.add_argument("--wheel-source", default=None, metavar="DIR",
                        help="with --prepare: take the wheels from this local folder instead of the registries")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.budget > 0:
        print(f"error: --budget must be a positive number of seconds, got {args.budget}", file=sys.stderr)
        return 2
    if args.prepare is not None and args.bundle is not None:
        print("error: --prepare and --bundle are separate steps (on two machines); give one", file=sys.stderr)
        return 2
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        print(f"error: --data-dir {args.data_dir} is not a folder", file=sys.stderr)
        return 2
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir is not None else None
    if args.prepare is not None:
        return _prepare(args, data_dir)
    install = None
    if args.bundle is not None:
        try:
            manifest = gpu_bundle.verify(args.bundle)
        except gpu_bundle.BundleError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"bundle {args.bundle}: {gpu_bundle.describe(manifest)}", flush=True)
        try:
            gpu_bundle.check_python(manifest)
        except gpu_bundle.BundleError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        pins = EXPERIMENTS_OUT / "installed-constraints.txt"   # results/ is git-ignored
        pins.parent.mkdir(parents=True, exist_ok=True)
        pins.write_text("".join(f"{pin}\n" for pin in gpu_bundle.installed_pins()))
        install = Step("install bundle", gpu_bundle.install_command(args.bundle, manifest, constraints=pins),
                       "install")
        data_dir = data_dir or gpu_bundle.data_dir(args.bundle, manifest)
    if args.dry_run:
        for step in ([install] if install else []) + plan(data_dir, before_install=install is not None):
            limit = SHARES[step.kind] * args.budget
            note = f"   # {step.outcome}" if step.outcome != "not run" else f"   # limit {limit:.0f} s"
            print(step.command + note)
        return 0

    deadline = time.perf_counter() + args.budget
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    if install is not None:
        run_step(install, SHARES["install"] * args.budget, env)
        importlib.invalidate_caches()
        if install.outcome != "ok":
            print(f"error: the offline install failed ({install.outcome}); see its output above", file=sys.stderr)
            return 1
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: {missing_advice(missing)}", file=sys.stderr)
        return 1
    gpu = gpu_name()
    if gpu is None:
        print(f"error: {NO_GPU}. gpu-check needs a CUDA GPU and CuPy (e.g. pip install cupy-cuda13x[ctk]); "
              "`python -m compare gpu-check --dry-run` shows what it would run.", file=sys.stderr)
        return 1
    steps = plan(data_dir)     # after the install: the experiment registry needs lazykit's dependencies
    found_versions = versions()
    if found_versions["pytest"] is None:    # the GPU tests are the heart of the check: a failure, not a skip
        steps[0].outcome = f"FAILED ({missing_advice(['pytest'])})"
    if data_dir is not None:
        env["LAZYKIT_DATA_DIR"] = data_dir
    for step in steps:
        left = deadline - time.perf_counter()
        if step.outcome != "not run":     # decided while planning: skipped, or failed before it could run
            continue
        if left < MIN_STEP_S:
            step.skip("no time left in --budget")
            continue
        run_step(step, min(SHARES[step.kind] * args.budget, left), env)

    steps = ([install] if install else []) + steps
    text = report(steps, gpu, found_versions, args.budget)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print("\n" + text)
    return 0 if all(s.passed for s in steps) else 1


def gpu_data(data_dir=None) -> tuple:
    """(CIFAR-10 images the GPU experiments draw from, as ``compare.data.split_source`` gives them, or None;
    a note on what was or was not found). Several experiments share one set: the first images of each class,
    as many as the largest of them needs, of the union of their classes (each ``load_split`` then reads the
    same images as from the full data set)."""
    from compare import experiments
    from compare.data import CIFAR10_CLASSES, find, split_source
    needs = []
    for name in experiments.names():
        experiment = experiments.get(name)
        if experiment.gpu is None:
            continue
        dataset = experiment.gpu.dataset or experiment.default_dataset
        if dataset != "cifar10":
            raise gpu_bundle.BundleError(f"experiment {name!r} runs on {dataset!r} on the GPU, which the bundle "
                                         "cannot carry yet (only CIFAR-10)")
        needs.append((name, experiment.presets[experiment.gpu.preset].settings))
    if not needs:
        return None, "no experiment declares a GPU run"
    if find("cifar10", data_dir) is None:
        where = data_dir if data_dir is not None else "the default data folders"
        return None, (f"no CIFAR-10 under {where} (pass --data-dir DIR, a folder holding cifar10-jpeg.tar.gz or "
                      f"the CIFAR-10 python batches): the {', '.join(n for n, _ in needs)} step will be skipped")
    # load_split reads the first ⌈max(n_train, n_test) / classes⌉ images of each kept class (None: all)
    per_class = [-(-max(p.get("n_train") or 0, p.get("n_test") or 0) // len(p.get("classes") or range(10))) or None
                 for _, p in needs]
    classes = sorted({CIFAR10_CLASSES.index(c) if isinstance(c, str) else int(c)
                      for _, p in needs for c in p.get("classes") or range(10)})
    most = None if None in per_class else max(per_class)
    parts = split_source("cifar10", None if most is None else most * len(classes), None, data_dir,
                         classes if len(classes) < 10 else None)
    count = sum(len(y) for _, y in parts.values())
    return parts, f"{count} CIFAR-10 images for {', '.join(n for n, _ in needs)}"


def _prepare(args, data_dir) -> int:
    try:
        parts, note = gpu_data(data_dir)
        manifest = gpu_bundle.prepare(
            args.prepare, python_versions=None if args.python_version is None else (args.python_version,),
            extra_requirements=tuple(args.add), wheel_source=args.wheel_source, cifar10=parts)
    except gpu_bundle.BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.prepare}: {gpu_bundle.describe(manifest)}")
    print(("" if parts is not None else "note: ") + note)
    print(f"next: copy the checkout with {args.prepare} to the GPU machine and run "
          f"`python -m compare gpu-check --bundle {args.prepare}` there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
