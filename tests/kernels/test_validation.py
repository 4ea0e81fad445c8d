"""kernels.validation: the one set of argument checks (scalars, choices, arrays) and its message style."""
import math

import numpy as np
import pytest
import torch

from kernels import validation
from kernels.validation import ArgumentTypeError, check_array, check_choice, check_finite, check_scalar


# ----------------------------------------------------------------------------------------------- check_scalar
def test_the_message_style_names_the_argument_the_expectation_and_the_value():
    with pytest.raises(ValueError, match=r"^`depth` must be an integer ≥ 0, got -1$"):
        check_scalar(-1, "depth", int, min_val=0)
    with pytest.raises(ValueError, match=r"^`lr` must be a finite number > 0, got 0\.0$"):
        check_scalar(0.0, "lr", float, min_val=0, include_boundaries="neither")
    with pytest.raises(ValueError, match=r"^`momentum` must be a finite number in \[0, 1\), got 1\.0$"):
        check_scalar(1.0, "momentum", float, min_val=0, max_val=1, include_boundaries="left")
    with pytest.raises(ValueError, match=r"^`b_std` must be None \(no bias\) or a finite number ≥ 0, got -0\.5$"):
        check_scalar(-0.5, "b_std", float, min_val=0, allow_none="no bias")
    with pytest.raises(ValueError, match=r"^`p` must be a finite number < 0\.5, got 0\.5$"):
        check_scalar(0.5, "p", float, max_val=0.5, include_boundaries="left")


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_booleans_are_never_numbers(value):
    for kind in (int, float):
        with pytest.raises(ArgumentTypeError, match="`n`"):
            check_scalar(value, "n", kind)


def test_numpy_scalars_count_and_come_back_as_python_numbers():
    out = check_scalar(np.int64(3), "n", int, min_val=1)
    assert out == 3 and type(out) is int
    out = check_scalar(np.float32(0.5), "x", float, min_val=0)
    assert out == 0.5 and type(out) is float
    out = check_scalar(2, "x", float)          # an integer is a valid real number
    assert out == 2.0 and type(out) is float


@pytest.mark.parametrize("value", [1.5, 2.0, "3", None, [1]])
def test_an_integer_parameter_refuses_other_types(value):
    # 2.0 is refused too: an integer count given as a float is a caller's mistake, not a value to round.
    with pytest.raises(ArgumentTypeError, match="`n` must be an integer"):
        check_scalar(value, "n", int)


def test_wrong_types_raise_an_error_that_is_both_a_type_and_a_value_error():
    with pytest.raises(TypeError):
        check_scalar("x", "n", int)
    with pytest.raises(ValueError):
        check_scalar("x", "n", int)


def test_nan_is_never_valid_and_inf_only_when_allowed():
    with pytest.raises(ValueError, match="finite number"):
        check_scalar(math.nan, "x", float)
    with pytest.raises(ValueError, match="`x` must be a number ≥ 0, got nan"):
        check_scalar(math.nan, "x", float, min_val=0, allow_inf=True)
    with pytest.raises(ValueError, match="finite number"):
        check_scalar(math.inf, "x", float)
    assert check_scalar(math.inf, "t", float, min_val=0, allow_inf=True) == math.inf
    with pytest.raises(ValueError, match="≥ 0"):
        check_scalar(-math.inf, "t", float, min_val=0, allow_inf=True)


@pytest.mark.parametrize("boundaries, ok_low, ok_high", [
    ("both", True, True), ("left", True, False), ("right", False, True), ("neither", False, False)])
def test_include_boundaries_as_in_scikit_learn(boundaries, ok_low, ok_high):
    for value, ok in ((0, ok_low), (1, ok_high)):
        if ok:
            assert check_scalar(value, "x", float, min_val=0, max_val=1, include_boundaries=boundaries) == value
        else:
            with pytest.raises(ValueError, match="`x` must be a finite number in"):
                check_scalar(value, "x", float, min_val=0, max_val=1, include_boundaries=boundaries)
    assert check_scalar(0.5, "x", float, min_val=0, max_val=1, include_boundaries=boundaries) == 0.5


def test_none_only_when_allowed():
    assert check_scalar(None, "block_size", int, min_val=1, allow_none=True) is None
    with pytest.raises(ArgumentTypeError, match=r"^`block_size` must be None or an integer ≥ 1, got 'a'$"):
        check_scalar("a", "block_size", int, min_val=1, allow_none=True)
    with pytest.raises(ArgumentTypeError, match=r"^`n` must be an integer ≥ 1, got None$"):
        check_scalar(None, "n", int, min_val=1)


def test_check_scalar_refuses_its_own_bad_arguments():
    with pytest.raises(ValueError, match="type must be int or float"):
        check_scalar(1, "x", str)
    with pytest.raises(ValueError, match="include_boundaries must be one of both, left, right, neither"):
        check_scalar(1, "x", int, include_boundaries="all")


# ----------------------------------------------------------------------------------------------- check_choice
def test_unknown_choice_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown activation 'rellu'; valid: relu, erf, tanh$"):
        check_choice("rellu", "activation", ("relu", "erf", "tanh"))
    assert check_choice("erf", "activation", ["relu", "erf"]) == "erf"
    assert check_choice("b", "key", {"a": 1, "b": 2}) == "b"     # a mapping's keys are its choices


def test_a_bool_is_not_a_numeric_choice():
    assert check_choice(11, "depth", (11, 13)) == 11
    assert check_choice(np.int64(13), "depth", (11, 13)) == 13
    with pytest.raises(ValueError, match="unknown depth True; valid: 1, 2"):
        check_choice(True, "depth", (1, 2))
    assert check_choice(True, "flag", (True, False)) is True


