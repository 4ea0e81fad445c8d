"""compare.gpu.check: refuses clearly without a GPU, plans the right commands, enforces per-step limits, and
prints its summary table last (steps replaced by tiny Python commands, so this runs without a GPU)."""
import subprocess
import sys

import pytest

from compare.gpu import check as gpu_check
from compare.bench import BENCHMARKS, Benchmark
from kernels.backend import gpu_available


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
def test_without_gpu_it_fails_clearly():
    out = subprocess.run([sys.executable, "-m", "compare", "gpu-check"], capture_output=True, text=True,
                         cwd=gpu_check.REPO_ROOT)
    assert out.returncode == 1
    assert "no GPU: CuPy not installed or sees no device" in out.stderr and "--dry-run" in out.stderr


def test_dry_run_prints_the_commands_in_order(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--data-dir", str(tmp_path), "--budget", "100"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = (["python -m pytest tests/gpu -m gpu -q -p no:cacheprovider   # limit 30 s"]    # 30% of 100 s
                + [f"python -m compare bench {b.name} {' '.join(b.gpu_args)}   # limit 15 s"
                   if b.gpu_args is not None else
                   f"python -m compare bench {b.name}   # skipped: CPU-only benchmark (no gpu_args)"
                   for b in BENCHMARKS.values()])
    assert lines[:-1] == expected
    # no CIFAR-10 in that folder: the experiment step is listed as skipped, with how to fix it
    assert lines[-1].startswith("python -m compare table --preset quick --device cuda")
    assert "# skipped: no CIFAR-10 under " + str(tmp_path) in lines[-1]


