"""DIR/report.md for a sweep: its configuration, the summary table, the experiment's plots with captions.

What the report shows comes from the experiment's declaration (:class:`compare.experiment.Experiment`): the
grouping, metrics and method order of the summary (:mod:`compare.present.summary`), the notes under it, the figures
(PNG, beside report.md). ``experiment`` may be given as the declaration
or by name; rows that do not say which experiment they come from are laid out with every registered
experiment's metrics and methods.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from compare import experiments
from compare.present.summary import aggregate as _aggregate
from compare.present.summary import fit_loglog_slope, summary_table as _summary_table  # noqa: F401  (public API)
from compare.present.summary import spread_phrase
from compare.present.tables import format_table


@dataclasses.dataclass(frozen=True)
class Layout:
    """How rows of unknown origin are summarised: every registered experiment's metrics and methods."""
    methods: tuple
    metrics: dict
    percent: tuple
    group_by: tuple = ("model", "method", "scale")
    scale_label: str = "α"


def layout_of(rows, experiment=None):
    """The experiment's declaration (given, by name, or named by the rows' ``experiment`` field), else a
    :class:`Layout` that shows every registered experiment's metrics."""
    if isinstance(experiment, str):
        return experiments.get(experiment)
    if experiment is not None:
        return experiment
    named = {row.get("experiment") for row in rows} - {None}
    if len(named) == 1 and next(iter(named)) in experiments.names():
        return experiments.get(next(iter(named)))
    metrics, percent = {}, []
    for exp in (experiments.get(name) for name in experiments.names()):
        metrics.update({k: v for k, v in exp.metrics.items() if k not in metrics})
        percent += [f for f in exp.percent if f not in percent]
    return Layout(experiments.method_order(), metrics, tuple(percent))


def aggregate(rows, keys=None, experiment=None) -> list[dict]:
    """Pool rows that agree on ``keys`` (default: the experiment's ``group_by``): each metric becomes
    (mean, std, count); groups in the experiment's method order."""
    layout = layout_of(rows, experiment)
    return _aggregate(rows, list(keys or layout.group_by), layout.methods, layout.metrics)


def summary_table(rows, experiment=None) -> tuple[list[str], list[list[str]]]:
    """(headers, body) of the summary table, laid out as the experiment declares (see compare.present.summary)."""
    return _summary_table(rows, layout_of(rows, experiment))


def write_report(out_dir, experiment, rows, sweep_config: dict, intro: str = "") -> Path:
    """Write DIR/report.md (and its PNG plots beside it); return the report's path."""
    layout = layout_of(rows, experiment)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = getattr(layout, "name", None) or (experiment if isinstance(experiment, str) else "sweep")
    headers, body = _summary_table(rows, layout)
    percent = [layout.metrics[f] for f in layout.percent if f in layout.metrics]
    parts = [f"# lazykit `{name}` report", ""]
    if intro:
        parts += [intro.strip(), ""]
    parts += ["## Configuration", "", "```", *(f"{k}: {v}" for k, v in sorted(sweep_config.items())), "```", "",
              f"{len(rows)} runs; metrics: {spread_phrase(rows, list(layout.group_by))}"
              + (f" ({', '.join(percent)} in %)." if percent else "."), "",
              "## Summary", "", format_table(headers, body, style="compact"), ""]
    notes = getattr(layout, "notes", None)
    if notes is not None:
        parts += [notes(rows), ""]
    figures = [figure.render(rows, out) for figure in getattr(layout, "figures", ())]
    if any(path is not None for path, _ in figures):
        parts += ["## Plots", ""]
        for path, caption in figures:
            if path is not None:
                parts += [f"![{path.stem}]({path.name})", "", caption, ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report
