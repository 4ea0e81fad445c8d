"""PNG plots for reports (matplotlib, Agg): a metric against the scale α or τ, and the shared axes styling.

Each function takes the rows of a sweep (pooled over seeds by :func:`compare.present.summary.aggregate`), writes one
PNG and returns its path, or None when the rows hold nothing to draw. Experiments with a plot of their own
build it from :func:`pyplot`, :func:`series` and :func:`finish`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from compare.present.summary import aggregate


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


def plot_vs_scale(rows, field, path, ylabel, title, percent=False, methods=()) -> Path | None:
    """``field`` against α for α-dependent methods (lines) and α-free ones (horizontal bands): one PNG.
    Methods are drawn in the order ``methods``, any others after them by name."""
    groups = [g for g in aggregate(rows, ["model", "method", "scale"], methods, [field]) if field in g]
    if not groups:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    k = 100.0 if percent else 1.0
    scales = [g["scale"] for g in groups if g["scale"] is not None]
    lo, hi = (min(scales), max(scales)) if scales else (0.1, 10.0)
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)
    for method in tuple(methods) + tuple(sorted({g["method"] for g in groups} - set(methods))):
        color = None
        x, mean, std = series(groups, method, field)
        if len(x):
            color = next(colors)
            ax.errorbar(x, k * mean, yerr=k * std, marker="o", capsize=3, color=color, label=method)
        for g in groups:
            if g["method"] == method and g["scale"] is None:
                color = color or next(colors)
                m, s, _ = g[field]
                ax.hlines(k * m, lo, hi, colors=color, linestyles="--", label=method)
                if s:
                    ax.fill_between([lo, hi], k * (m - s), k * (m + s), color=color, alpha=0.15)
    return finish(plt, fig, ax, path, "lazy scale α", ylabel, title, log_y=False,
                  legend=dict(loc="center right", framealpha=0.9))


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
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
