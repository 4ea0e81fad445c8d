"""`python -m compare bench readme`: renders every figure block of README.md and docs/*.md from one figures
record, rewrites only the marked blocks (in whichever files hold them), and regenerates them from a real
(shrunk) run."""
import json

import pytest

from compare.bench import readme

BLOCKS = ("preset-times", "default-job", "default-job-reading", "table-quick", "rates-slopes", "nets-example",
          "ntk-gap", "report-plots")
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
    "ntk_gap": {"images": 6, "size": 32, "depth": 2, "inits": 3, "wall_s": 9.0,
                "widths": {"64": {"one_init": [0.20, 0.05, 0.10], "mean_of_inits": 0.04},
                           "256": {"one_init": [0.07, 0.005, 0.03], "mean_of_inits": 0.012}}},
    "plots": {"rates": {"figures": [{"file": "docs/figures/rates-rates.png", "caption": "The distances."}],
                        "runs": 4, "command": "python -m compare rates --preset quick"},
              "table": {"skipped": "cifar10 not found"}},
}


def test_blocks_render_the_figures_and_say_where_they_come_from():
    blocks = readme.render_blocks(FIGURES)
    assert set(blocks) == set(BLOCKS)
    # times: seconds below two minutes, minutes above; – where a preset was not run or was skipped
    from compare import experiments
    assert "| experiment | what it shows | quick | full | paper |" in blocks["preset-times"]
    assert f"| `equivalence` | {experiments.get('equivalence').one_line} | 26 s | 9.0 min | – |" in blocks["preset-times"]
    assert f"| `table` | {experiments.get('table').one_line} | – | – | – |" in blocks["preset-times"]
    assert blocks["preset-times"].index("`equivalence`") < blocks["preset-times"].index("`rates`")   # default first
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
    # ntk-gap: per width, the spread of one init (min – max, median) and the mean of the inits, in %
    assert "| 64 | 5.0% – 20.0% | 10.0% | 4.0% |" in blocks["ntk-gap"]
    assert "| 256 | 0.5% – 7.0% | 3.0% | 1.2% |" in blocks["ntk-gap"]
    assert "for each of 3 initialisations" in blocks["ntk-gap"]
    # report plots: each figure with its caption, paths relative to docs/; skipped experiments say why
    assert "![rates: rates-rates](figures/rates-rates.png)\n\nThe distances." in blocks["report-plots"]
    assert "Not drawn: cifar10 not found." in blocks["report-plots"]


def test_the_default_experiment_is_the_command_lines():
    from compare.cli import DEFAULT_EXPERIMENT
    assert readme.DEFAULT_EXPERIMENT == DEFAULT_EXPERIMENT and readme.experiment_names()[0] == DEFAULT_EXPERIMENT


def test_one_seed_shows_no_spread():
    """With one seed there is no std: the blocks say "one seed" and print no ±."""
    one = json.loads(json.dumps(FIGURES))
    one["seeds"]["rates_slopes"] = {"weight_distance": {"mean": -1.0, "std": None, "n": 1}}
    one["seeds"]["table"] = {"vgg11/net": {"mean": 83.0, "std": None, "n": 1}}
    blocks = readme.render_blocks(one)
    assert blocks["rates-slopes"] == "Measured quick-preset slopes, one seed: −1.00."
    assert "test accuracy, one seed;" in blocks["table-quick"] and "VGG-11 standard 83.0%." in blocks["table-quick"]
    assert "±" not in blocks["rates-slopes"] + blocks["table-quick"] and "1 seeds" not in blocks["table-quick"]


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
    from compare import experiments
    assert f"| `alpha-sweep` | {experiments.get('alpha-sweep').one_line} | 2.2 min | – | – |" in blocks["preset-times"]
    assert "VGG-11 standard 83.0 ± 1.2%, uncentred 80.0%, random" in blocks["table-quick"]
    assert blocks["table-quick"].endswith("The standard rows are centred as the authors train them, h(w) − h(w₀); "
                                          "the uncentred ones are the plain h(w).")
    assert "uncentred one (h(w₀) ≠ 0) is a different predictor (87.8% agreement)" in blocks["default-job-reading"]
    assert set(blocks) <= set(readme.BLOCK_NAMES)


