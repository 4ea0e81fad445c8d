"""The one table formatter of lazykit: Markdown for report.md and BENCHMARKS.md, plain text for a terminal.

Used by ``compare.present.report`` (summary tables), ``compare.bench`` (benchmark tables), ``compare.gpu.check`` and
``python -m compare data list``. Cells are turned into text with ``str``.
"""
from __future__ import annotations

STYLES = ("markdown", "compact", "text")


def format_table(header, rows, style: str = "markdown") -> str:
    """``header`` and ``rows`` (sequences of cells) as one table.

    style: "markdown" pads every column to its widest cell (pastes straight into BENCHMARKS.md and stays
    readable as text); "compact" is Markdown without padding (``| a | b |``); "text" aligns columns with
    two spaces between them and a rule of dashes under the header, for a terminal.
    """
    if style not in STYLES:
        raise ValueError(f"unknown table style {style!r}; valid: {', '.join(STYLES)}")
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    for number, row in enumerate(cells[1:], start=1):
        if len(row) != len(cells[0]):
            raise ValueError(f"table row {number} has {len(row)} cells, the header {len(cells[0])}")
    if style == "compact":
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "---|" * len(cells[0]))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    if style == "text":
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
