"""`python -m compare bench readme`: renders every figure block of README.md from one figures record, rewrites
only the marked blocks, and regenerates them from a real (shrunk) run."""
import json

import pytest

from compare.bench import readme

BLOCKS = ("preset-times", "default-job", "default-job-reading", "table-quick", "rates-slopes", "nets-example")
FIGURES = {
    "date": "2026-12-01", "machine": "CPU X, 2 cores; Python 3.11", "machine_short": "CPU X, 2 cores",
    "load_average": 0.25, "quick": False, "command": "python -m compare bench readme",
    "presets": {"equivalence": {"quick": {"wall_s": 25.6, "runs": 11, "command": "python -m compare",
                                          "stdout": "equivalence on digits ...\nreport: results/x/report.md",
                                          "reading": {"agreement": {"1.0": 0.973, "10.0": 0.993, "1000.0": 1.0},
                                                      "weight_change": {"1.0": 0.0971, "10.0": 0.00975,
                                                                        "1000.0": 9.77e-05},
                                                      "net_agreement": 0.878}},
                                "full": {"wall_s": 540.0, "runs": 60, "command": "..."}},
                "table": {"quick": {"skipped": "CIFAR-10 not found"}}},
    "seeds": {"seeds": 3,
              "rates_slopes": {"weight_distance": {"mean": -1.012, "std": 0.004, "n": 3},
                               "param_distance": {"mean": -1.99, "std": 0.01, "n": 3},
                               "function_distance": {"mean": -0.98, "std": 0.02, "n": 3}},
              "table": {"vgg11/net": {"mean": 83.0, "std": 1.25, "n": 3},
                        "fourier/rff": {"mean": 79.0, "std": 0.0, "n": 3}},
              "table_setup": {"n_train": 1000, "n_test": 500, "width_factor": 0.125, "epochs": 10,
                              "classes": [0, 1]}},
    "nets_example": {"wall_s": 17.2, "stdout": "alpha=1: train loss 0.1133"},
}


def test_blocks_render_the_figures_and_say_where_they_come_from():
    blocks = readme.render_blocks(FIGURES)
    assert set(blocks) == set(BLOCKS)
    # times: seconds below two minutes, minutes above; – where a preset was not run or was skipped
    assert "| `equivalence` | 26 s | 9.0 min | – |" in blocks["preset-times"]
    assert "| `table` | – | – | – |" in blocks["preset-times"]
    assert "CPU X, 2 cores, 2026-12-01, load average 0.2 at start" in blocks["preset-times"]
    assert blocks["default-job"].endswith("```\nequivalence on digits ...\nreport: results/x/report.md\n```")
    assert "26 s wall time for the whole command" in blocks["default-job"]
    assert "(97.3% of the test digits at α = 1, 99.3% of the test digits at α = 10, 100.0% of the test digits " \
           "at α = 1000)" in blocks["default-job-reading"]
    assert "(0.097 at α = 1 → 9.8e-05 at α = 1000)" in blocks["default-job-reading"]
    assert "(87.8% agreement)" in blocks["default-job-reading"]
    # seeded figures: mean ± std over the seeds run, with the number of seeds
    assert blocks["rates-slopes"] == ("Measured quick-preset slopes, mean ± std over 3 seeds: "
                                      "−1.01 ± 0.00, −1.99 ± 0.01, −0.98 ± 0.02.")
    assert "airplane vs automobile, 1000/500 train/test images, width factor 0.125, 10 epochs" in blocks["table-quick"]
    assert "mean ± std over 3 seeds" in blocks["table-quick"]
    assert "VGG-11 standard 83.0 ± 1.2%, random Fourier features 79.0 ± 0.0%." in blocks["table-quick"]
    assert "17 s for the whole script" in blocks["nets-example"]