def test_a_block_the_readme_lacks_is_named_and_left_out(tmp_path, capsys):
    """main writes every block some file has markers for and names the others on stderr (the page's author adds
    the markers); nothing else of the files changes."""
    figures = json.loads(json.dumps(FIGURES))
    figures["presets"]["alpha-sweep"] = {"quick": {"wall_s": 130.0, "runs": 1, "command": "c", "sweep": []}}
    (tmp_path / "f.json").write_text(json.dumps(figures))
    (tmp_path / "root" / "docs").mkdir(parents=True)
    copy = tmp_path / "root" / "README.md"
    copy.write_text("x\n<!-- bench-readme:rates-slopes -->\nold\n<!-- /bench-readme:rates-slopes -->\n")
    assert readme.main(["--render", "--out", str(tmp_path / "runs"), "--root", str(tmp_path / "root"),
                        "--figures", str(tmp_path / "f.json")]) == 0
    assert "has a <!-- bench-readme:alpha-sweep-quick --> ... <!-- /bench-readme:alpha-sweep-quick --> block: " \
           "'alpha-sweep-quick' left out" in capsys.readouterr().err
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
    """Every block the script writes has its markers in README.md or a page of docs/; once docs/figures.json
    exists (the lead's run), every file's blocks are exactly what it renders (after a change to what a block shows,
    `python -m compare bench readme --render` rewrites them), and --help's times come from the same file."""
    texts = {path: path.read_text() for path in readme.doc_files(readme.REPO_ROOT)}
    held = {name for text in texts.values() for name in readme.read_blocks(text)}
    assert set(BLOCKS) <= held <= set(readme.BLOCK_NAMES)
    figures = readme.load_figures()
    if figures is None:
        assert not readme.FIGURES.exists()
        return
    rendered = readme.render_blocks(figures)
    for path, text in texts.items():
        current = readme.read_blocks(text)
        stale = [name for name in current if name in rendered and current[name] != rendered[name]]
        assert not stale, (f"{path.name}: blocks {stale} differ from what docs/figures.json renders; run "
                           "`python -m compare bench readme --render`")
    for entry in figures.get("plots", {}).values():
        for figure in entry.get("figures", []) if isinstance(entry, dict) else []:
            assert (readme.REPO_ROOT / figure["file"]).is_file(), figure["file"]


