"""The figures of README.md and the docs, rerun: ``python -m compare bench readme [--seeds K] [--quick] [--only JOBS]``.

Every time, accuracy and plot that README.md, the pages of docs/ and ``python -m compare EXPERIMENT --help``
quote comes from here:

- ``presets``: each experiment's quick preset run as a user runs it (``python -m compare EXPERIMENT``, a fresh
  process, so the wall time includes starting Python and importing torch); the default job is
  ``python -m compare`` itself, and its printed summary is shown verbatim. ``--presets quick,full`` also times
  the larger presets (minutes to hours; ``table`` needs CIFAR-10, else it is recorded as not run).
- ``seeds``: the same output folders resumed with ``--seeds K`` (finished runs are kept, only new seeds run),
  so that figures which vary with the seed are given as mean ± std over K seeds: the quick ``table``
  accuracies and the quick ``rates`` slopes.
- ``nets-example``: the nets example of the docs (the block that trains at α = 1 and 100), its output verbatim.
- ``ntk-gap``: how far the empirical NTK of ``nets.CNN`` at finite width lies from ``kernels.Convolutional``,
  for one initialisation and for the mean over several (:func:`ntk_gap`).
- the quick ``alpha-sweep`` (CIFAR-10, in ``presets``) gives the README its plot of accuracy and stability
  against α, copied to ``docs/alpha-sweep-quick.png``, and the figures of its ``alpha-sweep-quick`` block.
- ``plots``: the report plots of each experiment's quick preset (reusing the ``presets`` job's runs when they
  are there), copied into docs/figures/ with their captions.

Results go to ``docs/figures.json`` (with the machine, date, load average and command), which the ``--help``
texts read, and into every Markdown file of the repository's README.md and docs/ that holds a block's markers,
``<!-- bench-readme:NAME -->`` and ``<!-- /bench-readme:NAME -->`` (a block may appear in several files; each
block should appear somewhere: one that no file holds is named on stderr and left out; ``BLOCK_NAMES``).
``--render`` rewrites the blocks from docs/figures.json without running anything
(after a code change that alters what a block shows, e.g. an experiment's one-line description). ``--quick``
shrinks every run (a smoke test, seconds) and writes into a copy of README.md and docs/ under ``--out``, never
into the repository's files unless ``--root``/``--figures`` name them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from compare.data import CIFAR10_CLASSES
from compare.experiment import PRESET_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
FIGURES = REPO_ROOT / "docs" / "figures.json"
PLOTS_DIR = "docs/figures"            # the report plots, relative to the root holding README.md and docs/
CIFAR_EXPERIMENTS = ("table", "alpha-sweep")
ALPHA_SWEEP_PLOT = "docs/alpha-sweep-quick.png"   # relative to the root, like PLOTS_DIR
BLOCK_NAMES = ("preset-times", "default-job", "default-job-reading", "table-quick", "rates-slopes", "nets-example",
               "alpha-sweep-quick", "ntk-gap", "report-plots")
DEFAULT_EXPERIMENT = "equivalence"    # what `python -m compare` runs: compare.cli's (which imports this module's --help times)
JOBS = ("presets", "seeds", "nets-example", "ntk-gap", "plots")
# --quick: overrides that make each quick preset a few-second smoke run (the figures then mean nothing); one entry
# per registered experiment (tests/compare/bench/test_readme.py holds the two lists together)
QUICK_SET = {
    "equivalence": ["n_train=40", "n_test=40", "steps=10", "probe=10", "scales=[1.0, 100.0]"],
    "teacher-student": ["n_train=20", "n_test=20", "steps=20", "dims=[2]", "taus=[0.1, 10.0]", "seeds=1"],
    "rates": ["n_train=20", "n_test=20", "m=20", "steps=20", "scales=[1.0, 10.0, 100.0]"],
    "table": ["n_train=20", "n_test=20", "epochs=1", "models=['vgg11']", "rff_features=50"],
    "alpha-sweep": ["n_train=20", "n_test=20", "epochs=1", "width_factor=0.0625", "scales=[1.0, 100000.0]",
                    "rff_features=50", "power_iterations=5"],
}
EXPERIMENTS = tuple(QUICK_SET)
NETS_EXAMPLE_MARK = "for alpha in (1.0, 100.0):"   # identifies the docs' nets example block
# ntk-gap: nets.CNN against kernels.Convolutional (widths, initialisations, images of 3×SIZE×SIZE), and --quick's
NTK_GAP = {"widths": (64, 256), "inits": 16, "images": 6, "size": 32, "depth": 2}
NTK_GAP_QUICK = {"widths": (8,), "inits": 2, "images": 2, "size": 8, "depth": 2}
BEGIN, END = "<!-- bench-readme:{name} -->", "<!-- /bench-readme:{name} -->"
TABLE_ROWS = (("vgg11", "net", None, "VGG-11 standard"), ("vgg11", "net_uncentred", None, "uncentred"),
              ("vgg11", "lazy", 100.0, "lazy (α = 100)"), ("vgg11", "linearized", None, "linearized"),
              ("resnet18", "net", None, "ResNet-18 standard"), ("resnet18", "net_uncentred", None, "uncentred"),
              ("resnet18", "lazy", 100.0, "lazy (α = 100)"), ("resnet18", "linearized", None, "linearized"),
              ("fourier", "rff", None, "random Fourier features"))


# ------------------------------------------------------------------------------------------- measuring
def run_command(argv, cwd=None, env=None, timeout=7200):
    """Run ``argv`` in a fresh process; (wall seconds, stdout). A failure raises with its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def _env():
    """This checkout's packages first, installed or not."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def experiment_argv(experiment, preset, out, quick, extra=()):
    argv = [sys.executable, "-m", "compare"] + ([] if experiment == "equivalence" and preset == "quick"
                                                else [experiment, "--preset", preset])
    argv += ["--out", str(out), *extra]
    if quick:
        for item in QUICK_SET.get(experiment, ()):
            argv += ["--set", item]
    return argv


def experiment_names() -> list:
    """The registered experiments, the default one (``python -m compare``) first."""
    from compare import experiments
    names = experiments.names()
    return [DEFAULT_EXPERIMENT] + [n for n in names if n != DEFAULT_EXPERIMENT]


def measure_presets(out_dir: Path, presets, quick: bool, log, root: Path = REPO_ROOT) -> dict:
    """{experiment: {preset: {"wall_s", "runs", "command"} or {"skipped": why}}}, plus the default job's stdout
    and the quick alpha-sweep's points (its plot copied to ``root``/docs/alpha-sweep-quick.png)."""
    from compare import data
    found = {}
    for experiment in experiment_names():
        for preset in presets:
            entry = found.setdefault(experiment, {})
            if experiment in CIFAR_EXPERIMENTS and data.find("cifar10") is None:
                entry[preset] = {"skipped": "CIFAR-10 not found (python -m compare data install cifar10)"}
                continue
            if experiment in CIFAR_EXPERIMENTS and preset != "quick" and not _torch_sees_gpu():
                entry[preset] = {"skipped": f"the full and paper {experiment} presets are for a GPU (hours on a CPU)"}
                continue
            out = out_dir / f"{experiment}-{preset}"
            argv = experiment_argv(experiment, preset, out, quick, ["--no-resume"])
            log(f"running {' '.join(argv[1:])}")
            wall, stdout = run_command(argv, env=_env())
            rows = _rows(out)
            entry[preset] = {"wall_s": round(wall, 1), "runs": len(rows), "command": _shown(argv)}
            if experiment == "equivalence" and preset == "quick":   # the default job, as a user sees it
                shown = stdout.strip().replace(str(out / "report.md"), "results/equivalence-digits-quick/report.md")
                entry[preset]["stdout"] = "\n".join(line.rstrip() for line in shown.splitlines())
                entry[preset]["reading"] = default_job_reading(rows)
            if experiment == "alpha-sweep" and preset == "quick":
                entry[preset]["sweep"] = alpha_sweep_points(rows)
                entry[preset]["setup"] = {k: rows[0].get(k) for k in ("n_train", "n_test", "width_factor",
                                                                      "epochs", "classes", "model")}
                plot = out / "alpha_sweep.png"
                if plot.exists():
                    (root / ALPHA_SWEEP_PLOT).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(plot, root / ALPHA_SWEEP_PLOT)
                    entry[preset]["plot"] = ALPHA_SWEEP_PLOT
    return found