def test_unhashable_and_array_values_are_refused_cleanly():
    with pytest.raises(ValueError, match=r"unknown method \['a'\]"):
        check_choice(["a"], "method", ("a", "b"))
    with pytest.raises(ValueError, match="unknown method array"):
        check_choice(np.array(["a", "b"]), "method", ("a", "b"))


# ----------------------------------------------------------------------------------------------- check_array
def test_check_array_accepts_torch_and_converts(rng):
    t = torch.from_numpy(rng.standard_normal((5, 2)))
    a = check_array(t, "X")
    assert isinstance(a, np.ndarray) and a.shape == (5, 2) and a.dtype == np.float64


@pytest.mark.parametrize("bad, exc, message", [
    ([[1.0, 2.0]], TypeError, "X must be an array"),
    (3.0, TypeError, "X must be an array"),
    ("abc", TypeError, "X must be an array"),
    (np.array([[1, 2]]), TypeError, "X must have a real floating dtype"),
    (np.array([[1 + 2j]]), TypeError, "X must have a real floating dtype"),
    (np.array([[True]]), TypeError, "X must have a real floating dtype"),
    (np.array([[np.nan, 1.0]]), ValueError, "X contains NaN or inf"),
    (np.array([[np.inf, 1.0]]), ValueError, "X contains NaN or inf"),
    (np.zeros((0, 3)), ValueError, "X is empty"),
])
def test_bad_input_names_the_argument(bad, exc, message):
    with pytest.raises(exc, match=message):
        check_array(bad, "X")


def test_check_array_ndim_and_cast(rng):
    with pytest.raises(ValueError, match="X must be 2-dimensional"):
        check_array(rng.standard_normal(3), "X", ndim=2)
    with pytest.raises(ValueError, match="X must have at least 3 dimensions, got shape"):
        check_array(rng.standard_normal((2, 2)), "X", min_ndim=3)
    ints = np.arange(6).reshape(3, 2)
    out = check_array(ints, "X", dtype="float32")
    assert out.dtype == np.float32 and np.array_equal(out, ints)


def test_check_array_can_allow_empty_and_non_finite():
    assert check_array(np.zeros((0, 3)), "X", allow_empty=True).shape == (0, 3)
    x = np.array([1.0, np.nan])
    assert check_array(x, "X", ensure_all_finite=False) is x


def test_generic_checks_run_under_the_array_api(xp):
    # check_finite and check_array use only the standard API: the same code serves NumPy and CuPy.
    x = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    assert check_finite(x, "x") is x
    with pytest.raises(ValueError, match="x contains NaN"):
        check_finite(xp.asarray([1.0, float("nan")]), "x")
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        check_array(xp.asarray([1, 2]), "x")
    assert check_array(x, "x").shape == (2, 2)


def test_check_finite_reads_torch_tensors():
    assert check_finite(torch.ones(2), "x").shape == (2,)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        check_finite(torch.tensor([1.0, float("inf")]), "x")


def test_the_module_is_the_only_home_of_these_checks():
    # backend keeps only array/device plumbing; the checks moved here (and namespace_for, unused, is gone).
    from kernels import backend
    for name in ("check_array", "check_finite", "check_floating", "namespace_for"):
        assert not hasattr(backend, name)
    assert validation.check_array is check_array


# ----------------------------------------------------------------------------------------------- issue #24
@pytest.mark.parametrize("value", [np.array([1]), np.array(["relu"]), [1], np.array([[1]])])
def test_check_choice_refuses_arrays_whose_comparison_is_truthy(value):
    # np.array([1]) == 1 is array([True]), which `if` took for a match: the array was accepted as the choice 1
    with pytest.raises(ValueError, match="unknown activation"):
        check_choice(value, "activation", (1, 2, "relu"))
    assert check_choice(np.int64(1), "activation", (1, 2)) == 1      # a NumPy scalar is a plain value


@pytest.mark.parametrize("value", ["yes", "false", 1, 0, None, np.array([True])])
def test_check_bool_refuses_everything_but_booleans(value):
    with pytest.raises(ArgumentTypeError, match=r"^`symmetric` must be True or False"):
        validation.check_bool(value, "symmetric")
    assert validation.check_bool(np.bool_(True), "symmetric") is True


def test_check_writable_names_the_option(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(validation.UnwritablePathError, match=r"`store` .* is a file, not a folder"):
        validation.check_writable(a_file, "store", directory=True)
    with pytest.raises(validation.UnwritablePathError, match=r"`store` .* cannot be created: .* is a file"):
        validation.check_writable(a_file / "sub" / "s.zarr", "store", directory=True)
    with pytest.raises(validation.UnwritablePathError, match=r"`checkpoint` .* its folder .* does not exist"):
        validation.check_writable(tmp_path / "missing" / "ck.pt", "checkpoint")
    with pytest.raises(validation.UnwritablePathError, match=r"`checkpoint` .* is a folder"):
        validation.check_writable(tmp_path, "checkpoint")
    assert validation.check_writable(tmp_path / "new" / "deeper", "store", directory=True) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()          # nothing is created by the check
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]   # the probe file is gone

    # a read-only folder (simulated: root may write anywhere, so the probe's os.open is made to fail as on a
    # read-only mount)
    real_open = validation.os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            raise OSError(30, "Read-only file system")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(validation.os, "open", read_only)
    with pytest.raises(validation.UnwritablePathError, match=r"`checkpoint` .* \(Read-only file system\)"):
        validation.check_writable(tmp_path / "ck.pt", "checkpoint")
