"""The compare CLI: --help lists the subcommands; unknown names are refused with the valid ones listed."""
import json
import subprocess
import sys

import pytest

from compare.bench import BENCHMARKS
from compare import experiments
from compare.cli import main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "compare", "--help"], capture_output=True, text=True, check=True)
    for name in [*experiments.names(), "bench", "gpu-check", "data", *BENCHMARKS]:
        assert name in out.stdout


def test_help_describes_each_experiment_in_one_line():
    """Each experiment's line is the first line of its summary without the name (not just "experiment")."""
    lines = subprocess.run([sys.executable, "-m", "compare", "--help"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name in experiments.names():
        (line,) = [line for line in lines if line.split()[:1] == [name]]
        described = line.split(None, 1)[1]
        assert described == experiments.get(name).one_line and len(described.split()) >= 5
    assert experiments.get("rates").one_line.startswith("Theorem 2.2 of the paper")


def test_unknown_experiment_lists_valid_names(capsys):
    assert main(["no-such-experiment"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment or subcommand 'no-such-experiment'" in err and "equivalence" in err


def test_unknown_benchmark_lists_valid_names(capsys):
    assert main(["bench", "nope"]) == 2
    from compare.bench import FIGURE_SCRIPTS
    assert f"valid: {', '.join([*BENCHMARKS, *FIGURE_SCRIPTS])}" in capsys.readouterr().err
    assert {"analytic", "empirical", "solvers", "readme"} <= {*BENCHMARKS, *FIGURE_SCRIPTS}


@pytest.mark.parametrize("argv, message", [
    (["equivalence", "--dataset", "nope"], "unknown dataset 'nope'; valid: digits, breast_cancer, diabetes, "
                                           "fashion-mnist, cifar10"),
    (["rates", "--preset", "huge"], "unknown preset 'huge'; valid: quick, full, paper"),
    (["--backend", "spark"], "unknown backend 'spark'; valid: loky, dask"),
    (["teacher-student", "--set", "colour=red"], "--set expects KEY=VALUE with KEY one of"),
    (["table", "--device", "tpu"], "unknown device 'tpu'; valid: auto, cpu, cuda"),
    (["table", "--set", "models=['vgg11','alexnet']"], "unknown model 'alexnet'; valid: vgg11, resnet18"),
])
def test_bad_names_list_the_valid_ones(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_results_of_another_configuration_are_refused(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text('{"method": "net"}\n')
    (tmp_path / "config.json").write_text('{"fingerprint": "0", "config": {"experiment": "equivalence"}}\n')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["equivalence", "--out", str(tmp_path)]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_unreachable_scheduler_is_reported(tmp_path, capsys, monkeypatch):
    from compare import sweep
    from compare.sweep import executors
    monkeypatch.setattr(executors, "SCHEDULER_TIMEOUT", 1.0)
    assert main(["rates", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path)]) == 2
    assert "could not reach the dask scheduler at 'tcp://127.0.0.1:9'" in capsys.readouterr().err


def test_experiment_help_documents_presets_and_their_time(capsys, monkeypatch, tmp_path):
    """Preset times in --help come only from `bench readme`'s figures file; unmeasured ones say so."""
    from compare.bench import readme
    figures = {"date": "2026-12-01", "machine_short": "CPU X, 2 cores",
               "presets": {"equivalence": {"quick": {"wall_s": 25.6}}}}
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    monkeypatch.setattr(readme, "FIGURES", tmp_path / "figures.json")
    with pytest.raises(SystemExit):
        main(["equivalence", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--dataset", "--preset", "--out", "--device", "--jobs", "--backend", "--scheduler", "--seeds",
                   "--resume", "--no-resume"):
        assert option in out
    assert "quick: for a CPU (digits), 26 s measured (CPU X, 2 cores, 2026-12-01)" in out
    assert "full: for a CPU (digits), time not measured yet (python -m compare bench readme --presets full)" in out


def test_zero_threads_is_refused(tmp_path, capsys):
    assert main(["rates", "--threads", "0", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_dry_run_prints_the_resolved_configuration_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    out = tmp_path / "never-created"
    assert main(["rates", "--dry-run", "--jobs", "-1", "--device", "cpu", "--out", str(out), "--seeds", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)          # one JSON object, nothing else on stdout
    assert printed["devices"] == {"nets": "cpu", "kernels": "cpu"}
    assert (printed["jobs"], printed["threads"]) == (8, 1)   # -1: one worker per core, one thread each
    scales = len(experiments.get("rates").presets["quick"].settings["scales"])
    assert printed["runs"] == 2 * scales and printed["runs_finished"] == 0 and printed["out"] == str(out)
    assert not out.exists()


def test_a_real_run_records_the_resolved_execution_in_config_json(tmp_path):
    assert main(["rates", "--out", str(tmp_path), "--quiet", "--threads", "1", "--device", "cpu",
                 "--set", "scales=[1.0, 10.0]", "--set", "steps=20"]) == 0
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["resolved"]["devices"] == {"nets": "cpu", "kernels": "cpu"}
    assert (stored["resolved"]["jobs"], stored["resolved"]["threads"]) == (1, 1)
    assert "resolved" not in stored["config"]                # how it ran is not part of the sweep's identity