def alpha_sweep_points(rows) -> list:
    """Per α of the quick alpha-sweep's network rows: test and frozen-gates accuracy, gates unchanged (mean and
    least stable layer), or the word for a row that diverged or collapsed."""
    points = []
    for r in sorted((r for r in rows if r.get("method") == "lazy"), key=lambda r: r["scale"]):
        point = {"alpha": r["scale"]}
        for field in ("test_accuracy", "frozen_gates_accuracy", "unchanged_activations",
                      "unchanged_activations_min", "lr_over_limit"):
            if isinstance(r.get(field), (int, float)):
                point[field] = r[field]
        for flag in ("diverged", "collapsed"):
            if r.get(flag):
                point[flag] = True
        points.append(point)
    return points


def _torch_sees_gpu() -> bool:
    import torch
    return torch.cuda.is_available()


def _shown(argv) -> str:
    """The command as a user types it (``python -m compare ...``, without the output folder)."""
    args = list(argv[1:])
    i = args.index("--out")
    del args[i:i + 2]
    return " ".join(["python", *[a for a in args if a != "--no-resume"]])


def _rows(out: Path) -> list:
    from compare import sweep
    return sweep.read_results(out / "results.jsonl")


def default_job_reading(rows) -> dict:
    """The default job's figures that the README's reading of its table quotes."""
    def pick(method, scale, field):
        for r in rows:
            if r["method"] == method and r.get("scale") == scale and isinstance(r.get(field), (int, float)):
                return r[field]
        return None
    scales = sorted({r["scale"] for r in rows if r["method"] == "lazy"})
    reading = {"agreement": {str(a): pick("lazy", a, "agreement") for a in scales},
               "weight_change": {str(a): pick("lazy", a, "weight_change") for a in scales}}
    if any(r["method"] == "net_uncentred" for r in rows):   # the standard row centred, the uncentred one beside it
        reading["uncentred_agreement"] = pick("net_uncentred", None, "agreement")
    else:
        reading["net_agreement"] = pick("net", None, "agreement")
    return reading


