"""scikit-learn estimators for kernel regression and classification: NTK/NNGP, any kernel, random features.

- ``NTKRegressor`` / ``NTKClassifier``: the analytic NTK or NNGP of a fully connected network
  (``kernels.FullyConnected``) or, with ``architecture="conv"``, of a convolutional one
  (``kernels.Convolutional``; flat rows of X are reshaped to images of ``image_shape`` = (C, H, W)).
- ``KernelRegressor`` / ``KernelClassifier``: any kernel callable ``k(x1, x2=None)`` or "rbf"/"laplace"/"polynomial".
- ``RandomFeaturesRegressor`` / ``RandomFeaturesClassifier`` (``kernels.estimators.random_features``): ridge
  regression on random features ("fourier", "arccos", "ntk" or a transformer from ``kernels.features``).

Fitting (kernels.solve.ridge): ``t=None`` is kernel ridge regression, (K + α·I) c = y (``alpha`` as in
``sklearn.kernel_ridge.KernelRidge``; α = 0 is min-norm interpolation); a number ``t`` is the prediction of
gradient flow at time t on (1/2n)(‖f(X) − y‖² + α‖f‖²_H) from f₀ = 0, i.e. a linearized network trained for
time t. Classifiers regress one-hot 0/1 targets; ``predict`` is the argmax of the outputs; for two classes
``decision_function`` is the difference of the two outputs (positive means ``classes_[1]``, the 1-D shape
scikit-learn expects), for more it is the (n, n_classes) outputs. No intercept is fitted (as ``KernelRidge``).

Arrays: NumPy, CuPy and torch inputs are accepted and predictions come back as the same kind of array on the
same device. ``device="auto"`` computes on the GPU when CuPy sees one (float32), else with NumPy (float64).
``memory=`` (a ``joblib.Memory`` or a cache directory) caches Gram matrices between fits on the same data
and kernel. ``gram_store=DIR`` instead spills the training Gram matrix to a resumable on-disk store in DIR
(``kernels.gram``; one store per kernel and training set, reused by a refit) and solves it with
``kernels.solve.stored.solve_stored``, so n is bounded by disk rather than by memory for K(x, x) in float64;
predictions then go through K(x*, X) in row blocks. ``solve_info_`` reports the method and iterations.
"""
from __future__ import annotations

import math
import numbers
import os

from sklearn.utils.validation import check_memory

from kernels import backend, validation
from kernels.analytic.networks import Convolutional, FullyConnected
from kernels.classic import resolve_kernel
from kernels.estimators.base import ArrayEstimator, Classifier, Regressor
from kernels.analytic.base import AnalyticKernel
from kernels.solve.ridge import EigenPath, check_alpha, check_time, solve_checked

ARCHITECTURES = ("fc", "conv")
NTK_KERNELS = ("ntk", "nngp")
PREDICT_BLOCK_ENTRIES = 2 ** 24   # K(x*, X) entries per prediction slab with gram_store (128 MiB in float64)


def _gram(kernel, x1, x2, device):
    """k(x1, x2) on ``device`` from host arrays (the unit that ``memory`` caches), returned on the host."""
    x1 = backend.to_device(x1, device)
    return backend.to_numpy(kernel(x1, None if x2 is None else backend.to_device(x2, device)))


