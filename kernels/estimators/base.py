"""What every lazykit estimator shares (the kernel and random-features models here, the lazy-net models of
``nets``): validation through scikit-learn with errors that name X or y, arrays in and out on their own device
(NumPy, CuPy, torch), and the fit / predict of regressors and classifiers on top of ``_fit_arrays`` and
``_outputs``.

The compute device is resolved once, in ``fit`` (``device_``); ``predict`` uses it.
"""
from __future__ import annotations

import contextlib
import numbers
import re

import array_api_compat
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import assert_all_finite, check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from kernels import backend, validation


# ----------------------------------------------------------------------------------------------- arrays in and out
def _origin(X):
    """Where an input lives: ("torch", torch.device), ("cupy", None) or ("numpy", None)."""
    if backend.is_torch(X):
        return "torch", X.device
    if array_api_compat.is_cupy_array(X):
        return "cupy", None
    return "numpy", None


def _to_origin(a, origin):
    """Return ``a`` as the kind of array the input was, on the input's device."""
    kind, device = origin
    if kind == "numpy":
        return backend.to_numpy(a)
    if kind == "cupy":
        return backend.to_device(a, "cuda")
    if device.type == "cuda" and array_api_compat.is_cupy_array(a):
        return backend.to_torch(a)                     # zero-copy through DLPack
    import torch   # the input was a torch tensor, so torch is loaded already; NumPy users never pay for it
    return torch.from_numpy(np.ascontiguousarray(backend.to_numpy(a))).to(device)


class ArrayEstimator(BaseEstimator):
    """Validation shared by all estimators: host arrays through scikit-learn, device arrays by hand."""

    def _compute_device(self):
        """The device resolved by ``fit`` (``device_``): "auto" is resolved once per fit, not per call."""
        return self.device_

    def _validate_X(self, X, reset: bool, y=None, classifier: bool = False):
        """Validated (X on the compute device, y on the host) with scikit-learn's checks and messages.

        ``reset=True`` (fit) also validates y, which is then required, and resolves ``device`` into ``device_``.
        """
        if reset:
            self.device_ = backend.resolve_device(self.device)
        device = self._compute_device()
        dtype = backend.default_dtype(device)
        _check_array_like(X, "X")
        n_x, n_y = (n_samples(a) for a in (X, y))
        if reset and n_x is not None and n_y is not None and n_x != n_y:
            raise ValueError(f"X and y must have the same number of samples, got {n_x} and {n_y}")
        if backend.is_torch(X):
            X = backend.from_torch(backend.half_to_float(X))
        if backend.is_torch(y):
            y = backend.to_numpy(y)
        elif y is not None and array_api_compat.is_cupy_array(y):
            y = y.get()
        if array_api_compat.is_cupy_array(X):
            X = validation.check_array(X, "X", ndim=2, dtype=dtype)
            if reset and X.shape[0] < 2:
                raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) while a "
                                 f"minimum of 2 is required by {type(self).__name__}.")
            if not reset and X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input.")
            if reset:
                self.n_features_in_ = X.shape[1]
                y = self._validate_y(y, X.shape[0], classifier)
        elif not reset:
            with naming_inputs(X):
                X = validate_data(self, X, reset=reset, dtype=np.float64)
        else:
            with naming_inputs(X):
                X, y = validate_data(self, X, y, reset=reset, dtype=np.float64, ensure_min_samples=2,
                                     multi_output=not classifier, y_numeric=not classifier)
        return backend.to_device(validation.check_array(X, "X", dtype=dtype), device), y

    def _validate_y(self, y, n_samples, classifier):
        """y checked as ``validate_data`` would (used when X is a device array that scikit-learn cannot read)."""
        if y is None:
            raise ValueError(f"This {type(self).__name__} estimator requires y to be passed, but the target y "
                             "is None.")
        if classifier:
            y = column_or_1d(y, warn=True)
            assert_all_finite(y, input_name="y")
        else:
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.shape[0] != n_samples:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n_samples}, "
                             f"{y.shape[0]}]")
        return y

    def _outputs_for(self, X):
        """(outputs (n, n_outputs) on the compute device, where X came from) for new X; the model must be fitted."""
        check_is_fitted(self)
        origin = _origin(X)
        X, _ = self._validate_X(X, reset=False)
        return self._outputs(X), origin