def measure_seeds(out_dir: Path, seeds: int, quick: bool, log) -> dict:
    """The quick table accuracies and rates slopes, mean ± std over ``seeds`` seeds (resuming the preset runs)."""
    import numpy as np
    from compare import data
    from compare.experiments.rates import slopes as rates_slopes
    result = {"seeds": seeds}
    out = out_dir / "rates-quick"
    argv = experiment_argv("rates", "quick", out, quick, ["--seeds", str(seeds), "--quiet"])
    log(f"running {' '.join(argv[1:])}")
    run_command(argv, env=_env())
    per_seed = {}
    for seed in range(seeds):
        slopes = rates_slopes([r for r in _rows(out) if r["seed"] == seed])
        for field, value in slopes.items():
            per_seed.setdefault(field, []).append(value)
    result["rates_slopes"] = {f: _mean_std(v) for f, v in per_seed.items()}
    if data.find("cifar10") is None:
        result["table"] = {"skipped": "CIFAR-10 not found (python -m compare data install cifar10)"}
        return result
    out = out_dir / "table-quick"
    argv = experiment_argv("table", "quick", out, quick, ["--seeds", str(seeds), "--quiet"])
    log(f"running {' '.join(argv[1:])}")
    run_command(argv, env=_env())
    rows = _rows(out)
    table = {}
    for model, method, scale, _ in TABLE_ROWS:
        values = [r["test_accuracy"] for r in rows if r["model"] == model and r["method"] == method
                  and r.get("scale") == scale and isinstance(r.get("test_accuracy"), (int, float))]
        if values:
            table[f"{model}/{method}"] = _mean_std(100 * np.asarray(values))
    first = next((r for r in rows if r["method"] == "net"), rows[0])
    result["table"] = table
    result["table_setup"] = {k: first.get(k) for k in ("n_train", "n_test", "width_factor", "epochs", "classes")}
    return result


