"""rates through the CLI on a reduced preset (``--set steps=100``): the slopes of Theorem 2.2."""
import numpy as np

from compare.cli import main


def test_rates_slopes_match_theorem_2_2(tmp_path, rows_of, capsys):
    """Two-layer tanh network, m = 200, α ∈ {1, 10, 100, 1000}: measured slopes −1.01, −1.99, −0.98; the
    terminal summary prints the same fitted slopes as report.md."""
    assert main(["rates", "--out", str(tmp_path), "--quiet", "--threads", "1", "--set", "steps=100"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Fitted log-log slopes")]
    assert len(printed) == 1 and printed[0] in (tmp_path / "report.md").read_text()
    _, rows = rows_of(tmp_path)
    from compare.present.report import fit_loglog_slope
    alpha = [r["scale"] for r in rows]
    slopes = [fit_loglog_slope(alpha, [r[f] for r in rows])
              for f in ("weight_distance", "param_distance", "function_distance")]
    np.testing.assert_allclose(slopes, [-1.0, -2.0, -1.0], atol=0.1)
    assert "Fitted log-log slopes" in (tmp_path / "report.md").read_text()
