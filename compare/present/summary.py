"""Summaries of a sweep's rows: seeds pooled into mean ± std, the summary table, log-log slopes.

Rows are the JSON objects of DIR/results.jsonl. Runs that differ only in ``seed`` are pooled and shown as
mean ± standard deviation (sample std, ddof = 1; a single seed shows no ±). What to group by, which metrics to
show (in which order, which of them in %) and the order of methods come from
the experiment's declaration (:class:`compare.experiment.Experiment`), passed here as ``layout``.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

# column titles of the metrics the built-in experiments report (an experiment may add its own)
TITLES = {
    "test_accuracy": "test acc",
    "test_mse": "test MSE",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "agreement": "agreement",
    "weight_change": "weight change",
    "ntk_drift": "NTK drift",
    "unchanged_activations": "unchanged gates",
    "weight_distance": "sup‖w_α−w₀‖/‖w₀‖",
    "param_distance": "‖w_α−w̄_α‖",
    "function_distance": "‖h_α−h̄_α‖",
}


def metric_titles(*fields) -> dict:
    """{field: column title} for these fields of :data:`TITLES`, in this order (an experiment's ``metrics``)."""
    unknown = [f for f in fields if f not in TITLES]
    if unknown:
        raise ValueError(f"no column title for {', '.join(unknown)}; give them in the experiment's metrics dict")
    return {f: TITLES[f] for f in fields}


def _rank(value, order) -> int:
    return order.index(value) if value in order else len(order)


def _sort_key(row, keys, methods):
    out = []
    for k in keys:
        value = row.get(k)
        if k == "method":
            out.append((_rank(value, methods), str(value)))
        elif k == "scale":
            out.append(-math.inf if value is None else value)
        elif k == "model":
            out.append(str(value))
        else:
            out.append(value if isinstance(value, (int, float)) else 0)
    return tuple(out)


def aggregate(rows, keys, methods=(), metrics=()) -> list[dict]:
    """Pool rows that agree on ``keys`` (all but the seed): each metric field becomes (mean, std, count).

    Groups come sorted by ``keys``, methods in the order ``methods``, runs without a scale first."""
    groups = defaultdict(list)
    for row in sorted(rows, key=lambda r: _sort_key(r, keys, tuple(methods))):
        groups[tuple(row.get(k) for k in keys)].append(row)
    out = []
    for key, members in groups.items():
        entry = dict(zip(keys, key))
        entry["runs"] = len(members)
        entry["diverged"] = sum(bool(m.get("diverged")) for m in members)
        entry["collapsed"] = sum(bool(m.get("collapsed")) for m in members)
        for field in metrics:
            values = [m[field] for m in members
                      if isinstance(m.get(field), (int, float)) and not isinstance(m.get(field), bool)]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else None
                entry[field] = (float(np.mean(values)), std, len(values))
        out.append(entry)
    return out


def several_seeds(rows) -> bool:
    """Whether the rows hold two seeds or more: only then is there a spread (± std) to show."""
    return len({row.get("seed") for row in rows}) >= 2


def spread_phrase(rows, keys) -> str:
    """How a table of these rows, grouped by ``keys``, pools seeds: "mean ± std over K seeds" when every group
    has K ≥ 2 runs, "one seed: no ± std" when every group has one, else a word on each (the seeds column)."""
    counts = {g["runs"] for g in aggregate(rows, keys)}
    if counts == {1} or not counts:
        return "one seed: no ± std"
    if len(counts) == 1 and min(counts) >= 2:
        return f"mean ± std over {counts.pop()} seeds"
    return "mean ± std over the seeds of each row (the seeds column; no ± std where it is 1)"


def fit_loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (points with y <= 0 are left out)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def format_metric(value, percent: bool) -> str:
    """(mean, std, count) as "81.0 ± 1.4" (in %, one decimal) or "0.0428 ± 0.0012" (3 and 2 significant
    digits); "–" when missing."""
    if value is None:
        return "–"
    mean, std, _ = value
    if percent:
        return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")
    return f"{mean:.3g}" + (f" ± {std:.2g}" if std is not None else "")


def summary_table(rows, layout) -> tuple[list[str], list[list[str]]]:
    """(headers, body) of the summary: one line per group (``layout.group_by``), metrics as mean ± std.

    Fractions (``layout.percent``) are shown in %; runs whose training diverged, or whose predictions collapsed
    to one class, have no accuracy (shown as "diverged" / "collapsed", and left out of the means when only some
    seeds did).
    """
    keys = list(layout.group_by)
    groups = aggregate(rows, keys, layout.methods, layout.metrics)
    fields = [f for f in layout.metrics if any(f in g for g in groups)]
    headers = [layout.scale_label if k == "scale" else k for k in keys] + \
        [layout.metrics[f] + (" %" if f in layout.percent else "") for f in fields] + ["seeds"]
    body = []
    for g in groups:
        line = ["–" if g[k] is None else f"{g[k]:g}" if isinstance(g[k], float) else str(g[k]) for k in keys]
        blank = ("diverged" if g["diverged"] == g["runs"] else
                 "collapsed" if g["collapsed"] + g["diverged"] == g["runs"] and g["collapsed"] else "–")
        line += [blank if g.get(f) is None else format_metric(g[f], f in layout.percent) for f in fields]
        body.append(line + [str(g["runs"])])
    return headers, body
