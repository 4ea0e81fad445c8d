"""equivalence through the CLI: the quick preset itself (the default job), with the numbers it achieves."""
import pytest

from compare.cli import main


EQUIVALENCE_ARGS = ["--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """The quick preset itself (the default job): digits, 300 training and 450 test points, an MLP 64 → 64 → 10
    in the NTK parameterization, 300 full-batch GD steps, α ∈ {0.1, 1, 10, 100, 1000}, one seed."""
    out = tmp_path_factory.mktemp("equivalence")
    code = main(["equivalence", "--out", str(out), *EQUIVALENCE_ARGS])
    assert code == 0
    return out


def test_equivalence_lazy_and_linearized_agree_with_the_empirical_ntk(equivalence, rows_of):
    by, rows = rows_of(equivalence)
    # The linearized net follows the full empirical-NTK gradient flow exactly up to the GD step (lr·λ_max/n = 1
    # for the top mode, where both have converged): measured 100% agreement on the 450 test digits.
    assert by[("linearized", None)]["agreement"] >= 0.99
    # At α = 1000 the lazy net is its linearization up to O(1/α): measured 100%.
    assert by[("lazy", 1000.0)]["agreement"] >= 0.99
    # Agreement rises with α: measured 98.2%, 99.3%, 99.8%, 100% at α = 1, 10, 100, 1000 (8 of 450 digits
    # differ at α = 1), 96.0% at α = 0.1; the uncentred net (h(w₀) ≠ 0) agrees on 93.6% only.
    agreement = [by[("lazy", a)]["agreement"] for a in (1.0, 10.0, 100.0, 1000.0)]
    assert agreement == sorted(agreement)
    assert agreement[0] <= agreement[-1] - 0.015
    assert by[("lazy", 0.1)]["agreement"] < by[("lazy", 1.0)]["agreement"]
    assert by[("net_uncentred", None)]["agreement"] <= 0.95
    # Laziness diagnostics shrink with α: weight change 0.0947 → 9.77e-5, ratio 969 ≈ 1000 (O(1/α));
    # NTK drift 1.13 at α = 0.1, 4.75e-5 at α = 1000.
    ratio = by[("lazy", 1.0)]["weight_change"] / by[("lazy", 1000.0)]["weight_change"]
    assert 900 < ratio < 1100
    assert by[("lazy", 1000.0)]["ntk_drift"] < 0.01 < 0.5 < by[("lazy", 0.1)]["ntk_drift"]
    # The kernel predictors are reported beside the nets: measured 95.3% (empirical NTK flow), 97.8% (analytic
    # NTK), 98.2% (NNGP). Ridgeless interpolation with the width-64 multi-output empirical kernel overfits:
    # 77.8%.
    for method in ("empirical_ntk", "ntk", "nngp"):
        assert by[(method, None)]["test_accuracy"] > 0.9
    assert by[("empirical_ntk_krr", None)]["test_accuracy"] > 0.7


def test_equivalence_compares_like_with_like(equivalence, rows_of, capsys):
    """Every network row trains to the train loss of the empirical-NTK flow at t (stop_reason 'loss', within
    the loss's change over one GD step: measured 0.0425–0.0428 against 0.0428), the centred standard net is lazy
    at α = 1 (the same training), every row records its step against the limit 2n/λ_max (lr_factor 1: 0.5), and
    the summary line says the gap on digits (measured 96.9% at α = 0.1 vs 95.3% at α = 1000)."""
    by, rows = rows_of(equivalence)
    target = by[("empirical_ntk", None)]["train_loss"]
    nets = [r for r in rows if r["method"] in ("net", "net_uncentred", "lazy", "linearized")]
    for row in nets:
        assert row["stop_reason"] == "loss" and row["train_loss"] == pytest.approx(target, rel=0.02)
        assert row["lr_over_limit"] == pytest.approx(0.5, rel=1e-12)
        assert row["lambda_max"] == pytest.approx(2 * row["n_train"] / row["lr_limit"], rel=1e-12)
    centred, lazy1 = by[("net", None)], by[("lazy", 1.0)]
    assert (centred["test_accuracy"], centred["steps_taken"]) == (lazy1["test_accuracy"], lazy1["steps_taken"])
    assert by[("net_uncentred", None)]["steps_taken"] > centred["steps_taken"]   # it starts further away
    assert main(["equivalence", "--out", str(equivalence), *EQUIVALENCE_ARGS]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("On digits"))
    gap = 100 * (by[("lazy", 0.1)]["test_accuracy"] - by[("lazy", 1000.0)]["test_accuracy"])
    assert f"a gap of {gap:+.1f} points" in line and "alpha-sweep" in line and "uncentred" in line


def test_equivalence_rows_carry_the_documented_fields(equivalence, rows_of):
    _, rows = rows_of(equivalence)
    required = {"experiment", "dataset", "model", "method", "scale", "seed", "n_train", "test_accuracy",
                "agreement", "seconds", "versions", "device", "run_key"}
    for row in rows:
        assert required <= set(row) and row["experiment"] == "equivalence" and row["dataset"] == "digits"
    lazy = [r for r in rows if r["method"] == "lazy"]
    assert all({"weight_change", "ntk_drift", "train_loss"} <= set(r) for r in lazy)
    assert (equivalence / "config.json").exists()


def test_equivalence_report_and_resume(equivalence, capsys):
    text = (equivalence / "report.md").read_text()
    assert "| mlp | lazy | 1000 |" in text and "![accuracy](accuracy.png)" in text
    for name in ("accuracy.png", "agreement.png", "weight_change.png"):
        assert (equivalence / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerunning the same command resumes: nothing is recomputed, the file is unchanged
    before = (equivalence / "results.jsonl").read_bytes()
    assert main(["equivalence", "--out", str(equivalence), *EQUIVALENCE_ARGS]) == 0
    assert (equivalence / "results.jsonl").read_bytes() == before
    assert "lazy" in capsys.readouterr().out


def test_equivalence_logistic_loss_on_breast_cancer_agrees_with_its_kernel_predictor(tmp_path, rows_of, capsys):
    """--set loss=logistic on a ±1 task: the lazy net at α = 1000 and the linearized net follow the logistic kernel
    gradient flow of the empirical NTK (kernels.solve.flow) up to the GD step and O(1/α): they agree with it on
    every test point (measured 100%) and their training logistic loss matches its value to 2% (GD with
    lr·λ_max/n = 1 vs the flow: measured 0.5%). The after-training kernel machines get their own rows, and the
    report shows the kernel change against α."""
    out = tmp_path / "eq"
    args = ["equivalence", "--dataset", "breast_cancer", "--out", str(out), *EQUIVALENCE_ARGS,
            "--set", "loss=logistic", "--set", "n_train=100", "--set", "n_test=100", "--set", "steps=100",
            "--set", "scales=[1.0, 1000.0]", "--set", "after_kernels=True", "--set", "analytic=False"]
    assert main(args) == 0
    by, rows = rows_of(out)
    assert {r["loss"] for r in rows} == {"logistic"}
    assert not {"empirical_ntk_krr", "nngp"} & {r["method"] for r in rows}   # squared-loss limits left out
    reference = by[("empirical_ntk", None)]["train_loss"]
    for key in (("lazy", 1000.0), ("linearized", None)):
        assert by[key]["agreement"] >= 0.99
        assert by[key]["train_loss"] == pytest.approx(reference, rel=0.02)
    assert by[("lazy", 1000.0)]["ntk_drift"] < by[("lazy", 1.0)]["ntk_drift"]
    for method in ("after_kernel", "after_kernel_last"):
        assert by[(method, 1000.0)]["test_accuracy"] > 0.8
    assert (out / "kernel_change.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![kernel_change](kernel_change.png)" in (out / "report.md").read_text()
    # a margin loss on a regression data set is refused with the reason
    assert main(["equivalence", "--dataset", "diabetes", "--out", str(tmp_path / "d"), *EQUIVALENCE_ARGS,
                 "--set", "loss=hinge", "--set", "n_train=50", "--set", "n_test=20", "--set", "steps=2"]) != 0
    assert "needs a classification data set" in capsys.readouterr().err