def test_the_alpha_sweep_block_and_the_centred_reading():
    """A record of the new runs: the quick alpha-sweep's accuracy and stability per α (a diverged α says so) with
    its plot, the table's uncentred rows named, the default job's reading naming the centred and uncentred nets."""
    figures = json.loads(json.dumps(FIGURES))
    reading = figures["presets"]["equivalence"]["quick"]["reading"]
    reading["uncentred_agreement"] = reading.pop("net_agreement")
    figures["presets"]["alpha-sweep"] = {"quick": {
        "wall_s": 130.0, "runs": 7, "command": "python -m compare alpha-sweep --preset quick",
        "plot": "docs/alpha-sweep-quick.png",
        "setup": {"model": "vgg11", "width_factor": 0.125, "n_train": 1000, "n_test": 500, "epochs": 10,
                  "classes": [0, 1]},
        "sweep": [{"alpha": 0.1, "diverged": True},
                  {"alpha": 1.0, "test_accuracy": 0.83, "unchanged_activations_min": 0.539},
                  {"alpha": 1e5, "test_accuracy": 0.782, "unchanged_activations_min": 1.0}]}}
    figures["seeds"]["table"]["vgg11/net_uncentred"] = {"mean": 80.0, "std": None, "n": 1}
    blocks = readme.render_blocks(figures)
    sweep = blocks["alpha-sweep-quick"]
    assert "α = 0.1: diverged; α = 1: 83.0% (53.9% of the least stable layer's gates kept); α = 100000: 78.2%" in sweep
    assert "2.2 min wall time" in sweep and sweep.endswith("(docs/alpha-sweep-quick.png)")
    assert "| `alpha-sweep` | 2.2 min | – | – |" in blocks["preset-times"]
    assert "VGG-11 standard 83.0 ± 1.2%, uncentred 80.0%, random" in blocks["table-quick"]
    assert blocks["table-quick"].endswith("The standard rows are centred as the authors train them, h(w) − h(w₀); "
                                          "the uncentred ones are the plain h(w).")
    assert "uncentred one (h(w₀) ≠ 0) is a different predictor (87.8% agreement)" in blocks["default-job-reading"]
    assert set(blocks) <= set(readme.BLOCK_NAMES)


def test_a_block_the_readme_lacks_is_named_and_left_out(tmp_path, capsys):
    """main writes every block the README has markers for and names the others on stderr (the README's
    author adds the markers); nothing else of the README changes."""
    figures = json.loads(json.dumps(FIGURES))
    figures["presets"]["alpha-sweep"] = {"quick": {"wall_s": 130.0, "runs": 1, "command": "c", "sweep": []}}
    (tmp_path / "f.json").write_text(json.dumps(figures))
    copy = tmp_path / "README.md"
    copy.write_text("x\n<!-- bench-readme:rates-slopes -->\nold\n<!-- /bench-readme:rates-slopes -->\n")
    assert readme.main(["--quick", "--only", "nets-example", "--out", str(tmp_path / "runs"), "--readme",
                        str(copy), "--figures", str(tmp_path / "f.json")]) == 0
    assert "has no <!-- bench-readme:alpha-sweep-quick -->" in capsys.readouterr().err
    assert readme.read_blocks(copy.read_text())["rates-slopes"].startswith("Measured quick-preset slopes")


def test_replace_rewrites_only_the_marked_blocks_and_is_idempotent():
    text = "intro\n<!-- bench-readme:a -->\nold a\n<!-- /bench-readme:a -->\nmiddle\n" \
           "<!-- bench-readme:b -->\nold b\nmore\n<!-- /bench-readme:b -->\nend\n"
    once = readme.replace_blocks(text, {"a": "new a", "b": "new b"})
    assert once == text.replace("old a", "new a").replace("old b\nmore", "new b")
    assert readme.replace_blocks(once, {"a": "new a", "b": "new b"}) == once
    assert readme.read_blocks(once) == {"a": "new a", "b": "new b"}
    with pytest.raises(ValueError, match="exactly one <!-- bench-readme:c -->"):
        readme.replace_blocks(text, {"c": "x"})


