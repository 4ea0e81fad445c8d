"""compare.data.load on the scikit-learn sets: shapes, train-only standardisation, seeded stratified subsets,
classes by label or name, and clear errors for bad arguments. Nothing here touches the network.
"""
import numpy as np
import pytest
from sklearn import datasets as skdata

from compare import data


# ------------------------------------------------------------------------------------- scikit-learn sets
@pytest.mark.parametrize("name, n, d, task, n_classes", [
    ("digits", 1797, 64, "classification", 10),
    ("breast_cancer", 569, 30, "classification", 2),
    ("diabetes", 442, 10, "regression", None),
])
def test_sklearn_shapes_and_types(name, n, d, task, n_classes):
    ds = data.load(name)
    n_test = int(np.ceil(0.25 * n))  # 25% test, rounded up as in train_test_split: 450, 143, 111
    assert ds.X_train.shape == (n - n_test, d) and ds.X_test.shape == (n_test, d)
    assert ds.task == task and ds.n_classes == n_classes and ds.image_shape is None
    assert ds.X_train.dtype == np.float64
    assert ds.y_train.dtype == (np.int64 if task == "classification" else np.float64)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes"])
def test_standardisation_is_fitted_on_train_only(name):
    ds = data.load(name, seed=3)
    raw = data.load(name, seed=3, standardize=False)
    mean, std = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels of digits stay 0
    # train: mean 0 to rounding (1e-12 is ~1e4 float64 ulps of the O(1) values averaged)
    assert np.abs(ds.X_train.mean(axis=0)).max() < 1e-12
    # test: transformed with the train statistics, so its mean is not 0
    np.testing.assert_allclose(ds.X_test, (raw.X_test - mean) / std, rtol=0, atol=1e-12)
    assert np.abs(ds.X_test.mean(axis=0)).max() > 1e-3
    if ds.task == "regression":  # the target is standardised the same way
        assert abs(ds.y_train.mean()) < 1e-12 and abs(ds.y_train.std() - 1) < 1e-12
        np.testing.assert_allclose(ds.y_test, (raw.y_test - raw.y_train.mean()) / raw.y_train.std(), atol=1e-12)


def test_raw_digits_are_the_sklearn_pixels():
    ds = data.load("digits", standardize=False)
    full = skdata.load_digits()
    rows = {tuple(r) for r in full.data}
    assert all(tuple(r) in rows for r in ds.X_train) and ds.X_train.max() == 16.0
    # train and test partition the 1797 images
    assert len({tuple(r) for r in np.vstack([ds.X_train, ds.X_test])}) == len(rows)


def test_split_and_subsets_are_seeded():
    a, b, c = (data.load("digits", n_train=200, n_test=100, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_subset_is_stratified():
    ds = data.load("digits", n_train=100, n_test=50, seed=2)
    # digits classes are nearly balanced (174..183 of 1797), so 100 draws give 10 per class ± 1 (rounding)
    assert np.abs(np.bincount(ds.y_train, minlength=10) - 10).max() <= 1
    assert np.abs(np.bincount(ds.y_test, minlength=10) - 5).max() <= 1


def test_stratified_indices_largest_remainder():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [50, 30, 20])
    idx = data.stratified_indices(y, 10, rng)
    assert len(set(idx)) == 10 and list(np.bincount(y[idx])) == [5, 3, 2]  # exact proportions
    y = np.repeat([0, 1, 2], [5, 3, 2])
    # quotas 2, 1.2, 0.8 -> floors 2, 1, 0; the leftover draw goes to the largest fraction (class 2)
    assert list(np.bincount(y[data.stratified_indices(y, 4, rng)])) == [2, 1, 1]
    y = np.repeat([0, 1, 2], [97, 2, 1])
    # quotas 2.91, .06, .03 would leave two classes out; each class keeps at least one
    assert list(np.bincount(y[data.stratified_indices(y, 3, rng)])) == [1, 1, 1]


def test_classes_by_label_or_name_relabelled_in_order():
    ds = data.load("digits", classes=["8", 3], standardize=False, seed=1)
    assert ds.class_names == ("8", "3") and ds.n_classes == 2
    full = skdata.load_digits()
    by_row = {tuple(r): t for r, t in zip(full.data, full.target)}
    original = np.array([by_row[tuple(r)] for r in ds.X_train])
    np.testing.assert_array_equal(original, np.where(ds.y_train == 0, 8, 3))


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "mnist"}, "valid: digits, breast_cancer, diabetes, fashion-mnist, cifar10, teacher-student"),
    ({"name": "digits", "classes": [3, 11]}, "unknown class 11"),
    ({"name": "digits", "classes": ["3", "3"]}, "two distinct classes"),
    ({"name": "digits", "n_train": 5000}, "n_train=5000 exceeds the 1347 train examples"),
    ({"name": "digits", "n_train": 0}, "n_train must be a positive int"),
    ({"name": "diabetes", "classes": [0, 1]}, "regression task"),
    ({"name": "digits", "d": 3}, "applies to 'teacher-student' only"),
    ({"name": "digits", "first_per_class": 3}, "first_per_class applies to fashion-mnist, cifar10 only"),
    ({"name": "teacher-student", "standardize": True}, "unit sphere"),
    ({"name": "digits", "dtype": "float16"}, "valid: float32, float64"),
])
def test_bad_arguments_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.load(**kwargs)
