"""The compare CLI: --help lists the subcommands; unknown names are refused with the valid ones listed."""
import subprocess
import sys

from compare.bench import BENCHMARKS
from compare.cli import EXPERIMENTS, main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "compare", "--help"], capture_output=True, text=True, check=True)
    for name in [*EXPERIMENTS, "bench", "gpu-check", "data", *BENCHMARKS]:
        assert name in out.stdout


def test_unknown_experiment_lists_valid_names(capsys):
    assert main(["no-such-experiment"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment or subcommand 'no-such-experiment'" in err and "equivalence" in err


def test_unknown_benchmark_lists_valid_names(capsys):
    assert main(["bench", "nope"]) == 2
    assert "valid: analytic, empirical, solvers" in capsys.readouterr().err
