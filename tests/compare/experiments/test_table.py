"""table through the CLI on the quick preset (CIFAR-10 needed; skipped without it)."""
import pytest

from compare.cli import main

needs_cifar = pytest.mark.data("cifar10")   # skipped, saying how to get it, where CIFAR-10 is not found


@needs_cifar
def test_table_random_features_row_and_paper_column(tmp_path, rows_of):
    """Only the random-features row (no nets): airplane vs automobile, 1000/500 images, 2000 Fourier features.
    Measured 79.0% test accuracy; chance is 50%, so > 65% shows the features learn."""
    assert main(["table", "--out", str(tmp_path), "--quiet", "--threads", "1", "--set", "models=[]",
                 "--set", "cntk_readouts=[]"]) == 0
    by, _ = rows_of(tmp_path)
    assert by[("rff", None)]["test_accuracy"] > 0.65
    assert "paper acc %" in (tmp_path / "report.md").read_text()


@needs_cifar
def test_table_standard_vgg_beats_its_lazy_counterpart(tmp_path, rows_of):
    """Quick table preset for VGG-11 (width 1/8, 10 epochs, airplane vs automobile): measured standard 85.6%,
    lazy (α = 100) 71.4%, linearized 75.4% — the paper's ordering, on a CPU in ~20 s."""
    assert main(["table", "--out", str(tmp_path), "--quiet", "--set", "models=['vgg11']",
                 "--set", "cntk_readouts=[]"]) == 0
    by, _ = rows_of(tmp_path)
    assert by[("net", None)]["test_accuracy"] > by[("lazy", 100.0)]["test_accuracy"] + 0.05
    assert by[("net", None)]["test_accuracy"] > by[("linearized", None)]["test_accuracy"]


@needs_cifar
def test_table_cntk_rows_report_subset_depth_and_time(tmp_path):
    """The quick preset's CNTK-GAP and CNTK-V rows on a 16 + 16 image subset at depth 1: each row carries its
    sizes, depth and seconds, and the table prints them. The split and the kernel are deterministic, so the
    accuracies are too: measured 81.2% (GAP) and 68.8% (V) of the 16 test images; allow one image (6.25%)."""
    from compare import sweep
    assert main(["table", "--out", str(tmp_path), "--quiet", "--set", "models=[]", "--set", "cntk_n_train=16",
                 "--set", "cntk_n_test=16", "--set", "cntk_depth=1", "--set", "rff_features=50"]) == 0
    rows = {r["model"]: r for r in sweep.read_results(tmp_path / "results.jsonl")}
    for model, accuracy in (("cntk1_gap", 0.812), ("cntk1_v", 0.688)):
        row = rows[model]
        assert (row["method"], row["n_train"], row["n_test"], row["depth"]) == ("ntk", 16, 16, 1)
        assert row["seconds"] > 0 and abs(row["test_accuracy"] - accuracy) <= 0.0625 + 1e-9
    report = (tmp_path / "report.md").read_text()
    assert "n train" in report and "depth" in report and "time (s)" in report and "cntk1_v" in report