def test_readme_holds_every_block_and_agrees_with_the_figures_file():
    """Every block the script writes has its markers in README.md; once docs/figures.json exists (the lead's
    run), the README's blocks are exactly what it renders, and --help's times come from the same file."""
    text = readme.README.read_text()
    assert set(BLOCKS) <= set(readme.read_blocks(text)) <= set(readme.BLOCK_NAMES)
    figures = readme.load_figures()
    if figures is None:
        assert not readme.FIGURES.exists()
        return
    rendered = readme.render_blocks(figures)
    current = readme.read_blocks(text)
    assert {name: current[name] for name in rendered} == rendered


def test_preset_time_reads_the_figures_file(tmp_path):
    path = tmp_path / "figures.json"
    assert readme.preset_time("equivalence", "quick", path) is None     # no file: no time quoted
    path.write_text(json.dumps(FIGURES))
    assert readme.preset_time("equivalence", "quick", path) == "26 s measured (CPU X, 2 cores, 2026-12-01)"
    assert readme.preset_time("table", "quick", path) is None           # skipped: no time
    assert readme.preset_time("rates", "paper", path) is None


def test_a_shrunk_run_regenerates_the_rates_block(tmp_path, monkeypatch):
    """One real job at smoke size (rates, 2 seeds of 20 points) on top of an earlier figures file: the file
    records the new job with its own date and machine and keeps the earlier ones with theirs; the README copy's
    seeded blocks are rewritten, the preset times still name the earlier run's machine."""
    monkeypatch.setenv("LAZYKIT_DATA_DIR", str(tmp_path / "no-data"))   # the table part is skipped
    (tmp_path / "no-data").mkdir()
    copy = tmp_path / "README.md"
    copy.write_text(readme.README.read_text())
    earlier = json.loads(json.dumps(FIGURES))
    when = {k: FIGURES[k] for k in ("date", "machine_short", "load_average")}
    for entries in earlier["presets"].values():
        for entry in entries.values():
            entry["when"] = when
    earlier["nets_example"]["when"] = when
    (tmp_path / "figures.json").write_text(json.dumps(earlier))
    assert readme.main(["--quick", "--only", "seeds", "--seeds", "2", "--out", str(tmp_path / "runs"),
                        "--readme", str(copy), "--figures", str(tmp_path / "figures.json")]) == 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["quick"] is True and figures["seeds"]["rates_slopes"]["param_distance"]["n"] == 2
    assert figures["seeds"]["when"]["quick"] is True and figures["presets"] == earlier["presets"]
    assert "skipped" in figures["seeds"]["table"]
    after = readme.read_blocks(copy.read_text())
    assert after["rates-slopes"].startswith("Measured quick-preset slopes, mean ± std over 2 seeds: −")
    assert after["table-quick"].startswith("The quick `table` run was not measured: CIFAR-10 not found")
    assert "CPU X, 2 cores, 2026-12-01" in after["preset-times"] and after["nets-example"].startswith("Output (CPU X")


@pytest.mark.slow
def test_the_whole_quick_run_rewrites_every_block(tmp_path):
    assert readme.main(["--quick", "--seeds", "2", "--out", str(tmp_path / "runs"),
                        "--readme", str(tmp_path / "README.md"), "--figures", str(tmp_path / "f.json")]) == 0
    assert set(readme.read_blocks((tmp_path / "README.md").read_text())) == set(BLOCKS)
    figures = json.loads((tmp_path / "f.json").read_text())
    assert set(readme.render_blocks(figures)) >= set(BLOCKS) - {"table-quick"}


def test_every_registered_experiment_is_timed_by_bench_readme():
    # one vocabulary: the registry names the experiments; bench readme times each of them (with a smoke variant)
    from compare import experiments
    assert sorted(readme.EXPERIMENTS) == sorted(experiments.names())
