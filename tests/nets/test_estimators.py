"""nets.estimators: scikit-learn conformance and behaviour of LazyNetRegressor / LazyNetClassifier."""
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

from nets import LazyNetClassifier, LazyNetRegressor


# Small networks and few epochs keep the ~40 checks per estimator fast; every check applies (training is a
# deterministic function of random_state), so no failure is expected.
@parametrize_with_checks([
    LazyNetRegressor(width=32, epochs=50),
    LazyNetRegressor(arch="two_layer", width=16, epochs=30, linearized=True, scale=10.0),
    LazyNetClassifier(width=32, epochs=50),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_classifier_learns_digits():
    # 3 digit classes, 150 training images, lazy regime α = 100: a kernel-like model separates them; held-out
    # accuracy of an NTK/RBF kernel machine on these classes is ~98%, we require > 90%.
    X, y = load_digits(n_class=3, return_X_y=True)
    clf = LazyNetClassifier(scale=100.0, width=64, epochs=100, random_state=0).fit(X[:150], y[:150])
    assert clf.score(X[150:], y[150:]) > 0.9
    proba = clf.predict_proba(X[150:160])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert list(clf.classes_) == [0, 1, 2]


def test_lazy_and_linearized_regressors_agree_at_large_scale():
    # Theorem 2.2: ‖h_α − h̄_α‖ = O(1/α) for a smooth model (tanh: with ReLU a unit whose pre-activation crosses
    # zero during training breaks the bound at a given α). At α = 1000 the two predictors differ by ~1e-3 of
    # the targets' scale or less (measured 1.8e-4); at α = 1 (same data, same seed) they differ visibly (> 1e-2).
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    gaps = {}
    for scale in (1.0, 1000.0):
        kwargs = dict(scale=scale, width=64, epochs=100, random_state=0, activation="tanh")
        a = LazyNetRegressor(**kwargs).fit(X, y).predict(X)
        b = LazyNetRegressor(linearized=True, **kwargs).fit(X, y).predict(X)
        gaps[scale] = np.sqrt(np.mean((a - b) ** 2)) / y.std()
    assert gaps[1000.0] < 1e-3 < 1e-2 < gaps[1.0]


@pytest.mark.parametrize("params, message", [
    (dict(arch="resnet"), "unknown arch 'resnet'; valid: mlp, two_layer"),
    (dict(scale=0.0), "scale"),
    (dict(scale=float("inf")), "scale"),
    (dict(width=0), "width"),
    (dict(optimizer="adam"), "unknown optimizer 'adam'; valid: gd, sgd"),
    (dict(dtype="float16"), "unknown dtype 'float16'; valid: float32, float64"),
])
def test_bad_parameters(params, message):
    X, y = np.random.default_rng(0).standard_normal((10, 3)), np.arange(10.0)
    with pytest.raises(ValueError, match=message):
        LazyNetRegressor(epochs=1, **params).fit(X, y)


def test_two_layer_cannot_classify_or_fit_several_outputs():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="two_layer"):
        LazyNetClassifier(arch="two_layer", epochs=1).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="two_layer"):
        LazyNetRegressor(arch="two_layer", epochs=1).fit(X, np.ones((10, 2)))
