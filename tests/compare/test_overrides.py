"""--set KEY=VALUE is checked against the experiment's presets before anything is written or run."""
import pytest

from compare import cli
from compare.experiments import equivalence, table, teacher_student
from compare.overrides import parse_override

BAD = [  # (item, words the one-line error must contain)
    ("n_train=abc", "n_train must be an integer >= 1"),
    ("lr_factor=nan", "lr_factor must be a finite number > 0"),
    ("lr_factor=1e999", "lr_factor must be a finite number > 0"),
    ("dtype=float16", "dtype must be one of float32, float64"),
    ("widths=64", "widths takes a non-empty list"),
    ("widths=[]", "widths takes a non-empty list"),
    ("widths=[64, True]", "each entry of widths must be an integer >= 1"),
    ("scales=1.0", "scales takes a non-empty list"),
    ("steps=-1", "steps must be an integer >= 1"),
    ("steps=2.5", "steps must be an integer >= 1"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("analytic=1", "analytic must be True or False"),
    ("n_test=None", "n_test cannot be None"),
    ("bogus=1", "KEY one of"),
]


@pytest.mark.parametrize("item, words", BAD)
def test_bad_overrides_name_the_key(item, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        parse_override(item, equivalence.PRESETS)


@pytest.mark.parametrize("item, value", [("n_train=200", 200), ("scales=[1, 100]", [1.0, 100.0]),
                                         ("lr_factor=2", 2.0), ("dtype=float32", "float32"),
                                         ("image_classes=None", None), ("image_classes=[3, 5]", [3, 5]),
                                         ("analytic=False", False)])
def test_good_overrides(item, value):
    key, parsed = parse_override(item, equivalence.PRESETS)
    assert parsed == value and type(parsed) is type(value)


def test_other_experiments_keys():
    """Zero is allowed only where a preset uses it, None where a preset uses None."""
    with pytest.raises(ValueError, match="cntk_n_train must be an integer >= 1, got int 0"):
        parse_override("cntk_n_train=0", table.PRESETS)    # every table preset has CNTK rows
    uses_zero = {"quick": {"cntk_n_train": 0}, "full": {"cntk_n_train": 2000}}
    assert parse_override("cntk_n_train=0", uses_zero) == ("cntk_n_train", 0)
    assert parse_override("n_train=None", table.PRESETS) == ("n_train", None)
    assert parse_override("models=['vgg11']", table.PRESETS) == ("models", ["vgg11"])
    assert parse_override("cntk_readouts=[]", table.PRESETS) == ("cntk_readouts", [])   # no CNTK rows
    with pytest.raises(ValueError, match="each entry of models must be one of"):
        parse_override("models=[3]", table.PRESETS)
    with pytest.raises(ValueError, match="each entry of taus must be a finite number > 0"):
        parse_override("taus=[0.1, -1]", teacher_student.PRESETS)


def test_cli_refuses_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["equivalence", "--set", "widths=64", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --set widths=64: widths takes a non-empty list like [64] (e.g. --set widths=[64])"]
    assert not out.exists()


def test_models_may_be_empty():
    """`table --set models=[]` keeps only the kernel rows (used by tests/compare/test_experiments.py)."""
    assert parse_override("models=[]", table.PRESETS) == ("models", [])
