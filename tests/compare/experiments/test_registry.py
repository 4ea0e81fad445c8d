"""Adding an experiment is one module: a module dropped into the package's path is found, run through the CLI,
summarised and plotted in report.md, listed by --help, and left out of gpu-check (it declares no GPU run)."""
import sys
import textwrap

import pytest

from compare import experiments
from compare.gpu import check as gpu_check
from compare.present import report
from compare.cli import build_parser, main
from compare.experiment import Experiment, Preset

# A whole experiment, as a new module of compare/experiments/ would be: its loss is (1 + seed)/α², so over
# seeds 0 and 1 the mean is 1.5/α² and the sample standard deviation |2 − 1|/√2 /α² = 0.7071/α².
TOY_MODULE = '''
"""toy-line: a made-up experiment, (1 + seed)/α² for each α."""
from compare.present import plots
from compare.experiment import Experiment, Figure, Preset
from compare.sweep.run import Run


def plan(config):
    p = config.params
    return [Run("toy-line", config.dataset, "line", "lazy", seed, alpha=alpha, device=config.device,
                params={"offset": p["offset"]})
            for seed in range(p["seeds"]) for alpha in p["scales"]]


def run_one(run, memo=None):
    return {"test_loss": (1 + run.seed) / run.alpha ** 2 + run.params["offset"]}


EXPERIMENT = Experiment(
    name="toy-line", summary=__doc__, datasets=("teacher-student",),
    presets={"quick": Preset("a CPU", scales=[1.0, 10.0], offset=0.0, seeds=2)},
    plan=plan, run_one=run_one, methods=("lazy",), metrics={"test_loss": "test loss"},
    axes=("scale", "seed"), notes=lambda rows: f"{len(rows)} toy runs.",
    figures=(Figure("loss.png", lambda rows, path: plots.plot_vs_scale(rows, "test_loss", path, "loss", "toy"),
                    "The toy loss against α."),),
)
'''


@pytest.fixture
def toy_in_package(tmp_path, monkeypatch):
    """compare/experiments/ as if toy_line.py had been added to it (the registry rediscovers its modules)."""
    folder = tmp_path / "more_experiments"
    folder.mkdir()
    (folder / "toy_line.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(folder)])
    monkeypatch.setattr(experiments, "_REGISTRY", {})
    monkeypatch.setattr(experiments, "_FOUND", False)
    yield
    sys.modules.pop("compare.experiments.toy_line", None)


def test_a_new_module_is_found_run_and_reported(toy_in_package, tmp_path, capsys):
    assert "toy-line" in experiments.names() and "equivalence" in experiments.names()
    assert "toy-line" in build_parser().format_help()
    out = tmp_path / "out"
    assert main(["toy-line", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "toy-line on teacher-student (quick preset, 4 runs" in printed
    text = (out / "report.md").read_text()
    assert "# lazykit `toy-line` report" in text and "4 toy runs." in text
    assert "| line | lazy | 1 | 1.5 ± 0.71 | 2 |" in text            # mean 1.5, sample std 0.7071
    assert "| line | lazy | 10 | 0.015 ± 0.0071 | 2 |" in text         # the same over α² = 100
    assert "![loss](loss.png)" in text and (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    # --set reaches the plan, and a changed shared setting is refused rather than mixed
    assert main(["toy-line", "--out", str(out), "--quiet", "--device", "cpu", "--set", "offset=1.0"]) == 2
    assert "offset: 0.0 there, 1.0 now" in capsys.readouterr().err
    assert all(step.name != "toy-line (quick)" for step in gpu_check.plan())


def test_register_refuses_a_taken_name_and_the_report_finds_a_registered_one(toy_in_package):
    other = experiments.get("toy-line")
    with pytest.raises(ValueError, match="already registered"):
        experiments.register(Experiment(**{**other.__dict__, "summary": "another"}))
    rows = [{"experiment": "toy-line", "model": "line", "method": "lazy", "scale": 2.0, "seed": 0,
             "test_loss": 0.25}]
    assert report.summary_table(rows) == (["model", "method", "α", "test loss", "seeds"],
                                          [["line", "lazy", "2", "0.25", "1"]])


def test_a_declaration_without_presets_or_with_an_unknown_scale_is_refused():
    run = experiments.get("rates")
    with pytest.raises(ValueError, match="presets must be a non-empty dict of Preset"):
        Experiment(**{**run.__dict__, "presets": {"quick": {"seeds": 1}}})
    with pytest.raises(ValueError, match="scale_field must be 'alpha' or 'init_scale'"):
        Experiment(**{**run.__dict__, "scale_field": "tau"})
    with pytest.raises(ValueError, match="needs 'seeds'"):
        Preset("a CPU", n_train=10)
    with pytest.raises(ValueError, match="needs the hardware it is meant for"):
        Preset("", seeds=1)
