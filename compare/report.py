"""Summaries of a sweep: the table printed at the end of a run, PNG plots, and DIR/report.md.

Rows are the JSON objects of DIR/results.jsonl. Runs that differ only in ``seed`` are pooled and shown
as mean ± standard deviation (sample std, ddof = 1; a single seed shows no ±).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from compare.tables import format_table

# metric fields shown in summary tables, in this order, with their column titles
METRICS = {
    "test_accuracy": "test acc",
    "test_mse": "test MSE",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "agreement": "agreement",
    "weight_change": "weight change",
    "ntk_drift": "NTK drift",
    "unchanged_activations": "unchanged ReLU",
    "weight_distance": "sup‖w_α−w₀‖/‖w₀‖",
    "param_distance": "‖w_α−w̄_α‖",
    "function_distance": "‖h_α−h̄_α‖",
}
PERCENT = ("test_accuracy", "agreement", "unchanged_activations")   # fractions shown in %
METHOD_ORDER = ("net", "lazy", "linearized", "empirical_ntk", "empirical_ntk_krr", "ntk", "nngp", "rff")

# the paper's Table 1 (Chizat, Oyallon & Bach 2019): CIFAR-10 test accuracy in %
PAPER_TABLE1 = {("vgg11", "net"): 89.7, ("vgg11", "linearized"): 61.7,
                ("resnet18", "net"): 91.0, ("resnet18", "linearized"): 56.7}


# ---------------------------------------------------------------------------------------- aggregation
def _order(row):
    method = row.get("method")
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    scale = row.get("scale")
    return (str(row.get("model")), row.get("d") or 0, rank, -math.inf if scale is None else scale)


def group_keys(rows) -> list[str]:
    """Columns that identify a group of seeds: model, method, scale, and d for teacher–student."""
    keys = ["model", "method", "scale"]
    if any(row.get("experiment") == "teacher-student" for row in rows):
        keys.insert(1, "d")
    return keys


def aggregate(rows, keys=None) -> list[dict]:
    """Pool rows that agree on ``keys`` (all but the seed): each metric becomes (mean, std, count)."""
    keys = keys or group_keys(rows)
    groups = defaultdict(list)
    for row in sorted(rows, key=_order):
        groups[tuple(row.get(k) for k in keys)].append(row)
    out = []
    for key, members in groups.items():
        entry = dict(zip(keys, key))
        entry["runs"] = len(members)
        entry["diverged"] = sum(bool(m.get("diverged")) for m in members)
        for field in METRICS:
            values = [m[field] for m in members if isinstance(m.get(field), (int, float))]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else None
                entry[field] = (float(np.mean(values)), std, len(values))
        out.append(entry)
    return out


def fit_loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (points with y <= 0 are left out)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


# ---------------------------------------------------------------------------------------------- tables
def _fmt(value, field) -> str:
    if value is None:
        return "–"
    mean, std, _ = value
    if field in PERCENT:
        text = f"{100 * mean:.1f}"
        return text + (f" ± {100 * std:.1f}" if std is not None else "")
    text = f"{mean:.3g}"
    return text + (f" ± {std:.2g}" if std is not None else "")


def summary_table(rows, paper: bool = False) -> tuple[list[str], list[list[str]]]:
    """(headers, body) of the summary: one line per (model, [d,] method, scale), metrics as mean ± std.

    Accuracy and agreement are in %; runs whose training diverged have no metrics (shown as "diverged",
    and left out of the means when only some seeds diverged). ``paper=True`` adds the paper's Table 1
    numbers where they exist.
    """
    keys = group_keys(rows)
    groups = aggregate(rows, keys)
    fields = [f for f in METRICS if any(f in g for g in groups)]
    headers = [{"scale": "τ" if "d" in keys else "α"}.get(k, k) for k in keys] + \
        [METRICS[f] + (" %" if f in PERCENT else "") for f in fields] + ["seeds"]
    body = []
    for g in groups:
        line = ["–" if g[k] is None else f"{g[k]:g}" if isinstance(g[k], float) else str(g[k]) for k in keys]
        blank = "diverged" if g["diverged"] == g["runs"] else "–"
        line += [blank if g.get(f) is None else _fmt(g[f], f) for f in fields] + [str(g["runs"])]
        body.append(line)
    if paper:
        headers.append("paper acc %")
        for g, line in zip(groups, body):
            value = PAPER_TABLE1.get((g.get("model"), g.get("method")))
            line.append("–" if value is None else f"{value:.1f}")
    return headers, body


# ----------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _series(groups, method, field, model=None, d=None):
    pts = [g for g in groups if g["method"] == method and field in g and g.get("scale") is not None
           and (model is None or g.get("model") == model) and (d is None or g.get("d") == d)]
    pts.sort(key=lambda g: g["scale"])
    x = np.array([g["scale"] for g in pts], float)
    mean = np.array([g[field][0] for g in pts], float)
    std = np.array([g[field][1] or 0.0 for g in pts], float)
    return x, mean, std


def plot_vs_scale(rows, field, path, ylabel, title, percent=False) -> Path | None:
    """``field`` against α for α-dependent methods (lines) and α-free ones (horizontal bands): one PNG."""
    groups = [g for g in aggregate(rows, ["model", "method", "scale"]) if field in g]
    if not groups:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    k = 100.0 if percent else 1.0
    scales = [g["scale"] for g in groups if g["scale"] is not None]
    lo, hi = (min(scales), max(scales)) if scales else (0.1, 10.0)
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)
    for method in METHOD_ORDER + tuple(sorted({g["method"] for g in groups} - set(METHOD_ORDER))):
        color = None
        x, mean, std = _series(groups, method, field)
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
    return _finish(plt, fig, ax, path, "lazy scale α", ylabel, title, log_y=False,
                   legend=dict(loc="center right", framealpha=0.9))


def plot_rates(rows, path) -> tuple[Path | None, dict]:
    """Theorem 2.2's three distances against α on log-log axes, with fitted slopes (expected −1, −2, −1)."""
    groups = aggregate(rows, ["model", "method", "scale"])
    fields = {"weight_distance": -1, "param_distance": -2, "function_distance": -1}
    slopes = {}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for field, expected in fields.items():
        x, mean, std = _series(groups, "lazy", field)
        if not len(x):
            continue
        slopes[field] = fit_loglog_slope(x, mean)
        line = ax.errorbar(x, mean, yerr=std, marker="o", capsize=3,
                           label=f"{METRICS[field]}: slope {slopes[field]:.2f} (theory {expected})")
        ref = mean[0] * (x / x[0]) ** expected
        ax.plot(x, ref, ls=":", color=line[0].get_color(), alpha=0.6)
    if not slopes:
        plt.close(fig)
        return None, slopes
    return _finish(plt, fig, ax, path, "lazy scale α", "distance at the end of training",
                   "Theorem 2.2: distances vs α (dotted: theoretical slopes)"), slopes


