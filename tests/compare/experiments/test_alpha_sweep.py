"""alpha-sweep: end to end on a tiny CIFAR look-alike (fields, per-epoch lists, plots, resume), its plan, and the
quick preset on CIFAR-10 (data, slow): stability of activations rises with α."""
import pytest

from compare import experiments, sweep
from compare.cli import main
from compare.experiment import Config

TINY = ["--quiet", "--threads", "1", "--set", "n_train=12", "--set", "n_test=12", "--set", "width_factor=0.0625",
        "--set", "epochs=2", "--set", "scales=[1.0, 100000.0]", "--set", "rff_features=50",
        "--set", "power_iterations=5"]


def test_alpha_sweep_rows_carry_alpha_accuracy_and_stability_per_layer(tiny_cifar, tmp_path):
    """Two α on 12 + 12 flat-colour images of two classes, VGG-11 at width 1/16, 2 epochs: every row has α, a
    test accuracy (or says collapsed), the 13 gated layers of VGG-11 input to output (8 ReLU, 5 max-pool), the
    same per epoch, the frozen-gates accuracy, and its step: lr_factor 0.2 of the limit. At α = 10⁵ (float64)
    the weights move by ~1/α: every layer keeps ≥ 99% of its gates. Rerunning resumes without recomputing."""
    out = tmp_path / "out"
    args = ["alpha-sweep", "--data-dir", str(tiny_cifar), "--out", str(out), *TINY]
    assert main(args) == 0
    rows = {(r["method"], r["scale"]): r for r in sweep.read_results(out / "results.jsonl")}
    assert set(rows) == {("lazy", 1.0), ("lazy", 100000.0), ("rff", None)}
    for alpha in (1.0, 100000.0):
        row = rows[("lazy", alpha)]
        assert ("test_accuracy" in row) != bool(row.get("collapsed"))
        assert len(row["unchanged_activations_per_layer"]) == len(row["gate_layers"]) == 13
        assert len(row["unchanged_by_epoch"]) == len(row["test_accuracy_by_epoch"]) == 2
        assert row["lr_over_limit"] == pytest.approx(0.2, rel=1e-12) and row["lambda_max"] > 0
        assert row.get("frozen_gates_collapsed") or 0.0 <= row["frozen_gates_accuracy"] <= 1.0
    assert rows[("lazy", 100000.0)]["dtype"] == "float64" and rows[("lazy", 1.0)]["dtype"] == "float32"
    assert min(rows[("lazy", 100000.0)]["unchanged_activations_per_layer"]) >= 0.99
    for name in ("alpha_sweep.png", "stability_per_layer.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "least stable layer" in (out / "report.md").read_text()
    before = (out / "results.jsonl").read_bytes()
    assert main(args) == 0 and (out / "results.jsonl").read_bytes() == before


def test_the_paper_preset_is_the_authors_grid():
    """script.sh: 12 α × 4 η₀ for VGG-11, float64, MSE, 100 epochs, Xavier gain 1, η₀/(1 + epoch/3)."""
    experiment = experiments.get("alpha-sweep")
    settings = dict(experiment.presets["paper"].settings)
    runs = experiment.plan(Config("alpha-sweep", "cifar10", "paper", settings, "cpu"))
    nets = [r for r in runs if r.method == "lazy"]
    assert len(nets) == 48 and {r.params["lr"] for r in nets} == {1.0, 0.1, 0.01, 0.001}
    assert sorted({r.alpha for r in nets}) == [0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]
    assert {k: settings[k] for k in ("dtype", "loss", "epochs", "init", "gain", "lr_schedule", "batch_size")} == {
        "dtype": "float64", "loss": "mse_mean", "epochs": 100, "init": "xavier", "gain": 1.0,
        "lr_schedule": "inverse_epoch", "batch_size": 128}
    assert settings["lr_decay"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="lr must be a number > 0 or 'kernel'"):
        experiment.plan(Config("alpha-sweep", "cifar10", "quick", {**settings, "lrs": ["fast"]}, "cpu"))


@pytest.mark.slow
@pytest.mark.data("cifar10")
def test_quick_preset_stability_rises_with_alpha(tmp_path):
    """The quick preset (VGG-11 at width 1/8, airplane vs automobile, 1000/500 images, 10 epochs, lr 0.2 of the
    limit). Measured: the least stable layer keeps 53.9% of its gates at α = 1, 80.3% at 10, 97.8% at 100 and
    100.0% at α = 10⁵; test accuracy 83.0% at α = 1 and 78.2% at α = 10⁵, where the frozen-gates accuracy equals
    the network's (78.2%)."""
    out = tmp_path / "quick"
    assert main(["alpha-sweep", "--out", str(out), "--quiet"]) == 0
    rows = sorted((r for r in sweep.read_results(out / "results.jsonl") if r["method"] == "lazy"),
                  key=lambda r: r["scale"])
    least = [r["unchanged_activations_min"] for r in rows]
    assert least == sorted(least) and least[0] < 0.7 and least[-1] >= 0.99
    assert rows[0]["test_accuracy"] > rows[-1]["test_accuracy"] + 0.02
    assert abs(rows[-1]["frozen_gates_accuracy"] - rows[-1]["test_accuracy"]) <= 0.01
