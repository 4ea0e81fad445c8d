"""PNG plots for reports (matplotlib, Agg): a metric against the scale α or τ, and the shared axes styling.

Each function takes the rows of a sweep (pooled over seeds by :func:`compare.present.summary.aggregate`), writes one
PNG and returns its path, or None when the rows hold nothing to draw. Experiments with a plot of their own
build it from :func:`pyplot`, :func:`series`, :func:`style` and :func:`finish`.

Every line stays visible: each method (or curve) gets its own colour, marker and line style (:func:`style`), and
lines that do not depend on α are drawn with their markers at staggered positions, so that two lines lying on
top of each other still show both markers; the legend then says which coincide.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from compare.present.summary import aggregate

# tab10's ten hues in order (neighbours in a method list never share a hue), markers and dash patterns
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
DASHES = ("--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)), (0, (8, 2, 2, 2)))
COINCIDE = 2e-3    # α-free lines closer than this fraction of the y range are said to coincide


def style(index: int, scaled: bool = True) -> dict:
    """Colour, marker and line style of the ``index``-th curve of a plot: solid for curves against the scale,
    a dash pattern of its own for horizontal (α-free) lines."""
    linestyle = "-" if scaled else DASHES[index % len(DASHES)]
    return {"color": COLORS[index % len(COLORS)], "marker": MARKERS[index % len(MARKERS)], "linestyle": linestyle}


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def series(groups, method, field, model=None, d=None):
    """(scales, means, stds) of ``field`` for ``method``'s groups that have a scale, sorted by scale."""
    pts = [g for g in groups if g["method"] == method and field in g and g.get("scale") is not None
           and (model is None or g.get("model") == model) and (d is None or g.get("d") == d)]
    pts.sort(key=lambda g: g["scale"])
    x = np.array([g["scale"] for g in pts], float)
    mean = np.array([g[field][0] for g in pts], float)
    std = np.array([g[field][1] or 0.0 for g in pts], float)
    return x, mean, std


def coinciding(levels: dict, span: float) -> list[list[str]]:
    """Groups (two or more) of α-free methods whose levels ``{method: value}`` lie within ``COINCIDE`` × ``span``
    of each other, in the order given."""
    groups, seen = [], set()
    for method, value in levels.items():
        if method in seen:
            continue
        same = [m for m, v in levels.items() if m not in seen and abs(v - value) <= COINCIDE * max(span, 1e-300)]
        seen.update(same)
        if len(same) > 1:
            groups.append(same)
    return groups


def plot_vs_scale(rows, field, path, ylabel, title, percent=False, methods=()) -> Path | None:
    """``field`` against α for α-dependent methods (solid lines) and α-free ones (horizontal lines with their
    own dash pattern; bands: ± std when there are two seeds or more): one PNG. Methods are drawn in the order
    ``methods``, any others after them by name; the legend says which α-free lines coincide."""
    groups = [g for g in aggregate(rows, ["model", "method", "scale"], methods, [field]) if field in g]
    if not groups:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=120)     # the legend sits to the right of the axes
    k = 100.0 if percent else 1.0
    scales = [g["scale"] for g in groups if g["scale"] is not None]
    lo, hi = (min(scales), max(scales)) if scales else (0.1, 10.0)
    order = tuple(methods) + tuple(sorted({g["method"] for g in groups} - set(methods)))
    free = {g["method"]: k * g[field][0] for g in groups if g["scale"] is None}
    every = max(1, len(free))
    marks = np.geomspace(lo, hi, 3 * every + 1) if hi > lo else np.array([lo])
    for i, method in enumerate(order):     # i: the method's place in the experiment's order, the same in every plot
        x, mean, std = series(groups, method, field)
        if len(x):
            ax.errorbar(x, k * mean, yerr=k * std, capsize=3, label=method, **style(i))
        for g in (g for g in groups if g["method"] == method and g["scale"] is None):
            m, s, _ = g[field]
            # markers staggered along the line (start at this method's slot): coinciding lines show each one
            ax.plot(marks, np.full(len(marks), k * m), markevery=(list(free).index(method), every), label=method,
                    **style(i, scaled=False))
            if s:
                ax.fill_between([lo, hi], k * (m - s), k * (m + s), color=style(i)["color"], alpha=0.15)
    values = [k * g[field][0] for g in groups]
    by_label = dict(zip(*reversed(ax.get_legend_handles_labels())))
    labels = [m for m in order if m in by_label]
    handles = [by_label[m] for m in labels]
    for same in coinciding(free, max(values) - min(values)):
        handles.append(plt.Line2D([], [], linestyle="none"))
        labels.append(" = ".join(same) + " (lines coincide)")
    return finish(plt, fig, ax, path, "lazy scale α", ylabel, title, log_y=False,
                  legend=dict(handles=handles, labels=labels, loc="center left", bbox_to_anchor=(1.02, 0.5),
                              framealpha=0.9))


def finish(plt, fig, ax, path, xlabel, ylabel, title, log_y=True, legend=None) -> Path:
    """Log-scaled axes, labels, grid and legend; save the PNG and close the figure."""
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(**{"fontsize": 8, **(legend or {})})
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
