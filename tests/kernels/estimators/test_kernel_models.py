"""kernels.estimators.kernel_models: scikit-learn compatibility, agreement with the solvers, accuracy on real data, bad input."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from kernels import (RBF, KernelClassifier, KernelRegressor, NTKClassifier, NTKFeatures, NTKRegressor,
                     RandomFeaturesClassifier, RandomFeaturesRegressor)
from kernels.solve.ridge import EigenPath

ESTIMATORS = [NTKRegressor(), NTKClassifier(), KernelRegressor(), KernelClassifier(),
              RandomFeaturesRegressor(n_features=100), RandomFeaturesClassifier(n_features=100)]


@parametrize_with_checks(ESTIMATORS)
def test_scikit_learn_estimator_checks(estimator, check):
    # No expected failures: every applicable check of scikit-learn passes.
    check(estimator)


def test_every_estimator_constructs_with_no_arguments():
    for cls in (NTKRegressor, NTKClassifier, KernelRegressor, KernelClassifier, RandomFeaturesRegressor,
                RandomFeaturesClassifier):
        assert cls().get_params()  # defaults only
    assert NTKRegressor().get_params()["alpha"] == 0.0 and NTKRegressor().t is None


def test_kernel_regressor_equals_kernel_ridge(rng):
    # Same kernel (RBF, γ = 1/n_features) and ridge convention as KernelRidge: predictions agree to 1e-10.
    X, y = rng.standard_normal((80, 4)), rng.standard_normal((80, 2))
    X_test = rng.standard_normal((10, 4))
    for alpha in (1e-3, 1.0):
        ours = KernelRegressor(alpha=alpha).fit(X, y).predict(X_test)
        theirs = KernelRidge(alpha=alpha, kernel="rbf").fit(X, y).predict(X_test)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_ntk_regressor_is_krr_with_fully_connected_ntk(rng):
    from kernels import FullyConnected
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    X_test = rng.standard_normal((6, 3))
    network = FullyConnected(depth=2, activation="relu", w_std=1.4, b_std=0.1)
    for kernel in ("ntk", "nngp"):
        K = getattr(network, kernel)
        expected = K(X_test, X) @ np.linalg.solve(K(X) + 0.01 * np.eye(40), y)
        model = NTKRegressor(depth=2, w_std=1.4, b_std=0.1, kernel=kernel, alpha=0.01).fit(X, y)
        np.testing.assert_allclose(model.predict(X_test), expected, rtol=1e-9, atol=1e-12)


def test_time_t_is_the_gradient_flow_prediction(rng):
    X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    X_test = rng.standard_normal((5, 3))
    K = RBF()(X)
    expected = RBF()(X_test, X) @ EigenPath(K).dual_coef(y, alpha=0.0, t=7.0)
    np.testing.assert_allclose(KernelRegressor(alpha=0.0, t=7.0).fit(X, y).predict(X_test), expected, rtol=1e-12)
    np.testing.assert_array_equal(KernelRegressor(t=0.0).fit(X, y).predict(X_test), 0.0)  # f₀ = 0


def test_classifier_outputs_and_labels(rng):
    X = rng.standard_normal((60, 3))
    y = np.where(X[:, 0] > 0, "yes", "no")
    model = KernelClassifier(alpha=0.1).fit(X, y)
    assert list(model.classes_) == ["no", "yes"]
    decision = model.decision_function(X)
    assert decision.shape == (60,)  # binary: output("yes") − output("no")
    np.testing.assert_array_equal(model.predict(X), np.where(decision > 0, "yes", "no"))
    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    model3 = KernelClassifier(alpha=0.1).fit(X, y3)
    outputs = model3.decision_function(X)
    assert outputs.shape == (60, 3)
    np.testing.assert_array_equal(model3.predict(X), outputs.argmax(1))
    # the outputs are the regression of one-hot targets
    onehot = np.eye(3)[y3]
    expected = KernelRegressor(alpha=0.1).fit(X, onehot).predict(X)
    np.testing.assert_allclose(outputs, expected, rtol=1e-12)


def test_digits_accuracy():
    # NTK of a 1-hidden-layer ReLU net, ridgeless, pixels scaled to [0, 1]; 600 train / 400 test digits.
    # Achieved 0.9825 (393 of 400) with both NTK and RBF (α = 1e-3); the bound allows 3 more mistakes.
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=600, test_size=400, random_state=0)
    assert NTKClassifier().fit(Xtr, ytr).score(Xte, yte) >= 0.975
    assert KernelClassifier(alpha=1e-3).fit(Xtr, ytr).score(Xte, yte) >= 0.975


def test_breast_cancer_accuracy():
    # Standardised features, NTK depth 1 with ridge 0.1, 75/25 split (random_state=0): achieved 0.972
    # (139 of 143); the RBF kernel with α = 0.1 achieved 0.965 (138). The bounds allow 1–2 more mistakes.
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    ntk = make_pipeline(StandardScaler(), NTKClassifier(alpha=0.1)).fit(Xtr, ytr)
    assert ntk.score(Xte, yte) >= 0.96
    rbf = make_pipeline(StandardScaler(), KernelClassifier(alpha=0.1)).fit(Xtr, ytr)
    assert rbf.score(Xte, yte) >= 0.95


def test_grid_search_over_ridge_and_time(rng):
    X = rng.standard_normal((90, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    search = GridSearchCV(NTKClassifier(), {"alpha": [0.0, 0.1], "t": [None, 100.0]}, cv=3).fit(X, y)
    assert set(search.best_params_) == {"alpha", "t"} and search.best_score_ > 0.6


def test_torch_inputs_return_torch(rng):
    X, y = rng.standard_normal((30, 3)), rng.standard_normal(30)
    expected = KernelRegressor().fit(X, y).predict(X[:4])
    model = KernelRegressor().fit(torch.tensor(X), torch.tensor(y))
    out = model.predict(torch.tensor(X[:4], dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)  # float32 input rounding only
    classifier = RandomFeaturesClassifier(n_features=50, random_state=0).fit(torch.tensor(X), torch.tensor(y > 0))
    labels = classifier.predict(torch.tensor(X))
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.bool
    assert isinstance(classifier.decision_function(torch.tensor(X)), torch.Tensor)


_CALLS = []


def counting_kernel(x1, x2=None):
    """An RBF kernel that records each call (a module-level function, so joblib hashes it by its code)."""
    _CALLS.append((x1.shape[0], None if x2 is None else x2.shape[0]))
    return RBF()(x1, x2)


def test_memory_caches_gram_matrices(rng, tmp_path):
    X, y = rng.standard_normal((25, 3)), rng.standard_normal(25)
    _CALLS.clear()
    first = KernelRegressor(kernel=counting_kernel, memory=str(tmp_path)).fit(X, y).predict(X[:3])
    second = KernelRegressor(kernel=counting_kernel, memory=str(tmp_path), alpha=0.5).fit(X, y).predict(X[:3])
    assert _CALLS == [(25, None), (3, 25)]  # the second fit and predict loaded both Gram matrices from disk
    assert not np.allclose(first, second)   # ... and still used its own ridge


def test_random_features_regressor_matches_kernel_ridge_on_the_features(rng):
    # Ridge on features z is KRR with kernel z·zᵀ: primal (n_features ≤ n) and dual routes agree with it.
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    for n_features in (20, 200):
        model = RandomFeaturesRegressor(n_features=n_features, alpha=0.3, random_state=0).fit(X, y)
        Z = model.features_.transform(X)
        expected = KernelRidge(alpha=0.3, kernel="precomputed").fit(Z @ Z.T, y).predict(Z[:5] @ Z.T)
        np.testing.assert_allclose(model.predict(X[:5]), expected, rtol=1e-9, atol=1e-12)
    ntk = RandomFeaturesRegressor(features=NTKFeatures(width=16), random_state=3).fit(X, y)
    assert ntk.features_.random_state == 3 and ntk.features_.width == 16


def test_convolutional_architecture_reshapes_rows_to_images(rng):
    from kernels import Convolutional
    images = rng.standard_normal((8, 1, 4, 4))
    X, y = images.reshape(8, 16), rng.standard_normal(8)
    model = NTKRegressor(architecture="conv", depth=1, filter_size=3, readout="gap", alpha=0.1).fit(X, y)
    K = Convolutional(depth=1, activation="relu", w_std=2 ** 0.5, b_std=0.0, filter_size=3, readout="gap").ntk
    expected = K(images[:2], images) @ np.linalg.solve(K(images) + 0.1 * np.eye(8), y)
    np.testing.assert_allclose(model.predict(X[:2]), expected, rtol=1e-9)
    with pytest.raises(ValueError, match="image_shape=None needs a square single-channel image"):
        NTKRegressor(architecture="conv").fit(X[:, :15], y)
    with pytest.raises(ValueError, match=r"image_shape \(2, 2, 2\) holds 8 values, but X has 16 features"):
        NTKRegressor(architecture="conv", image_shape=(2, 2, 2)).fit(X, y)


@pytest.mark.parametrize("params, message", [
    ({"alpha": -1.0}, "`alpha` must be a finite number ≥ 0"),
    ({"t": -2.0}, r"`t` must be None \(converged\) or a number ≥ 0"),
    ({"kernel": "cosine"}, "unknown kernel 'cosine'; valid: laplace, polynomial, rbf"),
    ({"device": "gpu"}, "device must be one of"),
])
def test_bad_parameters_raise_at_fit(params, message, rng):
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    model = KernelRegressor(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=message):
        model.fit(X, y)


def test_bad_ntk_parameters(rng):
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    with pytest.raises(ValueError, match="unknown kernel 'rbf'; valid: ntk, nngp"):
        NTKRegressor(kernel="rbf").fit(X, y)
    with pytest.raises(ValueError, match="unknown architecture 'mlp'; valid: fc, conv"):
        NTKRegressor(architecture="mlp").fit(X, y)
    with pytest.raises(ValueError, match="unknown features 'laplace'; valid: fourier, arccos, ntk"):
        RandomFeaturesRegressor(features="laplace").fit(X, y)


def test_bad_data(rng):
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    bad = X.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        KernelRegressor().fit(bad, y)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        KernelRegressor().fit(X, np.r_[np.nan, y[1:]])
    model = KernelRegressor().fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but KernelRegressor is expecting 2 features"):
        model.predict(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\)"):
        NTKRegressor().fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        NTKClassifier().fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        RandomFeaturesClassifier().fit(torch.tensor(X), torch.tensor(y))


def test_ridgeless_fit_on_duplicates_is_finite(rng):
    # Duplicate rows with α = 0: the solver warns and uses the pseudo-inverse; predictions stay finite.
    X = rng.standard_normal((20, 3))
    X = np.vstack([X, X[:5]])
    y = np.r_[np.arange(20) % 2, np.arange(5) % 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = NTKClassifier(alpha=0.0).fit(X, y)
    assert np.all(np.isfinite(model.decision_function(X)))
    assert model.score(X, y) == 1.0  # consistent duplicates: the min-norm interpolant fits every label


def test_fit_resolves_the_device_once_and_scans_the_gram_once(monkeypatch):
    # validation once: "auto" is resolved in fit (device_) and the n×n Gram is checked for finiteness by one
    # owner (the analytic kernel's overflow check), not again by the estimator and the solver
    from kernels import backend, validation
    from kernels.analytic import _numerics
    resolved, scans = [], []
    real_resolve, real_finite, real_overflow = backend.resolve_device, validation.check_finite, _numerics.check_overflow
    monkeypatch.setattr(backend, "resolve_device", lambda *a, **k: resolved.append(a) or real_resolve(*a, **k))
    monkeypatch.setattr(validation, "check_finite",
                        lambda x, name: (scans.append(x.shape) if x.shape == (60, 60) else None) or real_finite(x, name))
    monkeypatch.setattr(_numerics, "check_overflow",
                        lambda xp, out, *a: (scans.append(out.shape) if out.shape == (60, 60) else None)
                        or real_overflow(xp, out, *a))
    X = np.random.default_rng(0).standard_normal((60, 4))
    model = NTKRegressor(device="auto").fit(X, X[:, 0])
    model.predict(X[:5])
    assert model.device_ == "cpu"
    assert len(resolved) <= 2          # fit: the estimator's device_, and X's placement on it
    assert scans == [(60, 60)]         # the training Gram, scanned once
