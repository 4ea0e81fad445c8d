"""The experiments through the CLI, on reduced presets (``--set``), with the numbers they achieve.

Reduced settings keep the default suite short on a loaded 2-core machine; the full quick presets are run by
`python -m compare EXPERIMENT` (their output is in the README).
"""
import json

import numpy as np
import pytest

from compare import runner
from compare.cli import main


def rows_of(out):
    rows = runner.read_results(out / "results.jsonl")
    return {(r["method"], r["scale"]): r for r in rows}, rows


EQUIVALENCE_ARGS = ["--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """The quick preset itself (the default job): digits, 300 training and 450 test points, an MLP 64 → 64 → 10
    in the NTK parameterization, 300 full-batch GD steps, α ∈ {0.1, 1, 10, 100, 1000}, one seed."""
    out = tmp_path_factory.mktemp("equivalence")
    code = main(["equivalence", "--out", str(out), *EQUIVALENCE_ARGS])
    assert code == 0
    return out


def test_equivalence_lazy_and_linearized_agree_with_the_empirical_ntk(equivalence):
    by, rows = rows_of(equivalence)
    # The linearized net follows the full empirical-NTK gradient flow exactly up to the GD step (lr·λ_max/n = 1
    # for the top mode, where both have converged): measured 100% agreement on the 450 test digits.
    assert by[("linearized", None)]["agreement"] >= 0.99
    # At α = 1000 the lazy net is its linearization up to O(1/α): measured 100%.
    assert by[("lazy", 1000.0)]["agreement"] >= 0.99
    # Agreement rises with α: measured 97.3%, 99.3%, 99.8%, 100% at α = 1, 10, 100, 1000 (12 of 450 digits
    # differ at α = 1), 96.0% at α = 0.1; the normally scaled (uncentred) net agrees on 87.8% only.
    agreement = [by[("lazy", a)]["agreement"] for a in (1.0, 10.0, 100.0, 1000.0)]
    assert agreement == sorted(agreement)
    assert agreement[0] <= agreement[-1] - 0.02
    assert by[("lazy", 0.1)]["agreement"] < by[("lazy", 1.0)]["agreement"]
    assert by[("net", None)]["agreement"] <= 0.9
    # Laziness diagnostics shrink with α: weight change 0.0971 → 9.77e-5, ratio 994 ≈ 1000 (O(1/α));
    # NTK drift 1.6 at α = 0.1, 4.75e-5 at α = 1000.
    ratio = by[("lazy", 1.0)]["weight_change"] / by[("lazy", 1000.0)]["weight_change"]
    assert 900 < ratio < 1100
    assert by[("lazy", 1000.0)]["ntk_drift"] < 0.01 < 0.5 < by[("lazy", 0.1)]["ntk_drift"]
    # The kernel predictors are reported beside the nets: measured 95.3% (empirical NTK flow), 97.8% (analytic
    # NTK), 98.2% (NNGP). Ridgeless interpolation with the width-64 multi-output empirical kernel overfits:
    # 77.8%.
    for method in ("empirical_ntk", "ntk", "nngp"):
        assert by[(method, None)]["test_accuracy"] > 0.9
    assert by[("empirical_ntk_krr", None)]["test_accuracy"] > 0.7


def test_equivalence_rows_carry_the_documented_fields(equivalence):
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


def test_rates_slopes_match_theorem_2_2(tmp_path, capsys):
    """Two-layer tanh network, m = 200, α ∈ {1, 10, 100, 1000}: measured slopes −1.01, −1.99, −0.98; the
    terminal summary prints the same fitted slopes as report.md."""
    assert main(["rates", "--out", str(tmp_path), "--quiet", "--threads", "1", "--set", "steps=100"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Fitted log-log slopes")]
    assert len(printed) == 1 and printed[0] in (tmp_path / "report.md").read_text()
    _, rows = rows_of(tmp_path)
    from compare.report import fit_loglog_slope
    alpha = [r["scale"] for r in rows]
    slopes = [fit_loglog_slope(alpha, [r[f] for r in rows])
              for f in ("weight_distance", "param_distance", "function_distance")]
    np.testing.assert_allclose(slopes, [-1.0, -2.0, -1.0], atol=0.1)
    assert "Fitted log-log slopes" in (tmp_path / "report.md").read_text()


def _teacher_student(out, *extra):
    return main(["teacher-student", "--out", str(out), "--quiet", "--threads", "1", "--set", "dims=[10]",
                 "--set", "taus=[0.1, 10.0]", "--set", "steps=1000", "--set", "n_test=500", *extra])


def test_teacher_student_lazy_scale_generalises_worse(tmp_path):
    """d = 10, two seeds: the test loss at τ = 10 (lazy) exceeds that at τ = 0.1 on every seed
    (measured about 10× in the quick preset: 0.0101 vs 0.0007)."""
    assert _teacher_student(tmp_path) == 0
    _, rows = rows_of(tmp_path)
    for seed in (0, 1):
        loss = {r["scale"]: r["test_loss"] for r in rows if r["seed"] == seed}
        assert loss[10.0] > 2 * loss[0.1]
    assert all(r["d"] == 10 for r in rows)


def test_teacher_student_resumes_after_a_kill(tmp_path):
    """Two finished runs kept, a torn third line dropped: the rerun computes exactly the two missing runs."""
    assert _teacher_student(tmp_path, "--seeds", "1", "--set", "taus=[0.1, 1.0, 3.0, 10.0]") == 0
    path = tmp_path / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + lines[2][:40])
    assert _teacher_student(tmp_path, "--seeds", "1", "--set", "taus=[0.1, 1.0, 3.0, 10.0]") == 0
    new = path.read_bytes().splitlines(keepends=True)
    assert new[:2] == lines[:2] and len(new) == 4
    assert sorted(json.loads(x)["scale"] for x in new) == [0.1, 1.0, 3.0, 10.0]
    # a second seed extends the same sweep: the 4 finished runs are kept, 4 new ones appended
    assert _teacher_student(tmp_path, "--seeds", "2", "--set", "taus=[0.1, 1.0, 3.0, 10.0]") == 0
    more = path.read_bytes().splitlines(keepends=True)
    assert more[:4] == new and sorted(json.loads(x)["seed"] for x in more[4:]) == [1, 1, 1, 1]
    # a changed shared setting is refused, the file untouched
    assert _teacher_student(tmp_path, "--seeds", "2", "--set", "m=20") == 2
    assert path.read_bytes().splitlines(keepends=True) == more


def test_teacher_student_with_two_jobs_and_on_dask(tmp_path):
    """The same sweep through joblib (2 workers) and a dask LocalCluster gives the same numbers."""
    distributed = pytest.importorskip("distributed")
    assert _teacher_student(tmp_path / "loky", "--seeds", "1", "--jobs", "2") == 0
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        assert _teacher_student(tmp_path / "dask", "--seeds", "1", "--backend", "dask",
                                "--scheduler", cluster.scheduler_address) == 0
    loky, dask = (sorted((r["scale"], r["test_loss"]) for r in runner.read_results(tmp_path / d / "results.jsonl"))
                  for d in ("loky", "dask"))
    assert [s for s, _ in loky] == [0.1, 10.0]
    np.testing.assert_allclose([v for _, v in loky], [v for _, v in dask], rtol=1e-9)


needs_cifar = pytest.mark.data("cifar10")


@needs_cifar
def test_table_random_features_row_and_paper_column(tmp_path):
    """Only the random-features row (no nets): airplane vs automobile, 1000/500 images, 2000 Fourier features.
    Measured 79.0% test accuracy; chance is 50%, so > 65% shows the features learn."""
    assert main(["table", "--out", str(tmp_path), "--quiet", "--threads", "1", "--set", "models=[]"]) == 0
    by, _ = rows_of(tmp_path)
    assert by[("rff", None)]["test_accuracy"] > 0.65
    assert "paper acc %" in (tmp_path / "report.md").read_text()


@needs_cifar
def test_table_standard_vgg_beats_its_lazy_counterpart(tmp_path):
    """Quick table preset for VGG-11 (width 1/8, 10 epochs, airplane vs automobile): measured standard 85.6%,
    lazy (α = 100) 71.4%, linearized 75.4% — the paper's ordering, on a CPU in ~20 s."""
    assert main(["table", "--out", str(tmp_path), "--quiet", "--set", "models=['vgg11']"]) == 0
    by, _ = rows_of(tmp_path)
    assert by[("net", None)]["test_accuracy"] > by[("lazy", 100.0)]["test_accuracy"] + 0.05
    assert by[("net", None)]["test_accuracy"] > by[("linearized", None)]["test_accuracy"]
