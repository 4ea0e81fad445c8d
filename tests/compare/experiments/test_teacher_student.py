"""teacher-student through the CLI on reduced presets (``--set``): lazy generalises worse; resume; joblib and dask."""
import json

import numpy as np
import pytest

from compare import sweep
from compare.cli import main


def _teacher_student(out, *extra):
    return main(["teacher-student", "--out", str(out), "--quiet", "--threads", "1", "--set", "dims=[10]",
                 "--set", "taus=[0.1, 10.0]", "--set", "steps=1000", "--set", "n_test=500", *extra])


def test_teacher_student_lazy_scale_generalises_worse(tmp_path, rows_of):
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
    loky, dask = (sorted((r["scale"], r["test_loss"]) for r in sweep.read_results(tmp_path / d / "results.jsonl"))
                  for d in ("loky", "dask"))
    assert [s for s, _ in loky] == [0.1, 10.0]
    np.testing.assert_allclose([v for _, v in loky], [v for _, v in dask], rtol=1e-9)


def test_the_authors_preset_is_test_vs_scale_jl(tmp_path):
    """--preset authors: τ = 10^(−2.2 … 1) step 0.1 (33 values), d = 100, n = 1000/1000, m = 50, 10⁴ steps,
    10 trials, step min(10, 0.1/τ²). A shrunk run (d = 10, 100 points, 300 steps, τ ∈ {0.01, 1}): each row carries
    the best test loss over training (≤ the final one: the final loss is one of the losses minimised over) and κ
    at init, which falls like 1/τ² for this 2-homogeneous student (κ·τ² equal to 1e-6 relative across τ: the
    residual ‖y‖ and the normalised derivative directions do not depend on τ)."""
    from compare import experiments
    settings = experiments.get("teacher-student").presets["authors"].settings
    assert len(settings["taus"]) == 33 and settings["taus"][0] == pytest.approx(10 ** -2.2)
    assert settings["taus"][-1] == pytest.approx(10.0)
    assert (settings["dims"], settings["n_train"], settings["n_test"], settings["m"], settings["steps"],
            settings["seeds"]) == ([100], 1000, 1000, 50, 10000, 10)
    out = tmp_path / "authors"
    assert main(["teacher-student", "--preset", "authors", "--out", str(out), "--quiet", "--threads", "1",
                 "--seeds", "1", "--set", "dims=[10]", "--set", "taus=[0.01, 1.0]", "--set", "n_train=100",
                 "--set", "n_test=100", "--set", "steps=300"]) == 0
    rows = {r["scale"]: r for r in sweep.read_results(out / "results.jsonl")}
    assert rows[0.01]["lr"] == 10.0 and rows[1.0]["lr"] == pytest.approx(0.1)
    for row in rows.values():
        assert row["best_test_loss"] <= row["test_loss"] and row["protocol"] == "authors"
    assert rows[0.01]["kappa"] * 0.01 ** 2 == pytest.approx(rows[1.0]["kappa"], rel=1e-6)
    for name in ("teacher_student.png", "teacher_student_kappa.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