def plot_teacher_student(rows, path) -> Path | None:
    """Test loss at the end of training against the init scale τ, one curve per input dimension d."""
    groups = aggregate(rows, ["d", "model", "method", "scale"])
    dims = sorted({g["d"] for g in groups if g.get("d") is not None})
    if not dims:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for d in dims:
        x, mean, std = _series(groups, "net", "test_loss", d=d)
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=f"d = {d}")
    return _finish(plt, fig, ax, path, "initialisation scale τ", "test loss (mean ± std over seeds)",
                   "Teacher–student: large τ (lazy) generalises worse")


def _finish(plt, fig, ax, path, xlabel, ylabel, title, log_y=True, legend=None) -> Path:
    """Log-scaled axes, labels, grid and legend; save the PNG and close the figure."""
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, **(legend or {}))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------------------------------------- report
def write_report(out_dir, experiment: str, rows, sweep_config: dict, intro: str = "") -> Path:
    """Write DIR/report.md (and its PNG plots beside it); return the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    headers, body = summary_table(rows, paper=experiment == "table")
    parts = [f"# lazykit `{experiment}` report", ""]
    if intro:
        parts += [intro.strip(), ""]
    parts += ["## Configuration", "", "```", *(f"{k}: {v}" for k, v in sorted(sweep_config.items())), "```", "",
              f"{len(rows)} runs; metrics are mean ± std over seeds (accuracy and agreement in %).", "",
              "## Summary", "", format_table(headers, body, style="compact"), ""]
    figures = []
    if experiment == "equivalence":
        metric = "test_accuracy" if any("test_accuracy" in r for r in rows) else "test_mse"
        label = "test accuracy %" if metric == "test_accuracy" else "test MSE"
        figures.append((plot_vs_scale(rows, metric, out / "accuracy.png", label,
                                      f"{label} vs α (dashed: methods without α)", percent=metric ==
                                      "test_accuracy"),
                        "Test performance of each method against the lazy scale α. Dashed lines: the "
                        "normally trained net, the linearized net and the kernel predictors, which do not "
                        "depend on α (bands: ± std over seeds)."))
        figures.append((plot_vs_scale(rows, "agreement", out / "agreement.png", "agreement %",
                                      "agreement with the empirical-NTK predictor", percent=True),
                        "Fraction of test points on which a method's prediction agrees with the empirical-NTK "
                        "gradient-flow predictor at the matching training time. Lazy training approaches 100% "
                        "as α grows."))
        figures.append((plot_vs_scale(rows, "weight_change", out / "weight_change.png",
                                      "‖w_T − w₀‖ / ‖w₀‖", "relative weight change"),
                        "Relative weight change at the end of training: O(1/α) for the lazy net."))
    elif experiment == "rates":
        path, slopes = plot_rates(rows, out / "rates.png")
        text = "Fitted log-log slopes: " + ", ".join(f"{METRICS[k]} {v:.2f}" for k, v in slopes.items()) + \
            " (Theorem 2.2: −1, −2, −1)."
        figures.append((path, text))
        parts += [text, ""]
    elif experiment == "teacher-student":
        figures.append((plot_teacher_student(rows, out / "teacher_student.png"),
                        "Test loss at the end of training against the initialisation scale τ, mean ± std "
                        "over seeds: small τ learns the teacher's 3 directions, large τ trains lazily "
                        "and generalises worse, more so in high dimension."))
    if any(f[0] for f in figures):
        parts += ["## Plots", ""]
        for path, caption in figures:
            if path is not None:
                parts += [f"![{path.stem}]({path.name})", "", caption, ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report
