"""scikit-learn estimators on random features: ridge regression on z(x) ("fourier", "arccos", "ntk" or a
transformer from ``kernels.features``), the same model as kernel ridge regression with the kernel z(x)·z(y).
Fitting, targets and arrays as the kernel estimators of ``kernels.estimators.kernel_models``."""
from __future__ import annotations

import numpy as np
from sklearn.base import clone

from kernels import backend, validation
from kernels.estimators.base import ArrayEstimator, Classifier, Regressor
from kernels.features import ArcCosineFeatures, NTKFeatures, RandomFourierFeatures
from kernels.solve.ridge import check_alpha, krr_solve

FEATURES = ("fourier", "arccos", "ntk")


class _RandomFeaturesModel(ArrayEstimator):
    """Ridge regression on random features z(x): (ZᵀZ + αI) w = Zᵀy when n_features ≤ n, else the dual.

    Both are the same model as KRR with the kernel z(x)·z(y) and ridge α (``Ridge(fit_intercept=False)``).
    """

    def __init__(self, features="fourier", n_features=1000, gamma=None, alpha=1.0, random_state=None,
                 device="auto"):
        self.features = features
        self.n_features = n_features
        self.gamma = gamma
        self.alpha = alpha
        self.random_state = random_state
        self.device = device

    def _make_features(self, n_inputs):
        if isinstance(self.features, str):
            validation.check_choice(self.features, "features", FEATURES)
            validation.check_scalar(self.n_features, "n_features", int, min_val=1)
            if self.features == "fourier":
                return RandomFourierFeatures(self.n_features, gamma=self.gamma, random_state=self.random_state)
            if self.features == "arccos":
                return ArcCosineFeatures(self.n_features, random_state=self.random_state)
            # one hidden layer without bias has width·(d + 1) parameters
            width = max(1, round(self.n_features / (n_inputs + 1)))
            return NTKFeatures(depth=1, width=width, random_state=self.random_state)
        if not (hasattr(self.features, "fit") and hasattr(self.features, "transform")):
            raise TypeError(f"features must be one of {FEATURES} or a transformer with fit/transform, "
                            f"got {type(self.features).__name__}")
        features = clone(self.features)
        if self.random_state is not None and "random_state" in features.get_params():
            features.set_params(random_state=self.random_state)
        return features

    def _fit_arrays(self, X, Y):
        alpha = check_alpha(self.alpha)
        self.features_ = self._make_features(X.shape[1]).fit(X)
        Z = self.features_.transform(X)
        xp = backend.get_namespace(Z)
        with np.errstate(over="ignore", invalid="ignore"):
            gram = Z.T @ Z if Z.shape[1] <= Z.shape[0] else Z @ Z.T
        if not bool(xp.all(xp.isfinite(gram))):
            raise validation.KernelOverflowError(f"X is too large for {type(self.features_).__name__}: the "
                                                 "features' Gram matrix overflowed; rescale X (e.g. standardise it)")
        if Z.shape[1] <= Z.shape[0]:
            self.coef_ = krr_solve(Z.T @ Z, Z.T @ Y, alpha, overwrite_K=True)
        else:
            self.coef_ = Z.T @ krr_solve(Z @ Z.T, Y, alpha, overwrite_K=True)

    def _outputs(self, X):
        return self.features_.transform(X) @ self.coef_


class RandomFeaturesRegressor(Regressor, _RandomFeaturesModel):
    """Ridge regression on random features: "fourier" (RBF, γ = ``gamma``), "arccos" (ReLU NNGP), "ntk"
    (gradients of a random one-hidden-layer ReLU net, width ≈ n_features/(d + 1)) or a transformer."""


class RandomFeaturesClassifier(Classifier, _RandomFeaturesModel):
    """One-hot ridge classification on random features; parameters as ``RandomFeaturesRegressor``."""
