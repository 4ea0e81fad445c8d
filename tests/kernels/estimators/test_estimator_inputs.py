"""Every estimator answers bad X and y in lazykit's own words, naming the input (issue #24): NaN or inf (not
scikit-learn's HistGradientBoosting suggestion), strings (not "could not convert string to float", which was
attributed to y), and a gram_store on a file."""
import numpy as np
import pytest

import kernels
import nets

REGRESSORS = [kernels.NTKRegressor(), kernels.KernelRegressor(), kernels.RandomFeaturesRegressor(random_state=0),
              nets.LazyNetRegressor(width=4, epochs=1, random_state=0)]
CLASSIFIERS = [kernels.NTKClassifier(), kernels.KernelClassifier(), kernels.RandomFeaturesClassifier(random_state=0),
               nets.LazyNetClassifier(width=4, epochs=1, random_state=0)]
ALL = REGRESSORS + CLASSIFIERS


def _name(est):
    return type(est).__name__


@pytest.fixture
def data(rng):
    return rng.standard_normal((6, 3)), np.arange(6) % 2


@pytest.mark.parametrize("est", ALL, ids=_name)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_X_in_lazykit_words(est, bad, data):
    X, y = data
    X = X.copy()
    X[2, 1] = bad
    with pytest.raises(ValueError, match=r"^X contains NaN or inf; all values must be finite") as info:
        est.fit(X, y)
    assert "HistGradientBoosting" not in str(info.value)
    fitted = est.fit(data[0], y)
    with pytest.raises(ValueError, match=r"^X contains NaN or inf"):
        fitted.predict(X)


@pytest.mark.parametrize("est", REGRESSORS, ids=_name)
def test_non_finite_y_in_lazykit_words(est, data):
    X, _ = data
    with pytest.raises(ValueError, match=r"^y contains NaN or inf"):
        est.fit(X, np.r_[np.nan, np.ones(5)])


@pytest.mark.parametrize("est", ALL, ids=_name)
def test_string_X_names_X(est, data):
    _, y = data
    with pytest.raises(TypeError, match=r"^X must hold numbers, got strings"):
        est.fit(np.full((6, 3), "a"), y)


@pytest.mark.parametrize("cls", [kernels.NTKRegressor, kernels.KernelRegressor])
def test_gram_store_on_a_file_names_gram_store(cls, data, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"`gram_store` .* is a file, not a folder"):
        cls(gram_store=a_file).fit(data[0], data[1] * 1.0)
