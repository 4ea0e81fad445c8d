"""The typed run record: validation, its flat form in results.jsonl (``scale`` kept), and results folders
written before the record existed still resume without recomputing anything."""
import json
import shutil
from pathlib import Path

import pytest

from compare import experiments
from compare import sweep
from compare.cli import main
from compare.sweep.run import Run

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results-before-run-records"
# The commands (run with the code before typed runs, commit e90fab9) that wrote the fixture folders; the same
# options now must find every run finished and the configuration unchanged.
OLD_COMMANDS = {
    "teacher-student": ["--seeds", "1", "--set", "dims=[2]", "--set", "taus=[0.1, 10.0]", "--set", "steps=50",
                        "--set", "n_train=20", "--set", "n_test=50", "--set", "m=10"],
    "rates": ["--set", "scales=[1.0, 10.0]", "--set", "steps=5", "--set", "n_train=10", "--set", "n_test=20",
              "--set", "m=20"],
    # the equivalence protocol changed (a centred net row, every net row trained to the same loss): the old
    # folder resumes under the old protocol, asked for by name; with today's defaults it is refused, not mixed
    "equivalence": ["--set", "scales=[1.0]", "--set", "steps=5", "--set", "n_train=30", "--set", "n_test=20",
                    "--set", "widths=[16]", "--set", "probe=10", "--set", "centre_net=False",
                    "--set", "match_loss=False"],
}


def test_flat_form_keeps_scale_and_reads_back():
    run = Run("teacher-student", "teacher-student", "two_layer", "net", 1, init_scale=0.1, params={"d": 10})
    config = run.config()
    assert config["scale"] == 0.1 and "init_scale" not in config and "alpha" not in config
    assert Run.from_config(config, scale_field="init_scale") == run
    assert Run.from_config(config).alpha == 0.1                       # read as the lazy scale by default
    lazy = Run("rates", "teacher-student", "two_layer", "lazy", 0, alpha=10.0)
    assert lazy.scale == 10.0 and Run("x", "y", "m", "net", 0).scale is None


def test_a_setting_added_later_is_left_out_at_the_value_that_reproduces_older_runs():
    old = Run("equivalence", "digits", "mlp", "net", 0, params={"steps": 5})
    new = Run("equivalence", "digits", "mlp", "net", 0, params={"steps": 5, "loss": "mse"}, defaults={"loss": "mse"})
    assert new.config() == old.config() and sweep.run_key(new.config()) == sweep.run_key(old.config())
    other = new.replace(params={"steps": 5, "loss": "hinge"})
    assert other.config()["loss"] == "hinge"                            # any other value is part of the run


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=1.0, init_scale=1.0), "a run has one scale"),
    (dict(alpha=0.0), "Run.alpha must be a finite number > 0"),
    (dict(init_scale=float("nan")), "Run.init_scale must be a finite number > 0"),
    (dict(alpha=True), "Run.alpha must be a finite number > 0"),
    (dict(device="auto"), "resolve 'auto' once"),
    (dict(seed=-1), "Run.seed must be an integer >= 0"),
    (dict(seed=True), "Run.seed must be an integer >= 0"),
    (dict(params={"scale": 1.0}), "must not repeat the run's own fields: scale"),
])
def test_bad_fields_are_refused(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Run("rates", "teacher-student", "two_layer", "lazy", **{"seed": 0, **kwargs})


def test_from_config_names_what_is_missing():
    with pytest.raises(ValueError, match="needs seed, scale"):
        Run.from_config({"experiment": "e", "dataset": "d", "model": "m", "method": "x", "device": "cpu"})


@pytest.mark.parametrize("name", sorted(OLD_COMMANDS))
def test_an_old_results_folder_resumes_without_recomputing(name, tmp_path):
    out = tmp_path / name
    shutil.copytree(FIXTURES / name, out)
    before = (out / "results.jsonl").read_bytes()
    stored = json.loads((out / "config.json").read_text())
    rows = sweep.read_results(out / "results.jsonl")
    # the plan of the same options gives the same run keys and the same fingerprint as the old code
    experiment = experiments.get(name)
    args = ["--out", str(out), "--quiet", "--threads", "1", "--device", "cpu", *OLD_COMMANDS[name]]
    assert main([name, *args]) == 0
    assert (out / "results.jsonl").read_bytes() == before              # nothing recomputed, nothing appended
    after = json.loads((out / "config.json").read_text())
    assert {k: after[k] for k in ("fingerprint", "config")} == stored   # the same sweep, fingerprint untouched
    assert after["resolved"]["threads"] == 1 and after["resolved"]["devices"] == {"nets": "cpu", "kernels": "cpu"}
    assert len(rows) >= 2 and (out / "report.md").exists()
    for row in rows:                                                     # old rows read back as typed runs
        config = {k: row[k] for k in stored["config"]}
        axes = {k: row[k] for k in experiment.axes if k in row}
        run = Run.from_config({**config, **axes, "device": "cpu"}, experiment.scale_field)
        assert sweep.run_key(run.config()) == row["run_key"]
