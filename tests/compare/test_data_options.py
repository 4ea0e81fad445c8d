"""Options bounded or ignored by the data, and the experiments' derived learning rate (issue #24): sizes beyond
the data are capped with a note and config.json records what ran (or refused for image sets), class options
are validated, options a data set ignores get one line, --gram-store on a file and a non-finite lr name the
option the user passed."""
import json

import numpy as np
import pytest

from compare import cli, data, options

TINY = ["--set", "n_train=20", "--set", "widths=[8]", "--set", "steps=2", "--set", "probe=5", "--set",
        "scales=[1.0]", "--set", "analytic=False", "--quiet"]


def _run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_sizes_beyond_a_scikit_learn_set_are_capped_noted_and_recorded(tmp_path, capsys):
    # before: n_test=99999999 was silently capped to 450 and config.json recorded 99999999
    out = tmp_path / "eq"
    code, err = _run(["equivalence", *TINY, "--set", "n_test=99999999", "--out", str(out)], capsys)
    assert code == 0
    assert "note: n_test=99999999 capped to 450, all the test examples of digits" in err
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["data_sizes"] == {"n_train": 20, "n_test": 450, "probe": 5}   # beside the fingerprint
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {row["n_test"] for row in rows} == {450}
    # the record is not part of the fingerprint: the same command resumes
    code, err = _run(["equivalence", *TINY, "--set", "n_test=99999999", "--out", str(out)], capsys)
    assert code == 0


def test_data_sizes_of_each_bounded_option():
    sizes, notes = options.data_sizes("digits", {"n_train": 5000, "n_test": None, "probe": 9000})
    assert sizes == {"n_train": 1347, "n_test": 450, "probe": 1347}
    assert notes == ["n_train=5000 capped to 1347, all the train examples of digits",
                     "probe=9000 capped to n_train=1347 (the examples used)"]
    # table's sizes: the CNTK subsets and the batch within the training set
    sizes, notes = options.data_sizes("cifar10", {"n_train": 1000, "n_test": 500, "classes": [0, 1],
                                                  "cntk_n_train": 5000, "cntk_n_test": 100, "batch_size": 128})
    assert sizes == {"n_train": 1000, "n_test": 500, "cntk_n_train": 1000, "cntk_n_test": 100, "batch_size": 128}
    assert notes == ["cntk_n_train=5000 capped to n_train=1000 (the examples used)"]
    assert options.data_sizes("teacher-student", {"n_train": 10 ** 9}) == ({}, [])   # generated: no limit


def test_sizes_beyond_an_image_set_are_refused_before_reading_it():
    # 2 classes of CIFAR-10 hold 10,000 training images (5000 each, Krizhevsky 2009): known without the files
    with pytest.raises(ValueError, match=r"--set n_train=20000 exceeds the 10000 train examples of cifar10 in these "
                                         "classes"):
        options.data_sizes("cifar10", {"n_train": 20000, "image_classes": [0, 1]})
    assert data.available("fashion-mnist") == {"train": 60000, "test": 10000}
    assert data.available("cifar10", ["cat", "dog", 0]) == {"train": 15000, "test": 3000}


@pytest.mark.parametrize("classes, match", [
    ([99], r"--set image_classes: unknown class 99 for 'fashion-mnist'"),
    ([0, 0], r"--set image_classes: classes must name at least two distinct classes"),
    (["cat", "dog"], r"--set image_classes: unknown class 'cat' for 'fashion-mnist'"),
])
def test_image_classes_are_validated_against_the_data_set(classes, match):
    with pytest.raises(ValueError, match=match):
        options.data_sizes("fashion-mnist", {"n_train": 10, "image_classes": classes})


def test_the_cli_refuses_unknown_image_classes_in_one_line(capsys):
    code, err = _run(["equivalence", "--dataset", "fashion-mnist", "--set", "image_classes=[99]"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        "error: --set image_classes: unknown class 99 for 'fashion-mnist': expected a label 0..9 or a name "
        "(T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot)"]


def test_options_a_data_set_ignores_get_one_line():
    _, notes = options.data_sizes("digits", {"n_train": 10, "image_classes": [99]}, data_dir="/data",
                                  overridden={"image_classes"})
    assert notes == ["--set image_classes applies to the image data sets (fashion-mnist, cifar10); digits ignores it",
                     "--data-dir is not used: digits ships with scikit-learn"]
    # a preset's own image_classes (not given with --set) is no news
    assert options.data_sizes("digits", {"n_train": 10, "image_classes": [0, 1]})[1] == []
    assert options.data_sizes("teacher-student", {"n_train": 10}, data_dir="/x")[1] == [
        "--data-dir is not used: teacher-student is generated"]


def test_gram_store_on_a_file_names_the_option(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = _run(["equivalence", *TINY, "--gram-store", str(a_file), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "error: `--gram-store`" in err and "is a file, not a folder" in err
    assert not (tmp_path / "o").exists()


def test_a_learning_rate_factor_giving_inf_names_lr_factor():
    # lr = lr_factor·n/λ_max(Θ₀) = inf was refused by nets.train as "`lr` must be ... got inf"
    from compare.experiment import learning_rate
    assert learning_rate(0.5, 4.0, "lr_factor·n/λ_max(Θ₀)") == 2.0
    with pytest.raises(ValueError, match=r"^--set lr_factor=1e\+308 gives the learning rate lr = lr_factor·n/λ_max\(Θ₀\) "
                                         r"= inf .*lr_factor must stay below 8\.99e\+307"):
        learning_rate(1e308, 2.0, "lr_factor·n/λ_max(Θ₀)")


def test_a_huge_but_finite_learning_rate_diverges_into_rows(tmp_path, capsys):
    # here n/λ_max < 1, so lr is finite and training diverges: the tangent-kernel tracker met the blown-up
    # weights first and its KernelOverflowError ended the sweep; it is a divergence, recorded in the rows
    out = tmp_path / "o"
    code, err = _run(["equivalence", *TINY, "--set", "lr_factor=1e308", "--set", "n_test=50", "--out", str(out)],
                     capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows if r.get("diverged")} >= {"net", "lazy"}


def test_standardize_train_test_on_integers_keeps_the_fractions():
    # μ = (1 + 3 + 6)/3 = 10/3 and σ = √(38/9) were cast to int (3 and 2), so the result was not standardised
    train = np.array([[1, 2], [3, 5], [6, 8]])
    out, test, mean, std = data.standardize_train_test(train, np.array([[1, 2]]), (0,))
    assert out.dtype == np.float64 and test.dtype == np.float64
    np.testing.assert_allclose(mean, [10 / 3, 5.0], rtol=1e-15)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-15)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-15)
    np.testing.assert_allclose(test, (np.array([[1, 2]]) - mean) / std, rtol=1e-15)


@pytest.mark.parametrize("flag", ["yes", "false", 1])
def test_load_flags_must_be_booleans(flag):
    with pytest.raises(TypeError, match="`standardize` must be True or False"):
        data.load("digits", n_train=20, standardize=flag)
    with pytest.raises(TypeError, match="`flatten` must be True or False"):
        data.load("digits", n_train=20, flatten=flag)
