"""compare.grams: the experiments' kernel matrices in memory or, under --gram-store, through resumable stores."""
import numpy as np
import pytest

pytest.importorskip("zarr")

from compare import grams
from compare import sweep  # noqa: E402
from compare.cli import main  # noqa: E402
from kernels import FullyConnected  # noqa: E402


def _matrices(run, memo):
    """A stand-in run function: the two kernel matrices of a fixed problem."""
    rng = np.random.default_rng(0)
    x_train, x_test = rng.standard_normal((30, 5)), rng.standard_normal((12, 5))
    return grams.kernel_matrices(FullyConnected(depth=2), x_train, x_test, get=("nngp", "ntk"))


def test_stored_matrices_equal_the_in_memory_ones_and_are_reused(tmp_path):
    in_memory = _matrices(None, None)
    stored = grams.with_gram_store(_matrices, tmp_path, None)
    for (train, test), (train_s, test_s) in zip(in_memory, stored):
        # one tile each (30 < 4096): the same kernel call, so the same numbers up to the symmetrised diagonal tile
        np.testing.assert_allclose(train_s, train, rtol=1e-14, atol=0)
        np.testing.assert_allclose(test_s, test, rtol=1e-14, atol=0)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert len(made) == 2                                  # K(train, train) and K(test, train), both outputs each
    chunks = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("c/*/*")}
    grams.with_gram_store(_matrices, tmp_path, None)       # a rerun finds both stores complete
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("c/*/*")} == chunks
    assert grams._DIRECTORY.get() is None                  # the directory does not leak out of the run


def test_equivalence_kernel_runs_give_the_same_rows_through_stores(tmp_path):
    """The analytic-kernel runs of a tiny equivalence sweep, with and without a gram store directory."""
    from compare.experiment import Config
    from compare.experiments import get
    from compare.sweep.memo import Memo
    experiment = get("equivalence")
    params = {**experiment.presets["quick"].settings, "n_train": 40, "n_test": 30, "steps": 5, "probe": 10,
              "widths": [16], "scales": [1.0]}
    runs = [r for r in experiment.plan(Config("equivalence", "digits", "quick", params, "cpu"))
            if r.method in ("ntk", "nngp")]
    memo = Memo()                                          # the seed's split and Θ₀, computed once
    for run in runs:
        plain = experiment.run_one(run, memo)
        stored = grams.with_gram_store(experiment.run_one, tmp_path, run, memo)
        assert stored["test_accuracy"] == plain["test_accuracy"]
        assert stored["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-10)
    assert len(list(tmp_path.glob("gram-*.zarr"))) == 2    # train and test, shared by the ntk and nngp runs


@pytest.mark.slow
def test_equivalence_kernel_rows_through_gram_stores(tmp_path, capsys):
    """A tiny equivalence sweep with --gram-store: its analytic-kernel rows equal those of the same sweep
    without it (the directory is not part of the runs), and the stores are left in the directory."""
    tiny = ["--quiet", "--threads", "1", "--set", "n_train=40", "--set", "n_test=30", "--set", "steps=5",
            "--set", "scales=[1.0]", "--set", "probe=10", "--set", "widths=[16]"]
    assert main(["equivalence", "--out", str(tmp_path / "plain"), *tiny]) == 0
    assert main(["equivalence", "--out", str(tmp_path / "stored"), "--gram-store", str(tmp_path / "grams"),
                 *tiny]) == 0
    plain, stored = (sweep.read_results(tmp_path / name / "results.jsonl") for name in ("plain", "stored"))
    by_plain = {(r["method"], r["scale"]): r for r in plain}
    for row in stored:
        if row["method"] in ("ntk", "nngp"):
            reference = by_plain[(row["method"], row["scale"])]
            assert row["run_key"] == reference["run_key"]
            assert row["test_accuracy"] == pytest.approx(reference["test_accuracy"], abs=1e-12)
    assert len(list((tmp_path / "grams").glob("gram-*.zarr"))) == 2   # train and test, shared by ntk and nngp
