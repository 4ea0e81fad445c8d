"""What an experiment declares: its data sets, presets, plan, one run, and what its report shows.

Each module of ``compare/experiments/`` exports one :class:`Experiment` as ``EXPERIMENT``; the registry in
``compare.experiments`` finds them, and the command line, the report and ``gpu-check`` read everything they
need from the declaration (no other module branches on an experiment's name). A new experiment is one module
plus its test::

    EXPERIMENT = Experiment(
        name="my-experiment", summary=__doc__, datasets=("digits",),
        presets={"quick": Preset("a CPU", n_train=100, seeds=1)},
        plan=plan, run_one=run_one, methods=("net", "lazy"), metrics={"test_accuracy": "test acc"},
        percent=("test_accuracy",), axes=("method", "scale", "seed"))

``plan(config) -> [Run, ...]`` expands a :class:`Config` (the resolved command line) into runs;
``run_one(run, memo) -> dict`` computes one run's metrics (``memo``: a :class:`compare.sweep.memo.Memo` shared by the
runs that ``shared_work`` puts together, or a fresh one).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

PRESET_NAMES = ("quick", "full", "paper")


def learning_rate(lr_factor: float, scale: float, formula: str) -> float:
    """lr = lr_factor·scale (the experiment's ``formula``, e.g. "lr_factor·n/λ_max(Θ₀)"), or a ValueError naming
    ``--set lr_factor`` when the product is not a finite positive number (lr_factor=1e308 gave lr = inf, which
    ``nets.train`` then refused naming ``lr``, an option the caller never set)."""
    lr = lr_factor * scale
    if not (0 < lr < float("inf")):
        raise ValueError(f"--set lr_factor={lr_factor:g} gives the learning rate lr = {formula} = {lr:g} "
                         f"(the factor is multiplied by {scale:.3g}); lr must be a finite number > 0, so lr_factor "
                         f"must stay below {1.7976931348623157e308 / scale:.3g} (stable gradient descent needs "
                         "lr_factor < 2)")
    return lr


class Preset:
    """A named size of a sweep: ``hardware`` (what it is meant for, e.g. "a CPU", "one GPU"; ``--help`` adds
    the wall time ``python -m compare bench readme`` measured, from docs/figures.json) and its settings (every
    key can be overridden with ``--set KEY=VALUE``; ``seeds`` with ``--seeds``)."""

    def __init__(self, hardware: str, **settings):
        if not isinstance(hardware, str) or not hardware:
            raise ValueError("a preset needs the hardware it is meant for, e.g. 'a CPU' or 'one GPU'")
        if "seeds" not in settings:
            raise ValueError("a preset needs 'seeds' (the number of seeds per configuration)")
        self.hardware = hardware
        self.settings = dict(settings)

    def __repr__(self):
        return f"Preset({self.hardware!r}, {', '.join(f'{k}={v!r}' for k, v in self.settings.items())})"


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved command line that ``plan`` expands: the preset's settings with ``--set``/``--seeds``
    applied (``params``), the devices already resolved to "cpu" or "cuda" (``device`` for the torch networks,
    ``kernel_device`` for the kernels: ``kernels.resolve_devices``; None: the same), the local workers and the
    torch threads of each (``compare.options.resolve_jobs``)."""
    experiment: str
    dataset: str
    preset: str
    params: dict
    device: str
    data_dir: str | None = None
    kernel_device: str | None = None
    jobs: int = 1                      # local worker processes
    threads: int = 1                   # torch threads per worker

    @property
    def kernels_device(self) -> str:
        return self.kernel_device or self.device

    @property
    def devices(self) -> dict:
        return {"nets": self.device, "kernels": self.kernels_device}

    def run_devices(self) -> dict:
        """The keyword arguments that put a ``Run`` on these devices."""
        return {"device": self.device,
                "kernel_device": self.kernel_device if self.kernels_device != self.device else None}


@dataclasses.dataclass(frozen=True)
class Figure:
    """One plot of report.md: ``draw(rows, path) -> path or None`` (None: nothing to draw), and its caption
    (a string, or ``caption(rows) -> str``)."""
    filename: str
    draw: Callable
    caption: str | Callable = ""

    def render(self, rows, out_dir):
        """(path or None, caption) for these rows, the PNG written into ``out_dir``."""
        path = self.draw(rows, Path(out_dir) / self.filename)
        caption = self.caption(rows) if callable(self.caption) else self.caption
        return path, caption


@dataclasses.dataclass(frozen=True)
class GpuRun:
    """The run ``gpu-check`` makes of this experiment on a GPU: its preset, and the data set it needs."""
    preset: str = "quick"
    dataset: str | None = None


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The declaration of one experiment (see the module docstring).

    name: the command-line name. summary: the report's introduction (the module docstring), whose first line
    ("NAME: what it shows") is the one-line description of ``--help``.
    datasets: valid ``--dataset`` values, the first the default. presets: {name: Preset}.
    plan, run_one: see the module docstring. methods: the order of methods in tables and plots.
    metrics: {row field: column title} of the summary table, in column order; percent: those shown in %.
    axes: the run fields and params that vary within a sweep (seed, method, the α/τ grid, ...); every other
    field is a shared setting, fingerprinted in DIR/config.json so that results of other settings are refused.
    scale_field: "alpha" (lazy scale α) or "init_scale" (τ), stored under ``scale`` in results.jsonl.
    group_by: the columns that identify a group of seeds in the summary. figures: the report's plots.
    notes: ``notes(rows) -> str`` printed under the summary table.
    shared_work: ``shared_work(run) -> key``; runs with equal keys run in one task with one ``Memo``.
    gpu: what ``gpu-check`` runs (None: nothing).
    """
    name: str
    summary: str
    datasets: tuple
    presets: dict
    plan: Callable
    run_one: Callable
    methods: tuple
    metrics: dict
    percent: tuple = ()
    axes: tuple = ("method", "scale", "seed")
    scale_field: str = "alpha"
    group_by: tuple = ("model", "method", "scale")
    figures: tuple = ()
    notes: Callable | None = None
    shared_work: Callable | None = None
    gpu: GpuRun | None = None

    def __post_init__(self):
        if not self.datasets:
            raise ValueError(f"experiment {self.name!r} declares no datasets")
        if not self.presets or any(not isinstance(p, Preset) for p in self.presets.values()):
            raise ValueError(f"experiment {self.name!r}: presets must be a non-empty dict of Preset")
        if self.scale_field not in ("alpha", "init_scale"):
            raise ValueError(f"experiment {self.name!r}: scale_field must be 'alpha' or 'init_scale', "
                             f"got {self.scale_field!r}")

    @property
    def one_line(self) -> str:
        """What the experiment shows, in one line: the summary's first line without a leading "NAME: " (what
        ``python -m compare --help`` and README.md's table of experiments print)."""
        first = self.summary.strip().splitlines()[0].strip() if self.summary.strip() else self.name
        return first[len(self.name) + 1:].strip() if first.startswith(f"{self.name}:") else first

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    @property
    def scale_label(self) -> str:
        """The scale's column title: α (lazy scale) or τ (initialisation scale)."""
        return "α" if self.scale_field == "alpha" else "τ"

    def sweep_config(self, runs) -> dict:
        """The settings every run shares (each run's flat form without the ``axes``), fingerprinted by the
        runner; a plan whose runs disagree on a shared setting is an error."""
        shared = None
        for run in runs:
            mine = {k: v for k, v in run.config().items() if k not in self.axes}
            if shared is None:
                shared = mine
            elif mine != shared:
                keys = sorted(k for k in set(mine) | set(shared) if mine.get(k) != shared.get(k))
                raise ValueError(f"experiment {self.name!r}: runs differ in {', '.join(keys)}, which is not "
                                 f"one of its axes ({', '.join(self.axes)})")
        return shared or {"experiment": self.name}