def _mean_std(values) -> dict:
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def doc_files(root: Path) -> list:
    """The Markdown files whose figure blocks this script rewrites: README.md and docs/*.md under ``root``."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def doc_block(texts, mark: str) -> str:
    """The one python block containing ``mark`` among the Markdown texts ``texts``."""
    blocks = [b for text in texts for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if mark in b]
    if len(blocks) != 1:
        raise ValueError(f"expected one python block containing {mark!r} in README.md and docs/, found {len(blocks)}")
    return blocks[0]


def measure_nets_example(texts, out_dir: Path, log) -> dict:
    block = doc_block(texts, NETS_EXAMPLE_MARK)
    log("running the docs' nets example")
    out_dir.mkdir(parents=True, exist_ok=True)
    wall, stdout = run_command([sys.executable, "-c", block], cwd=out_dir, env=_env())
    return {"wall_s": round(wall, 1), "stdout": stdout.strip()}


def ntk_gap(widths=NTK_GAP["widths"], inits=NTK_GAP["inits"], images=NTK_GAP["images"], size=NTK_GAP["size"],
            depth=NTK_GAP["depth"], seed=0) -> dict:
    """The empirical NTK of ``nets.CNN(3, channels=width, depth=depth)`` (ReLU, 'ntk' parameterization, GAP
    readout, float64) against its infinite-width limit ``kernels.Convolutional(depth=depth)``, on ``images``
    standard-normal images 3×size×size (``seed``): for each width, the relative Frobenius distance
    ‖Θ̂ − Θ‖_F / ‖Θ‖_F of each of ``inits`` initialisations (torch seeds 0, 1, ...) and of their mean.
    One init is off by O(1/√width) (the readout's random features); the mean over inits loses that spread as
    their number grows, converging to the finite-width expectation, O(1/width) from the limit."""
    import numpy as np
    import torch
    from kernels import Convolutional, empirical_ntk
    from nets import CNN
    x = np.random.default_rng(seed).standard_normal((images, 3, size, size))
    theta = Convolutional(depth=depth, readout="gap").ntk(x)
    norm = np.linalg.norm(theta)
    result = {"images": images, "size": size, "depth": depth, "inits": inits, "widths": {}}
    for width in widths:
        kernels, errors = [], []
        for init in range(inits):
            torch.manual_seed(init)
            net = CNN(3, channels=width, depth=depth).double()
            kernels.append(empirical_ntk(net, torch.from_numpy(x)))
            errors.append(float(np.linalg.norm(kernels[-1] - theta) / norm))
        mean = float(np.linalg.norm(np.mean(kernels, axis=0) - theta) / norm)
        result["widths"][str(width)] = {"one_init": errors, "mean_of_inits": mean}
    return result


def measure_ntk_gap(quick: bool, log) -> dict:
    settings = NTK_GAP_QUICK if quick else NTK_GAP
    log(f"measuring the empirical-vs-analytic NTK gap of nets.CNN ({settings})")
    start = time.perf_counter()
    result = ntk_gap(**settings)
    return {**result, "wall_s": round(time.perf_counter() - start, 1)}


def measure_plots(out_dir: Path, root: Path, quick: bool, log) -> dict:
    """{experiment: [{"file", "caption"}]}: the report plots of each experiment's quick preset, copied into
    ``root``/docs/figures/ as EXPERIMENT-FILE.png. Runs the quick preset unless the ``presets`` job of this
    call (or an earlier one into the same ``out_dir``) left its results there; experiments whose data is not
    found are recorded as skipped."""
    from compare import data, experiments, sweep
    found = {}
    (root / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    for name in experiment_names():
        experiment = experiments.get(name)
        if not experiment.figures:
            continue
        dataset = experiment.default_dataset
        if dataset in data.IMAGE_DATASETS and data.find(dataset) is None:
            found[name] = {"skipped": f"{dataset} not found (python -m compare data install {dataset})"}
            continue
        out = out_dir / f"{name}-quick"
        if not (out / sweep.RESULTS).is_file():
            argv = experiment_argv(name, "quick", out, quick, ["--quiet"])
            log(f"running {' '.join(argv[1:])}")
            run_command(argv, env=_env())
        rows = _rows(out)
        scratch = out / "plots"
        scratch.mkdir(exist_ok=True)
        entries = []
        for figure in experiment.figures:
            path, caption = figure.render(rows, scratch)
            if path is None:
                continue
            target = f"{PLOTS_DIR}/{name}-{figure.filename}"
            shutil.copyfile(path, root / target)
            entries.append({"file": target, "caption": caption})
        found[name] = {"figures": entries, "runs": len(rows), "command": _shown(experiment_argv(name, "quick", out, False))}
    return found


# ------------------------------------------------------------------------------------------- rendering
def _pm(entry, scale=1.0, digits=1, unit="") -> str:
    mean, std = entry["mean"] * scale, entry["std"]
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "") + unit


def _minus(text: str) -> str:
    return text.replace("-", "−")


def _when(record) -> str:
    """Machine, date and load of the run that measured ``record`` (its own "when", else the file's last run)."""
    when = record.get("when", record)
    return f"{when['machine_short']}, {when['date']}, load average {when['load_average']:.1f} at start"


def _seconds(wall) -> str:
    return f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min"


def render_blocks(figures: dict) -> dict:
    """{block name: Markdown} from a figures record (docs/figures.json)."""
    blocks = {}
    presets = figures.get("presets", {})
    default = presets.get("equivalence", {}).get("quick", {})
    if "stdout" in default:
        blocks["default-job"] = (f"As printed on {_when({**figures, **default})}; {_seconds(default['wall_s'])} wall time for the "
                                 f"whole command:\n\n```\n{default['stdout']}\n```")
        blocks["default-job-reading"] = _reading_sentence(default["reading"])
    if presets:
        from compare import experiments
        rows, whens = [], []
        for experiment in experiment_names():
            cells = []
            for preset in PRESET_NAMES:
                entry = presets.get(experiment, {}).get(preset)
                measured = entry is not None and "wall_s" in entry
                cells.append(_seconds(entry["wall_s"]) if measured else "–")
                if measured and _when({**figures, **entry}) not in whens:
                    whens.append(_when({**figures, **entry}))
            rows.append(f"| `{experiment}` | {experiments.get(experiment).one_line} | " + " | ".join(cells) + " |")
        blocks["preset-times"] = "\n".join([
            "| experiment | what it shows | quick | full | paper |", "|---|---|---|---|---|", *rows, "",
            f"Wall time of `python -m compare EXPERIMENT --preset NAME` (a fresh process, imports included), "
            f"measured by `python -m compare bench readme` on {'; '.join(whens) or _when(figures)}; – : not run there "
            f"(`--presets quick,full,paper` runs them; the `table` and `alpha-sweep` presets need CIFAR-10)."])
    seeds = figures.get("seeds")
    if seeds:
        slopes = seeds.get("rates_slopes", {})
        if slopes:
            blocks["rates-slopes"] = ("Measured quick-preset slopes, "
                                      f"{_over_seeds(next(iter(slopes.values()))['n'])}: "
                                      + ", ".join(_minus(_pm(slopes[f], digits=2)) for f in
                                                  ("weight_distance", "param_distance", "function_distance")
                                                  if f in slopes) + ".")
        table = seeds.get("table", {})
        if "skipped" in table:
            blocks["table-quick"] = f"The quick `table` run was not measured: {table['skipped']}."
        elif table:
            n = next(iter(table.values()))["n"]
            setup = seeds.get("table_setup", {})
            parts = [f"{label} {_pm(table[f'{m}/{meth}'], unit='%')}" for m, meth, _, label in TABLE_ROWS
                     if f"{m}/{meth}" in table]
            classes = setup.get("classes")
            names = " vs ".join(CIFAR10_CLASSES[c] for c in classes) if classes else "all 10 classes"
            centred = (" The standard rows are centred as the authors train them, h(w) − h(w₀); the uncentred "
                       "ones are the plain h(w)." if any("net_uncentred" in key for key in table) else "")
            blocks["table-quick"] = (f"The quick `table` run (CPU; {names}, "
                                     f"{setup.get('n_train')}/{setup.get('n_test')} train/test images, width factor "
                                     f"{setup.get('width_factor')}, {setup.get('epochs')} epochs; test accuracy, "
                                     f"{_over_seeds(n)}; {_when({**figures, **seeds})}): " + ", ".join(parts) + "."
                                     + centred)
    sweep = presets.get("alpha-sweep", {}).get("quick", {})
    if "sweep" in sweep:
        blocks["alpha-sweep-quick"] = _alpha_sweep_sentence(sweep, _when({**figures, **sweep}))
    nets = figures.get("nets_example")
    if nets:
        blocks["nets-example"] = (f"Output ({_when({**figures, **nets})}; the script sets one torch thread; "
                                  f"{_seconds(nets['wall_s'])} for the whole script):\n\n```\n{nets['stdout']}\n```")
    gap = figures.get("ntk_gap")
    if gap:
        blocks["ntk-gap"] = _ntk_gap_table(gap, _when({**figures, **gap}))
    plots = figures.get("plots")
    if plots:
        blocks["report-plots"] = _plots_markdown(plots, _when({**figures, **plots}))
    return blocks


def _alpha_sweep_sentence(entry, when) -> str:
    setup = entry.get("setup", {})
    classes = setup.get("classes")
    names = " vs ".join(CIFAR10_CLASSES[c] for c in classes) if classes else "all 10 classes"

    def cell(point):
        alpha = f"α = {point['alpha']:g}"
        for flag in ("diverged", "collapsed"):
            if point.get(flag):
                return f"{alpha}: {flag}"
        text = f"{alpha}: {100 * point['test_accuracy']:.1f}%"
        if "unchanged_activations_min" in point:
            text += f" ({100 * point['unchanged_activations_min']:.1f}% of the least stable layer's gates kept)"
        return text
    plot = f"\n\n![accuracy and stability of activations against α]({entry['plot']})" if entry.get("plot") else ""
    return (f"The quick `alpha-sweep` ({setup.get('model', 'vgg11')} at width factor {setup.get('width_factor')}, "
            f"{names}, {setup.get('n_train')}/{setup.get('n_test')} train/test images, {setup.get('epochs')} "
            f"epochs; {_seconds(entry['wall_s'])} wall time; {when}), test accuracy per α: "
            + "; ".join(cell(p) for p in entry["sweep"]) + "." + plot)


def _over_seeds(n: int) -> str:
    """"mean ± std over n seeds", or "one seed" (no spread to show)."""
    return "one seed" if n == 1 else f"mean ± std over {n} seeds"


def _ntk_gap_table(gap: dict, when: str) -> str:
    lines = ["| width | one init: min – max | one init: median | mean of the inits |", "|---|---|---|---|"]
    for width, entry in gap["widths"].items():
        one = sorted(entry["one_init"])
        lines.append(f"| {width} | {100 * one[0]:.1f}% – {100 * one[-1]:.1f}% | "
                     f"{100 * statistics.median(one):.1f}% | {100 * entry['mean_of_inits']:.1f}% |")
    return "\n".join(lines + ["", (
        f"‖Θ̂ − Θ‖_F / ‖Θ‖_F between the empirical NTK Θ̂ of `nets.CNN(3, channels=width, depth={gap['depth']})` "
        f"(ReLU, 'ntk' parameterization, GAP readout, float64) and `kernels.Convolutional(depth={gap['depth']})`, "
        f"on {gap['images']} standard-normal images 3×{gap['size']}×{gap['size']}, for each of {gap['inits']} "
        f"initialisations and for their mean; measured by `python -m compare bench readme --only ntk-gap` on "
        f"{when}.")])


def _plots_markdown(plots: dict, when: str) -> str:
    parts = []
    for name, entry in plots.items():
        if name == "when":
            continue
        parts.append(f"### `{name}`")
        parts.append("")
        if "skipped" in entry:
            parts += [f"Not drawn: {entry['skipped']}.", ""]
            continue
        parts += [f"From `{entry['command']}` ({entry['runs']} runs).", ""]
        for figure in entry["figures"]:
            file = figure["file"].split("/", 1)[1] if figure["file"].startswith("docs/") else figure["file"]
            parts += [f"![{name}: {Path(file).stem}]({file})", "", figure["caption"], ""]
    return "\n".join(parts + [f"Drawn by `python -m compare bench readme --only plots` on {when}."])


def _reading_sentence(reading) -> str:
    agreement, change = reading["agreement"], reading["weight_change"]

    def pct(key):
        value = agreement.get(key)
        return "–" if value is None else f"{100 * value:.1f}%"
    scales = list(agreement)
    low, high = scales[0], scales[-1]
    shown = [s for s in ("1.0", "10.0", "1000.0") if s in agreement] or scales
    return ("Read it as: the lazy net's agreement with the empirical-NTK gradient flow rises with α ("
            + ", ".join(f"{pct(s)} of the test digits at α = {float(s):g}" for s in shown)
            + f"), while its weight change falls like 1/α ({change[low]:.2g} at α = {float(low):g} → "
              f"{change[high]:.2g} at α = {float(high):g}) and its NTK drift with it; the linearized net follows "
              f"the flow exactly. " + (
                  f"The normally scaled, uncentred net (h(w₀) ≠ 0) is a different predictor "
                  f"({100 * reading['net_agreement']:.1f}% agreement)." if "net_agreement" in reading else
                  f"The standard net is centred as the authors train it (it is the lazy net at α = 1); the "
                  f"uncentred one (h(w₀) ≠ 0) is a different predictor "
                  f"({100 * reading['uncentred_agreement']:.1f}% agreement). Every network row trains to the same "
                  f"train loss; the line under the table says what the gap is on digits."))


def replace_blocks(text: str, blocks: dict) -> str:
    """``text`` with the content between each block's markers replaced (every named block must be there)."""
    for name, content in blocks.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        pattern = re.compile(re.escape(begin) + r"\n.*?\n?" + re.escape(end), flags=re.S)
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"the text must hold exactly one {begin} ... {end} pair for block {name!r}")
        text = pattern.sub(lambda _: f"{begin}\n{content}\n{end}", text)
    return text


def read_blocks(text: str) -> dict:
    """{name: content} of every marked block in ``text``."""
    pattern = re.compile(r"<!-- bench-readme:([\w-]+) -->\n(.*?)\n?<!-- /bench-readme:\1 -->", flags=re.S)
    return {name: content for name, content in pattern.findall(text)}


def load_figures(path=None) -> dict | None:
    """The figures record (default docs/figures.json), or None when there is none yet."""
    try:
        return json.loads(Path(path or FIGURES).read_text())
    except (OSError, ValueError):
        return None


def preset_time(experiment: str, preset: str, path=None) -> str | None:
    """"80 s measured (machine, date)" for ``--help``, from docs/figures.json; None when not measured."""
    figures = load_figures(path)
    entry = ((figures or {}).get("presets", {}).get(experiment, {}).get(preset) or {})
    if "wall_s" not in entry:
        return None
    when = entry.get("when", figures)
    return f"{_seconds(entry['wall_s'])} measured ({when['machine_short']}, {when['date']})"


# ------------------------------------------------------------------------------------------------ main
def rewrite_blocks(root: Path, blocks: dict, log=None) -> list:
    """Rewrite each block in every Markdown file of :func:`doc_files` that holds its markers; return the files
    changed. A block that no file holds is named through ``log`` and left out (its author adds the markers; the
    figures stay in docs/figures.json); a file holding one block twice is an error."""
    texts = {path: path.read_text() for path in doc_files(root)}
    held = {name: [path for path, text in texts.items() if BEGIN.format(name=name) in text] for name in blocks}
    for name in [name for name, paths in held.items() if not paths]:
        (log or print)(f"no file under {root} (README.md, docs/*.md) has a {BEGIN.format(name=name)} ... "
                       f"{END.format(name=name)} block: {name!r} left out")
    changed = []
    for path, text in texts.items():
        mine = {name: content for name, content in blocks.items() if path in held[name]}
        new = replace_blocks(text, mine) if mine else text
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def copy_docs(root: Path, target: Path) -> Path:
    """A copy of ``root``'s README.md and docs/*.md in ``target`` (for --quick), kept when it exists already."""
    for path in doc_files(root):
        copy = target / path.relative_to(root)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare bench readme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds for mean ± std (default 3)")
    parser.add_argument("--presets", default="quick", metavar="LIST",
                        help="presets to time, comma-separated from quick, full, paper (default quick)")
    parser.add_argument("--only", default=",".join(JOBS), metavar="LIST",
                        help=f"jobs to rerun, comma-separated from {', '.join(JOBS)} (default all; the others "
                             "keep their recorded figures)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite the blocks from the figures file as they are")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: every experiment shrunk to seconds; writes into --out, not the repo")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the runs (default results/bench-readme[-quick])")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="folder holding the README.md and docs/ to update (default this checkout; with "
                             "--quick a copy in --out)")
    parser.add_argument("--figures", default=None, metavar="FILE",
                        help="figures file (default docs/figures.json; with --quick one in --out)")
    args = parser.parse_args(argv)
    jobs = [] if args.render else [j.strip() for j in args.only.split(",") if j.strip()]
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for value, valid, what in ((jobs, JOBS, "--only job"), (presets, PRESET_NAMES, "--presets entry")):
        bad = [v for v in value if v not in valid]
        if bad or (not value and not args.render):
            parser.error(f"unknown {what} {bad or value!r}; valid: {', '.join(valid)}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    out = Path(args.out or f"results/bench-readme{'-quick' if args.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.root) if args.root else (copy_docs(REPO_ROOT, out / "docs-copy") if args.quick else REPO_ROOT)
    figures_path = Path(args.figures) if args.figures else (out / "figures.json" if args.quick else FIGURES)
    figures = load_figures(figures_path) or {}
    if jobs:
        from compare.bench.harness import machine_info
        when = {"date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}", "machine": machine_info(),
                "machine_short": machine_info().split(";")[0], "load_average": os.getloadavg()[0],
                "quick": args.quick,
                "command": "python -m compare bench readme " + " ".join(argv if argv is not None else sys.argv[1:])}
        figures.update(when)   # the last run; each figure keeps the "when" of the run that measured it

    def log(message):
        print(message, file=sys.stderr, flush=True)
    if "presets" in jobs:   # only the presets run now are replaced
        for experiment, entries in measure_presets(out, presets, args.quick, log, root).items():
            for preset, entry in entries.items():
                figures.setdefault("presets", {}).setdefault(experiment, {})[preset] = {**entry, "when": when}
    if "seeds" in jobs:
        figures["seeds"] = {**measure_seeds(out, args.seeds, args.quick, log), "when": when}
    if "nets-example" in jobs:
        texts = [path.read_text() for path in doc_files(root)]
        figures["nets_example"] = {**measure_nets_example(texts, out / "nets-example", log), "when": when}
    if "ntk-gap" in jobs:
        figures["ntk_gap"] = {**measure_ntk_gap(args.quick, log), "when": when}
    if "plots" in jobs:
        figures["plots"] = {**measure_plots(out, root, args.quick, log), "when": when}
    if jobs:
        figures_path.parent.mkdir(parents=True, exist_ok=True)
        figures_path.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    blocks = render_blocks(figures)
    changed = rewrite_blocks(root, blocks, log)
    print(f"figures: {figures_path}\nblocks rendered: {', '.join(blocks)}\nfiles rewritten: "
          + (", ".join(str(p) for p in changed) or "none (already up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