# ----------------------------------------------------------------------------------------------- kernel models
class _KernelModel(ArrayEstimator):
    """Dual solution: f(x*) = K(x*, X) c with c from ``krr_solve`` (t=None) or the eigen path (t given)."""

    def _fit_arrays(self, X, Y):
        alpha = check_alpha(self.alpha)
        t = check_time(self.t)
        self.kernel_ = self._make_kernel(X.shape[1])
        self.memory_ = check_memory(self.memory)
        self.X_fit_ = X
        if self.gram_store is not None:
            self._fit_stored(X, Y, alpha, t)
            return
        K = self._gram(X, None)   # checked here once: finite, symmetric by construction, on X's device
        self.dual_coef_ = (solve_checked(K, Y, alpha, overwrite_K=True) if t is None
                           else EigenPath(K, checked=True).dual_coef(Y, alpha=alpha, t=t))

    def _fit_stored(self, X, Y, alpha, t):
        """K(X, X) into a store under ``gram_store`` (resumed when already there), then the stored solvers."""
        from kernels.solve.stored import solve_stored
        from kernels.grams.tiles import cached_gram
        if self.memory is not None:
            raise ValueError("memory and gram_store are two ways of keeping Gram matrices; pass only one")
        if not isinstance(self.gram_store, (str, os.PathLike)):
            raise TypeError(f"gram_store must be None or a directory path, got {type(self.gram_store).__name__}")
        store = cached_gram(self.gram_store, self.kernel_, X)
        Y_host = backend.to_numpy(Y)
        if t is None:
            solution = solve_stored(store, Y_host, alpha)
            coef = solution.coef
            self.solve_info_ = {"method": solution.method, "n_iter": solution.n_iter,
                                "residual": solution.residual, "converged": solution.converged}
        else:
            coef = EigenPath(store).dual_coef(Y_host, alpha=alpha, t=t)
            self.solve_info_ = {"method": "eigh"}
        self.gram_store_ = store
        self.dual_coef_ = validation.check_array(backend.to_device(coef, backend.device_of(X)), "dual_coef",
                                                 dtype=X.dtype)

    def _gram(self, x1, x2):
        device = backend.device_of(x1)
        try:
            if self.memory_.location is None:
                K = self.kernel_(x1, x2)
            else:
                host = backend.to_numpy
                K = backend.to_device(self.memory_.cache(_gram)(self.kernel_, host(x1),
                                                                None if x2 is None else host(x2), device), device)
        except validation.KernelOverflowError as exc:
            raise validation.KernelOverflowError(f"X is out of range for this estimator's kernel: {exc}") from None
        # lazykit's analytic kernels check their own output for overflow; any other kernel is checked here, once
        checks_itself = isinstance(getattr(self.kernel_, "kernel", self.kernel_), AnalyticKernel)
        if not checks_itself:
            xp = backend.get_namespace(K)
            if not bool(xp.all(xp.isfinite(K))):
                raise validation.KernelOverflowError(
                    f"the kernel {self.kernel_!r} returned NaN or inf on the finite X (largest |X| = "
                    f"{float(xp.max(xp.abs(x1))):.3g}): its values left the {K.dtype} range; rescale X (e.g. "
                    "standardise it) or change the kernel's parameters")
        return validation.check_array(K, "K", dtype=x1.dtype, ensure_all_finite=False)

    def _outputs(self, X):
        if self.gram_store is None:
            return self._gram(X, self.X_fit_) @ self.dual_coef_
        rows = max(1, PREDICT_BLOCK_ENTRIES // self.X_fit_.shape[0])   # K(x*, X) a slab of rows at a time
        xp = backend.get_namespace(X)
        return xp.concat([self.kernel_(X[i:i + rows], self.X_fit_) @ self.dual_coef_
                          for i in range(0, X.shape[0], rows)], axis=0)


class _ImageKernel:
    """Adapter: a kernel on images (N, C, H, W) applied to flat rows reshaped to ``image_shape``."""

    def __init__(self, kernel, image_shape):
        self.kernel, self.image_shape = kernel, tuple(image_shape)

    def _images(self, x):
        xp = backend.get_namespace(x)
        return xp.reshape(x, (x.shape[0],) + self.image_shape)

    def __call__(self, x1, x2=None):
        return self.kernel(self._images(x1), None if x2 is None else self._images(x2))

    def get_params(self, deep: bool = True) -> dict:
        return {"kernel": self.kernel, "image_shape": self.image_shape}


class _NTKParams:
    """Parameters and kernel construction shared by NTKRegressor and NTKClassifier."""

    def __init__(self, depth=1, activation="relu", w_std=2 ** 0.5, b_std=0.0, kernel="ntk", alpha=0.0, t=None,
                 device="auto", memory=None, architecture="fc", filter_size=3, readout="gap", image_shape=None,
                 gram_store=None):
        self.depth = depth
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.kernel = kernel
        self.alpha = alpha
        self.t = t
        self.device = device
        self.memory = memory
        self.architecture = architecture
        self.filter_size = filter_size
        self.readout = readout
        self.image_shape = image_shape
        self.gram_store = gram_store

    def _make_kernel(self, n_features):
        validation.check_choice(self.kernel, "kernel", NTK_KERNELS)
        validation.check_choice(self.architecture, "architecture", ARCHITECTURES)
        common = dict(depth=self.depth, activation=self.activation, w_std=self.w_std, b_std=self.b_std)
        if self.architecture == "fc":
            network = FullyConnected(parameterization="ntk", **common)
            return getattr(network, self.kernel)
        network = Convolutional(filter_size=self.filter_size, readout=self.readout, **common)
        return _ImageKernel(getattr(network, self.kernel), self._image_shape(n_features))

    def _image_shape(self, n_features):
        """``image_shape`` (C, H, W), or (1, s, s) when None and n_features = s² is a perfect square."""
        shape = self.image_shape
        if shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise ValueError(f"image_shape=None needs a square single-channel image, but X has {n_features} "
                                 "features; pass image_shape=(channels, height, width)")
            return 1, side, side
        if (not isinstance(shape, (tuple, list)) or len(shape) != 3
                or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise ValueError(f"image_shape must be (channels, height, width) positive integers, got {shape!r}")
        if math.prod(shape) != n_features:
            raise ValueError(f"image_shape {tuple(shape)} holds {math.prod(shape)} values, but X has "
                             f"{n_features} features")
        return tuple(int(s) for s in shape)


class NTKRegressor(_NTKParams, Regressor, _KernelModel):
    """Kernel regression with the infinite-width NTK (or NNGP) of a fully connected or convolutional network.

    Parameters: ``depth`` hidden layers, ``activation`` ("relu", "erf", ... as ``kernels.FullyConnected``),
    ``w_std``/``b_std`` (NTK parameterization; ``b_std=None``: no bias), ``kernel`` "ntk" or "nngp",
    ``alpha`` ridge (≥ 0; 0 = min-norm interpolation), ``t`` gradient-flow time (None = converged),
    ``device``, ``memory``, ``gram_store``; ``architecture="conv"`` with ``filter_size``, ``readout`` ("gap" | "flatten")
    and ``image_shape`` (C, H, W) uses ``kernels.Convolutional`` on rows of X reshaped to images.

    Defaults: ``w_std=√2, b_std=0`` as ``kernels.FullyConnected``, ``kernels.Convolutional`` and ``nets.MLP``
    (the ReLU variance-preserving choice). ``depth=1`` differs from ``FullyConnected``'s 3 (and
    ``Convolutional``'s 2) on purpose: it is the depth of ``nets.LazyNetRegressor``'s default network, so
    ``NTKRegressor()`` is the infinite-width kernel of ``LazyNetRegressor()`` (one hidden ReLU layer, NTK
    parameterization), the baseline the lazy-training comparisons start from.
    """


class NTKClassifier(_NTKParams, Classifier, _KernelModel):
    """Classification by NTK (or NNGP) regression on one-hot targets; parameters as ``NTKRegressor``."""


class _AnyKernelParams:
    def __init__(self, kernel="rbf", alpha=1.0, t=None, device="auto", memory=None, gram_store=None):
        self.kernel = kernel
        self.alpha = alpha
        self.t = t
        self.device = device
        self.memory = memory
        self.gram_store = gram_store

    def _make_kernel(self, n_features):
        return resolve_kernel(self.kernel)


class KernelRegressor(_AnyKernelParams, Regressor, _KernelModel):
    """Kernel ridge regression / gradient flow with any kernel callable or "rbf"/"laplace"/"polynomial".

    ``alpha`` defaults to 1.0 and string kernels take scikit-learn's default parameters, so
    ``KernelRegressor()`` predicts like ``KernelRidge(kernel="rbf")`` (γ = 1/n_features, α = 1).
    """


class KernelClassifier(_AnyKernelParams, Classifier, _KernelModel):
    """One-hot kernel ridge classification with any kernel; parameters as ``KernelRegressor``."""
