"""table through the CLI on the quick preset (CIFAR-10 needed; skipped without it)."""
import pytest

from compare.cli import main

needs_cifar = pytest.mark.data("cifar10")   # skipped, saying how to get it, where CIFAR-10 is not found


@needs_cifar
def test_table_random_features_row_and_paper_column(tmp_path, rows_of):
    """Only the random-features row (no nets): airplane vs automobile, 1000/500 images, 2000 Fourier features.
    Measured 79.0% test accuracy; chance is 50%, so > 65% shows the features learn."""
    assert main(["table", "--out", str(tmp_path), "--quiet", "--threads", "1", "--set", "models=[]"]) == 0
    by, _ = rows_of(tmp_path)
    assert by[("rff", None)]["test_accuracy"] > 0.65
    assert "paper acc %" in (tmp_path / "report.md").read_text()


@needs_cifar
def test_table_standard_vgg_beats_its_lazy_counterpart(tmp_path, rows_of):
    """Quick table preset for VGG-11 (width 1/8, 10 epochs, airplane vs automobile): measured standard 85.6%,
    lazy (α = 100) 71.4%, linearized 75.4% — the paper's ordering, on a CPU in ~20 s."""
    assert main(["table", "--out", str(tmp_path), "--quiet", "--set", "models=['vgg11']"]) == 0
    by, _ = rows_of(tmp_path)
    assert by[("net", None)]["test_accuracy"] > by[("lazy", 100.0)]["test_accuracy"] + 0.05
    assert by[("net", None)]["test_accuracy"] > by[("linearized", None)]["test_accuracy"]