@contextlib.contextmanager
def naming_inputs(X):
    """Re-raise scikit-learn's validation errors ("Complex data not supported", "Found array with 0 sample(s)",
    "Unknown label type", ...) with the input they are about: X when X alone fails ``check_array``, else y."""
    try:
        yield
    except ValueError as exc:
        message = str(exc)
        if re.search(r"(?<![A-Za-z0-9_])[Xy](?![A-Za-z0-9_])", message):
            raise
        try:
            check_array(X, accept_sparse=False, dtype=None, ensure_min_samples=1)
            name = "y"
        except (TypeError, ValueError):
            name = "X"
        raise type(exc)(f"{name}: {message}") from None


def n_samples(a):
    """Rows of an array-like (``shape[0]`` when it has a shape, e.g. sparse matrices), None when unknown."""
    shape = getattr(a, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    return len(a) if hasattr(a, "__len__") and not isinstance(a, (str, bytes)) else None


def _check_array_like(X, name):
    """TypeError naming ``name`` for None, strings and scalars (scikit-learn's own message names neither)."""
    if X is None or isinstance(X, (str, bytes, numbers.Number, np.generic)):
        raise TypeError(f"{name} must be a 2-D array-like (n_samples, n_features), got {type(X).__name__} {X!r}")


def _check_numeric_targets(y):
    """ValueError naming y when a regressor is given labels (strings, bytes, objects that are not numbers)."""
    if y is None or backend.is_torch(y) or array_api_compat.is_cupy_array(y):
        return
    y = np.asarray(y)
    if y.dtype.kind == "O":
        try:
            y.astype(np.float64)
            return
        except (TypeError, ValueError):
            pass
    if y.dtype.kind in "USO":
        what = {"U": "strings", "S": "bytes", "O": "Python objects"}[y.dtype.kind]
        raise ValueError(f"y must hold real numbers for a regressor, got {what} (dtype {y.dtype}); "
                        "for class labels use the classifier")


class Regressor(RegressorMixin):
    """fit/predict for regressors: targets y of shape (n,) or (n, n_targets), predictions of the same shape."""

    def fit(self, X, y):
        _check_numeric_targets(y)
        X, y = self._validate_X(X, reset=True, y=y)
        y = np.asarray(y, dtype=np.float64)
        Y = backend.to_device(y if y.ndim == 2 else y[:, None], self._compute_device())
        self._fit_arrays(X, validation.check_array(Y, "y", dtype=X.dtype))
        self.single_target_ = y.ndim == 1
        return self

    def predict(self, X):
        F, origin = self._outputs_for(X)
        return _to_origin(F[:, 0] if self.single_target_ else F, origin)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class Classifier(ClassifierMixin):
    """fit/predict for classifiers: one-hot 0/1 regression, argmax prediction, string labels supported."""

    def fit(self, X, y):
        X, y = self._validate_X(X, reset=True, y=y, classifier=True)
        with naming_inputs(np.zeros((1, 1))):   # X has passed: what fails here is about y
            check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y holds a single class ({self.classes_[0]!r}); a classifier needs at least two "
                             "classes")
        onehot = np.zeros((len(index), len(self.classes_)))
        onehot[np.arange(len(index)), index] = 1.0
        self._fit_arrays(X, validation.check_array(backend.to_device(onehot, self._compute_device()), "y",
                                                dtype=X.dtype))
        return self

    def decision_function(self, X):
        """Regression outputs: (n,) = output₁ − output₀ for two classes, else (n, n_classes)."""
        F, origin = self._outputs_for(X)
        if F.shape[1] == 2:
            F = F[:, 1] - F[:, 0]
        elif F.shape[1] == 1:
            F = F[:, 0]
        return _to_origin(F, origin)

    def predict(self, X):
        """The class whose one-hot output is largest."""
        F, origin = self._outputs_for(X)
        labels = self.classes_[backend.to_numpy(backend.get_namespace(F).argmax(F, axis=1))]
        numeric = labels.dtype.kind in "biuf"
        return _to_origin(labels, origin) if numeric and origin[0] != "numpy" else labels