def test_dry_run_with_cifar_in_the_data_dir_plans_the_table_experiment(tmp_path, capsys):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"found by name; not read in a dry run")
    assert gpu_check.main(["--dry-run", "--data-dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "--preset quick --device cuda" in last and last.endswith("# limit 120 s")  # 25% of the 480 s default


def test_benchmark_records_give_the_gpu_arguments_without_importing_the_module(monkeypatch):
    # the plan reads the records only: a benchmark whose module cannot import (numba missing on the GPU machine)
    # is still planned with its declared arguments, and fails visibly when it runs, never silently changed
    monkeypatch.setitem(gpu_check.BENCHMARKS, "fake",
                        Benchmark("fake", "compare.bench.no_such_module", "a stand-in", ("--device", "cuda", "--n", "2")))
    monkeypatch.setitem(gpu_check.BENCHMARKS, "cpu-only", Benchmark("cpu-only", "fake_cpu_bench", "CPU only", None))
    steps = {step.name: step for step in gpu_check.plan()}
    assert steps["bench fake"].command == "python -m compare bench fake --device cuda --n 2"
    assert steps["bench fake"].outcome == "not run"
    skipped = steps["bench cpu-only"]
    assert skipped.skipped and skipped.outcome == "skipped: CPU-only benchmark (no gpu_args)" and skipped.passed


def test_help_names_the_steps(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "tests/gpu" in out and "--budget" in out and "tests 30%" in out and "--dry-run" in out


def test_bad_options(tmp_path, capsys):
    assert gpu_check.main(["--budget", "0"]) == 2
    assert gpu_check.main(["--data-dir", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_missing_lazykit_dependency_is_named(monkeypatch, capsys):
    real_find_spec = gpu_check.importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec",
                        lambda name: None if name == "array_api_compat" else real_find_spec(name))
    assert gpu_check.main([]) == 1
    err = capsys.readouterr().err
    assert "not installed here: array_api_compat" in err and "The bundle brings array-api-compat" in err


def test_missing_image_packages_get_advice_that_works():
    # scipy and scikit-learn belong to the GPU image: the bundle holds them only when prepared with --add
    advice = gpu_check.missing_advice(["scipy", "sklearn", "torch"])
    assert "`python -m compare gpu-check --prepare DIR --add scipy scikit-learn`" in advice
    assert "PyTorch is not bundled" in advice and "The bundle brings" not in advice
    args = gpu_check.build_parser().parse_args(["--prepare", "b", "--add", "scipy", "scikit-learn"])
    assert args.add == ["scipy", "scikit-learn"]          # the option the advice names exists


def test_an_experiment_registry_that_does_not_import_fails_the_check(monkeypatch, capsys):
    # only a dry run before the bundle's install may defer the experiments; a real run reports a failure
    import compare
    monkeypatch.setitem(sys.modules, "compare.experiments", None)        # import raises ImportError
    monkeypatch.delattr(compare, "experiments")
    deferred = gpu_check.plan(before_install=True)[-1]
    assert deferred.skipped and "not installed yet" in deferred.outcome
    failed = gpu_check.plan()[-1]
    assert failed.outcome.startswith("FAILED (the experiment registry does not import") and not failed.passed
    monkeypatch.setattr(gpu_check, "gpu_name", lambda: "Fake H100")
    monkeypatch.setattr(gpu_check, "versions", lambda: dict.fromkeys(gpu_check.PACKAGES, "1.0"))
    monkeypatch.setattr(gpu_check, "run_step", lambda step, limit, env: setattr(step, "outcome", "ok"))
    assert gpu_check.main([]) == 1
    assert "FAILED (the experiment registry does not import" in capsys.readouterr().out


def test_without_pytest_the_tests_step_fails(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_name", lambda: "Fake H100")
    monkeypatch.setattr(gpu_check, "versions", lambda: {**dict.fromkeys(gpu_check.PACKAGES, "1.0"), "pytest": None})
    monkeypatch.setattr(gpu_check, "plan", lambda data_dir=None: [
        gpu_check.Step("tests/gpu", [sys.executable, "-c", "raise SystemExit('must not run')"], "tests")])
    assert gpu_check.main([]) == 1
    out = capsys.readouterr().out
    assert "FAILED (lazykit needs these packages, which are not installed here: pytest" in out
    assert "must not run" not in out


def _step(name, code, kind="bench"):
    return gpu_check.Step(name, [sys.executable, "-c", code], kind)


def test_run_step_statuses_and_time_limit():
    env = dict(__import__("os").environ)
    ok = _step("ok", "print('| a | b |')")
    failed = _step("failed", "import sys; print('boom'); sys.exit(3)")
    hung = _step("hung", "import time; print('started', flush=True); time.sleep(60)")
    for step in (ok, failed):
        gpu_check.run_step(step, 30, env)
    gpu_check.run_step(hung, 1.0, env)
    assert ok.outcome == "ok" and ok.output == ["| a | b |"] and ok.passed
    assert failed.outcome == "FAILED (rc 3)" and gpu_check.detail(failed) == "boom" and not failed.passed
    assert hung.outcome == "TIMEOUT (1 s)" and hung.output == ["started"] and hung.seconds < 10


def test_summary_names_the_card_and_comes_last(monkeypatch, capsys, tmp_path):
    table = "print('| size | ours | peer |'); print('|---|---|---|'); print('| 10 | 1 ms | 2 ms |')"
    steps = [_step("tests/gpu", "print('3 passed in 0.1s')", "tests"),
             _step("bench fake", table),
             _step("bench broken", "import sys; print('CUDA error: out of memory'); sys.exit(1)")]
    monkeypatch.setattr(gpu_check, "plan", lambda data_dir=None: steps)
    monkeypatch.setattr(gpu_check, "gpu_name", lambda: "Fake H100")
    monkeypatch.setattr(gpu_check, "versions", lambda: dict.fromkeys(gpu_check.PACKAGES, "1.0"))
    out_file = tmp_path / "gpu-check.md"
    assert gpu_check.main(["--out", str(out_file)]) == 1          # one step failed
    out = capsys.readouterr().out
    summary = out[out.rindex("## gpu-check summary"):]
    assert summary.startswith("## gpu-check summary: GPU Fake H100")
    rows = [line for line in summary.splitlines() if line.startswith("| ")][1:]
    assert rows[0].split("|")[1:3] == [" tests/gpu    ", " ok            "]
    assert "3 passed" in rows[0] and "1 table rows (above)" in rows[1]
    assert "FAILED (rc 1)" in rows[2] and "CUDA error: out of memory" in rows[2]
    assert out.rstrip().endswith(rows[2])                              # the table is the last thing printed
    assert "### bench fake" in out_file.read_text() and "| 10 | 1 ms | 2 ms |" in out_file.read_text()