def test_blocks_are_rewritten_in_every_file_that_holds_them(tmp_path):
    """A block may stand in several files (README and a docs page); one no file holds is an error."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("a\n<!-- bench-readme:x -->\nold\n<!-- /bench-readme:x -->\n")
    (tmp_path / "docs" / "page.md").write_text("<!-- bench-readme:x -->\n<!-- /bench-readme:x -->\n"
                                               "<!-- bench-readme:y -->\n<!-- /bench-readme:y -->\n")
    (tmp_path / "docs" / "other.md").write_text("nothing here\n")
    changed = readme.rewrite_blocks(tmp_path, {"x": "new x", "y": "new y"})
    assert sorted(p.name for p in changed) == ["README.md", "page.md"]
    assert readme.read_blocks((tmp_path / "README.md").read_text()) == {"x": "new x"}
    assert readme.read_blocks((tmp_path / "docs" / "page.md").read_text()) == {"x": "new x", "y": "new y"}
    assert readme.rewrite_blocks(tmp_path, {"x": "new x"}) == []                       # idempotent
    logged = []
    assert readme.rewrite_blocks(tmp_path, {"z": "lost"}, logged.append) == [] and "'z' left out" in logged[0]


def test_ntk_gap_measures_one_init_and_the_mean():
    """A tiny real measurement: distances are positive, and the mean of the inits is no farther from the
    analytic kernel than the average init (triangle inequality: ‖mean − Θ‖ ≤ mean ‖Θ̂_k − Θ‖)."""
    gap = readme.ntk_gap(widths=(4, 16), inits=3, images=2, size=6, depth=1)
    for entry in gap["widths"].values():
        one = entry["one_init"]
        assert len(one) == 3 and min(one) > 0
        assert entry["mean_of_inits"] <= sum(one) / len(one) + 1e-12


def test_the_plots_job_copies_each_report_plot_with_its_caption(tmp_path, monkeypatch):
    """From results already in the out folder (here: a rates sweep written by hand, so nothing runs), the job
    draws the experiment's figures into ROOT/docs/figures/ and records their captions."""
    rows = [{"experiment": "rates", "model": "two_layer", "method": "lazy", "scale": a, "seed": 0,
             "weight_distance": 2 / a, "param_distance": 5 / a ** 2, "function_distance": 1 / a}
            for a in (1.0, 10.0, 100.0)]
    monkeypatch.setattr(readme, "experiment_names", lambda: ["rates"])
    (tmp_path / "out" / "rates-quick").mkdir(parents=True)
    (tmp_path / "out" / "rates-quick" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = readme.measure_plots(tmp_path / "out", tmp_path / "root", quick=True, log=lambda m: None)
    (figure,) = found["rates"]["figures"]
    assert figure["file"] == "docs/figures/rates-rates.png" and (tmp_path / "root" / figure["file"]).stat().st_size
    assert "-2.00" in figure["caption"] and found["rates"]["runs"] == 3
    assert found["rates"]["command"] == "python -m compare rates --preset quick"


def test_preset_time_reads_the_figures_file(tmp_path):
    path = tmp_path / "figures.json"
    assert readme.preset_time("equivalence", "quick", path) is None     # no file: no time quoted
    path.write_text(json.dumps(FIGURES))
    assert readme.preset_time("equivalence", "quick", path) == "26 s measured (CPU X, 2 cores, 2026-12-01)"
    assert readme.preset_time("table", "quick", path) is None           # skipped: no time
    assert readme.preset_time("rates", "paper", path) is None


def test_a_shrunk_run_regenerates_the_rates_block(tmp_path, monkeypatch):
    """One real job at smoke size (rates, 2 seeds of 20 points) on top of an earlier figures file: the file
    records the new job with its own date and machine and keeps the earlier ones with theirs; the copy's seeded
    blocks are rewritten, the preset times still name the earlier run's machine."""
    monkeypatch.setenv("LAZYKIT_DATA_DIR", str(tmp_path / "no-data"))   # the table part is skipped
    (tmp_path / "no-data").mkdir()
    repository_readme = readme.README.read_text()
    root = readme.copy_docs(readme.REPO_ROOT, tmp_path / "root")
    earlier = json.loads(json.dumps(FIGURES))
    when = {k: FIGURES[k] for k in ("date", "machine_short", "load_average")}
    for entries in earlier["presets"].values():
        for entry in entries.values():
            entry["when"] = when
    for job in ("nets_example", "ntk_gap", "plots"):
        earlier[job]["when"] = when
    (tmp_path / "figures.json").write_text(json.dumps(earlier))
    assert readme.main(["--quick", "--only", "seeds", "--seeds", "2", "--out", str(tmp_path / "runs"),
                        "--root", str(root), "--figures", str(tmp_path / "figures.json")]) == 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["quick"] is True and figures["seeds"]["rates_slopes"]["param_distance"]["n"] == 2
    assert figures["seeds"]["when"]["quick"] is True and figures["presets"] == earlier["presets"]
    assert "skipped" in figures["seeds"]["table"]
    after = {}
    for path in readme.doc_files(root):
        after.update(readme.read_blocks(path.read_text()))
    assert after["rates-slopes"].startswith("Measured quick-preset slopes, mean ± std over 2 seeds: −")
    assert after["table-quick"].startswith("The quick `table` run was not measured: CIFAR-10 not found")
    assert "CPU X, 2 cores, 2026-12-01" in after["preset-times"] and after["nets-example"].startswith("Output (CPU X")
    assert readme.README.read_text() == repository_readme                   # the repository's files untouched


def test_render_rewrites_from_the_figures_file_without_running(tmp_path):
    root = readme.copy_docs(readme.REPO_ROOT, tmp_path / "root")
    (tmp_path / "figures.json").write_text(json.dumps(FIGURES))
    before = (tmp_path / "figures.json").read_text()
    assert readme.main(["--render", "--out", str(tmp_path / "runs"), "--root", str(root),
                        "--figures", str(tmp_path / "figures.json")]) == 0
    assert (tmp_path / "figures.json").read_text() == before                    # nothing measured, nothing dated
    blocks = {}
    for path in readme.doc_files(root):
        blocks.update(readme.read_blocks(path.read_text()))
    assert blocks["nets-example"].endswith("```\nalpha=1: train loss 0.1133\n```")


@pytest.mark.slow
def test_the_whole_quick_run_rewrites_every_block(tmp_path):
    root = readme.copy_docs(readme.REPO_ROOT, tmp_path / "root")
    assert readme.main(["--quick", "--seeds", "2", "--out", str(tmp_path / "runs"),
                        "--root", str(root), "--figures", str(tmp_path / "f.json")]) == 0
    figures = json.loads((tmp_path / "f.json").read_text())
    assert set(readme.render_blocks(figures)) >= set(BLOCKS) - {"table-quick"}
    assert (root / "docs" / "figures" / "equivalence-agreement.png").is_file()


def test_every_registered_experiment_is_timed_by_bench_readme():
    # one vocabulary: the registry names the experiments; bench readme times each of them (with a smoke variant)
    from compare import experiments
    assert sorted(readme.EXPERIMENTS) == sorted(experiments.names())
