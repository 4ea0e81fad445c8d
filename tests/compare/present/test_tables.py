"""The one table formatter: padded Markdown (BENCHMARKS.md, gpu-check), compact Markdown (report.md), text."""
import pytest

from compare.present.tables import format_table

HEADER, ROWS = ["n", "method"], [[10, "ours"], [2000, "sklearn"]]


def test_markdown_pads_every_column_to_its_widest_cell():
    assert format_table(HEADER, ROWS).splitlines() == [
        "| n    | method  |",
        "|------|---------|",     # width + 2 dashes: the cell's padding spaces
        "| 10   | ours    |",
        "| 2000 | sklearn |",
    ]


def test_compact_markdown_and_text():
    assert format_table(HEADER, ROWS, style="compact").splitlines() == [
        "| n | method |", "|---|---|", "| 10 | ours |", "| 2000 | sklearn |"]
    assert format_table(HEADER, ROWS, style="text").splitlines() == [
        "n     method ", "----  -------", "10    ours   ", "2000  sklearn"]


def test_bad_style_and_ragged_rows_are_refused():
    with pytest.raises(ValueError, match="unknown table style 'html'; valid: markdown, compact, text"):
        format_table(HEADER, ROWS, style="html")
    with pytest.raises(ValueError, match="table row 2 has 1 cells, the header 2"):
        format_table(HEADER, [[1, "a"], [2]])
