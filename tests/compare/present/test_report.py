"""Reports: summary tables (mean ± std over seeds), log-log slopes, report.md and its PNG plots."""
import numpy as np
import pytest
from PIL import Image

from compare.present import report
from compare.present.tables import format_table


def equivalence_rows():
    rows = []
    for seed, noise in ((0, 0.0), (1, 0.02)):
        rows.append({"model": "mlp", "method": "net", "scale": None, "seed": seed, "test_accuracy": 0.80 + noise,
                     "agreement": 0.7, "weight_change": 0.3})
        rows.append({"model": "mlp", "method": "empirical_ntk", "scale": None, "seed": seed,
                     "test_accuracy": 0.90, "agreement": 1.0})
        for alpha in (1.0, 10.0, 100.0):
            rows.append({"model": "mlp", "method": "lazy", "scale": alpha, "seed": seed,
                         "test_accuracy": 0.9 - 0.1 / alpha + noise, "agreement": 1 - 0.2 / alpha,
                         "weight_change": 0.05 / alpha, "ntk_drift": 0.01 / alpha})
    return rows


def test_aggregate_pools_seeds_into_mean_and_sample_std():
    groups = report.aggregate(equivalence_rows())
    net = next(g for g in groups if g["method"] == "net")
    mean, std, count = net["test_accuracy"]
    # two seeds 0.80 and 0.82: mean 0.81, sample std |0.02|/√2 = 0.0141421...
    assert (mean, count) == (pytest.approx(0.81), 2) and std == pytest.approx(0.02 / 2 ** 0.5)
    assert [g["method"] for g in groups][:2] == ["net", "lazy"]          # the registered experiments' method order


def test_summary_table_formats_percent_and_dashes():
    headers, body = report.summary_table(equivalence_rows())
    assert headers[:3] == ["model", "method", "α"] and "test acc %" in headers and headers[-1] == "seeds"
    net = body[0]
    assert net[:3] == ["mlp", "net", "–"] and net[headers.index("test acc %")] == "81.0 ± 1.4"
    assert body[1][headers.index("NTK drift")] == "0.01 ± 0"                 # same value for both seeds
    assert "| mlp | net | – |" in format_table(headers, body, style="compact")


def test_diverged_and_collapsed_rows_show_no_accuracy():
    """A group whose seeds all collapsed to one class (or diverged) prints the word, not a number; one that
    only partly did keeps the mean of the others."""
    rows = [{"model": "vgg11", "method": "net", "scale": None, "seed": 0, "test_accuracy": 0.5},
            {"model": "vgg11", "method": "net", "scale": None, "seed": 1, "collapsed": True},
            {"model": "vgg11", "method": "lazy", "scale": 100.0, "seed": 0, "collapsed": True},
            {"model": "vgg11", "method": "linearized", "scale": None, "seed": 0, "diverged": True}]
    headers, body = report.summary_table(rows, "table")
    column = headers.index("test acc %")
    assert [line[column] for line in body] == ["50.0", "collapsed", "diverged"]


def test_loglog_slope_of_a_power_law_is_exact():
    alpha = np.array([1.0, 10.0, 100.0, 1000.0])
    assert report.fit_loglog_slope(alpha, 3.0 * alpha ** -2.0) == pytest.approx(-2.0, abs=1e-12)
    assert np.isnan(report.fit_loglog_slope([1.0], [1.0]))


def _valid_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400


def test_equivalence_report_and_plots(tmp_path):
    path = report.write_report(tmp_path, "equivalence", equivalence_rows(), {"dataset": "digits"}, intro="Intro.")
    text = path.read_text()
    assert path == tmp_path / "report.md" and "Intro." in text and "dataset: digits" in text
    for name in ("accuracy.png", "agreement.png", "weight_change.png"):
        assert f"]({name})" in text
        _valid_png(tmp_path / name)


def test_rates_report_states_fitted_slopes(tmp_path):
    rows = [{"model": "two_layer", "method": "lazy", "scale": a, "seed": 0, "weight_distance": 2 / a,
             "param_distance": 5 / a ** 2, "function_distance": 1 / a} for a in (1.0, 10.0, 100.0)]
    text = report.write_report(tmp_path, "rates", rows, {}).read_text()
    assert "sup‖w_α−w₀‖/‖w₀‖ -1.00, ‖w_α−w̄_α‖ -2.00, ‖h_α−h̄_α‖ -1.00" in text
    _valid_png(tmp_path / "rates.png")


def test_teacher_student_report(tmp_path):
    rows = [{"experiment": "teacher-student", "model": "two_layer", "method": "net", "d": d, "scale": tau, "seed": s,
             "test_loss": 0.01 * d * (1 + tau) * (1 + 0.1 * s)} for d in (2, 10) for tau in (0.1, 1.0, 10.0)
            for s in (0, 1)]
    headers, body = report.summary_table(rows)
    assert headers[:4] == ["model", "d", "method", "τ"]
    report.write_report(tmp_path, "teacher-student", rows, {})
    _valid_png(tmp_path / "teacher_student.png")


def test_report_shows_a_spread_only_with_two_seeds_or_more(tmp_path):
    """One seed has no standard deviation: the report says so and prints no ±; two seeds give mean ± std."""
    one = [r for r in equivalence_rows() if r["seed"] == 0]
    text = report.write_report(tmp_path / "one", "equivalence", one, {}).read_text()
    assert "metrics: one seed: no ± std" in text and "±" not in text.split("## Summary", 1)[1].split("## Plots")[0]
    assert "bands: ± std" not in text
    text = report.write_report(tmp_path / "two", "equivalence", equivalence_rows(), {}).read_text()
    assert "metrics: mean ± std over 2 seeds" in text and "81.0 ± 1.4" in text and "bands: ± std over seeds" in text
    mixed = equivalence_rows() + [{**one[0], "seed": 2}]       # the net row has 3 seeds, the others 2
    assert "the seeds of each row" in report.write_report(tmp_path / "mixed", "equivalence", mixed, {}).read_text()


def test_coinciding_alpha_free_lines_are_named_and_every_method_has_its_own_style():
    """linearized and empirical_ntk reach the same accuracy by construction: the legend names the pair; lines
    0.2% of the y range apart or more are distinct. The ten first curves differ in colour and marker."""
    from compare.present import plots
    levels = {"net": 86.7, "linearized": 95.3, "empirical_ntk": 95.3, "ntk": 97.8, "nngp": 98.2}
    assert plots.coinciding(levels, span=20.0) == [["linearized", "empirical_ntk"]]
    assert plots.coinciding({"a": 1.0, "b": 1.05}, span=20.0) == []          # 0.25% of the range apart
    styles = [plots.style(i) for i in range(10)]
    assert len({s["color"] for s in styles}) == 10 and len({s["marker"] for s in styles}) == 10
    assert plots.style(3)["linestyle"] == "-" and plots.style(3, scaled=False)["linestyle"] != "-"
