"""Random features: finite-dimensional maps z with z(x)·z(y) ≈ k(x, y), error O(1/√n_features).

- ``RandomFourierFeatures``: the RBF kernel exp(−γ‖x − y‖²) through sin/cos pairs (Rahimi & Recht, "Random
  features for large-scale kernel machines", NeurIPS 2007): z(x) = √(2/D)·[cos(Wx), sin(Wx)], W ~ N(0, 2γ I),
  D = n_features, so z(x)·z(y) = (2/D)·Σ_j cos(w_j·(x − y)) → E cos(w·(x − y)) = exp(−γ‖x − y‖²).
- ``ArcCosineFeatures``: the order-1 arc-cosine kernel (Cho & Saul, "Kernel methods for deep learning",
  NeurIPS 2009) k(x, y) = (‖x‖‖y‖/π)·(sin θ + (π − θ) cos θ), θ the angle between x and y, from
  z(x) = √(2/D)·ReLU(Wx), W ~ N(0, I): the NNGP of one infinitely wide ReLU layer.
- ``NTKFeatures``: the per-sample parameter gradients ∂f(x)/∂θ of a random finite MLP in the NTK
  parameterization — the features of the linearized network — so z(x)·z(y) is its empirical NTK, which
  tends to the analytic NTK (``kernels.FullyConnected(..., parameterization="ntk").ntk``) as the width grows;
  with one hidden layer its expectation over the initialisation equals the analytic NTK at every width.

All three are scikit-learn transformers (``fit`` draws the random weights from ``random_state``; ``transform``
maps arrays in their own namespace, NumPy or CuPy) with ``kernel(x1, x2=None)``, the approximate kernel
z(x1)·z(x2)ᵀ, and ``exact_kernel(x1, x2=None)``, the kernel they approximate.
"""
from __future__ import annotations

import math

import array_api_compat
import numpy as np
import scipy.special
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from kernels import validation
from sklearn.utils.validation import check_is_fitted

from kernels import backend
from kernels.analytic.networks import FullyConnected
from kernels.classic import RBF, check_gamma
from kernels.validation import KernelOverflowError, check_array, check_choice, check_scalar

ACTIVATIONS = ("relu", "erf")


def _finite(out, features, name):
    """``out``, or a KernelOverflowError naming the input when the features/kernel left the dtype's range."""
    xp = backend.get_namespace(out)
    if not bool(xp.all(xp.isfinite(out))):
        dtype = str(out.dtype).split(".")[-1]
        raise KernelOverflowError(
            f"{type(features).__name__} overflowed {dtype} on {name}: the projections X·W (and their products) "
            f"must stay below {float(np.finfo(dtype).max):.2g}; rescale {name} (e.g. standardise it)")
    return out


class _RandomFeatures(TransformerMixin, BaseEstimator):
    """Shared plumbing: validate X, draw weights in ``fit``, map arrays in their own namespace."""

    def _validate(self, X, reset: bool, name: str = "X"):
        X = check_array(X, name, ndim=2)
        if reset:
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"{name} has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X, backend.get_namespace(X)

    def _weights_like(self, weights, X):
        """A host weight array as an array of X's namespace, device and dtype."""
        xp = backend.get_namespace(X)
        return xp.asarray(np.asarray(weights, dtype=str(X.dtype).split(".")[-1]), device=array_api_compat.device(X))

    def fit(self, X, y=None):
        X, _ = self._validate(X, reset=True)
        self._draw(X.shape[1], check_random_state(validation.check_random_state(self.random_state)))
        return self

    def kernel(self, x1, x2=None):
        """The approximate kernel z(x1)·z(x2)ᵀ."""
        for x, name in ((x1, "x1"), (x2, "x2")):     # named as passed (transform would say X)
            if x is not None and hasattr(self, "n_features_in_"):
                self._validate(x, reset=False, name=name)
        z1 = self.transform(x1)
        z2 = z1 if x2 is None else self.transform(x2)
        with np.errstate(over="ignore", invalid="ignore"):
            return _finite(z1 @ z2.T, self, "x1/x2")


class RandomFourierFeatures(_RandomFeatures):
    """Random Fourier features of the RBF kernel exp(−γ‖x − y‖²), γ = 1/n_features_in by default (as
    ``kernels.RBF``): ``n_features`` (even) columns, n_features/2 cos/sin pairs."""

    def __init__(self, n_features=1024, gamma=None, random_state=None):
        self.n_features = n_features
        self.gamma = gamma
        self.random_state = random_state

    def _draw(self, d, rng):
        D = check_scalar(self.n_features, "n_features", int, min_val=1)
        if D % 2:
            raise ValueError(f"n_features must be even (cos/sin pairs), got {D}")
        check_gamma(self.gamma)
        self.gamma_ = 1.0 / d if self.gamma is None else float(self.gamma)
        self.frequencies_ = rng.standard_normal((d, D // 2)) * math.sqrt(2.0 * self.gamma_)

    def transform(self, X):
        check_is_fitted(self)
        X, xp = self._validate(X, reset=False)
        with np.errstate(over="ignore", invalid="ignore"):
            projection = _finite(X @ self._weights_like(self.frequencies_, X), self, "X")
        scale = math.sqrt(2.0 / self.n_features)
        return scale * xp.concat([xp.cos(projection), xp.sin(projection)], axis=1)

    def exact_kernel(self, x1, x2=None):
        check_is_fitted(self)
        return RBF(self.gamma_)(x1, x2)


class ArcCosineFeatures(_RandomFeatures):
    """ReLU random features of the order-1 arc-cosine kernel (‖x‖‖y‖/π)(sin θ + (π − θ) cos θ)."""

    def __init__(self, n_features=1024, random_state=None):
        self.n_features = n_features
        self.random_state = random_state

    def _draw(self, d, rng):
        D = check_scalar(self.n_features, "n_features", int, min_val=1)
        self.weights_ = rng.standard_normal((d, D))

    def transform(self, X):
        check_is_fitted(self)
        X, xp = self._validate(X, reset=False)
        with np.errstate(over="ignore", invalid="ignore"):
            projection = _finite(X @ self._weights_like(self.weights_, X), self, "X")
            z = math.sqrt(2.0 / self.n_features) * xp.where(projection > 0, projection, xp.zeros_like(projection))
        return z

    def exact_kernel(self, x1, x2=None):
        """Closed form; θ = 0 exactly on the diagonal of a same-input kernel (docs/conventions.md, *Tiles and the
        diagonal*)."""
        check_is_fitted(self)
        x1 = check_array(x1, "x1", ndim=2)
        x2v = x1 if x2 is None else check_array(x2, "x2", ndim=2)
        xp = backend.get_namespace(x1)
        # k(c·x, c·y) = c²·k(x, y): compute on inputs divided by a power of two (exact), so ‖x‖²‖y‖² cannot overflow
        e = backend.power_of_two_exponent(x1, x2v)
        x1, x2v = backend.times_power_of_two(x1, -e), backend.times_power_of_two(x2v, -e)
        n1 = xp.sqrt(xp.sum(x1 * x1, axis=1))[:, None]
        n2 = xp.sqrt(xp.sum(x2v * x2v, axis=1))[None, :]
        dot = x1 @ x2v.T
        sine = xp.sqrt(xp.clip(n1 * n1 * n2 * n2 - dot * dot, 0.0, None))
        if x2 is None:
            sine = xp.where(xp.eye(x1.shape[0], dtype=xp.bool, device=sine.device), xp.zeros_like(sine), sine)
        theta = xp.atan2(sine, dot)
        with np.errstate(over="ignore"):
            out = backend.times_power_of_two((sine + (math.pi - theta) * dot) / math.pi, 2 * e)
        return _finite(out, self, "x1/x2")


def _activation(z, xp, name):
    """φ(z) and φ'(z) for the MLP's activation."""
    if name == "relu":
        positive = z > 0
        return xp.where(positive, z, xp.zeros_like(z)), xp.astype(positive, z.dtype)
    if array_api_compat.is_cupy_namespace(xp):
        from cupyx.scipy.special import erf   # CuPy is optional: imported on the GPU path only
    else:
        erf = scipy.special.erf
    return erf(z), (2.0 / math.sqrt(math.pi)) * xp.exp(-z * z)


class NTKFeatures(_RandomFeatures):
    """Per-sample gradients of a random MLP in the NTK parameterization (the linearized network's features).

    Network (docs/conventions.md, *Parameterizations*; depth L hidden layers of ``width`` units, one output):
    z_l = (σ_w/√n_{l−1})·W_l h_{l−1} + σ_b·b_l, h_l = φ(z_l), h_0 = x, f = (σ_w/√n_L)·w·h_L + σ_b·b,
    all weights N(0, 1). Structured fast path, no autograd: with the backward signal δ_l = ∂f/∂z_l
    (δ_L = (σ_w/√n_L)·w ⊙ φ'(z_L), δ_l = (σ_w/√n_l)·(W_{l+1}ᵀ δ_{l+1}) ⊙ φ'(z_l)) the gradient for W_l is the
    outer product (σ_w/√n_{l−1})·δ_l h_{l−1}ᵀ and for b_l it is σ_b·δ_l, so the empirical NTK is
    Θ(x, y) = Σ_l [(σ_w²/n_{l−1})·(δ_l·δ_l')(h_{l−1}·h_{l−1}') + σ_b²·δ_l·δ_l'] + (σ_w²/n_L)·h_L·h_L' + σ_b²
    (``kernel``), and ``transform`` writes the same gradients out as n_params columns.
    ``b_std=None`` (or 0) means no bias parameters.
    """

    def __init__(self, depth=1, width=512, activation="relu", w_std=1.0, b_std=0.0, random_state=None):
        self.depth = depth
        self.width = width
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.random_state = random_state

    def _draw(self, d, rng):
        depth = check_scalar(self.depth, "depth", int, min_val=1)
        width = check_scalar(self.width, "width", int, min_val=1)
        check_choice(self.activation, "activation", ACTIVATIONS)
        check_scalar(self.w_std, "w_std", float, min_val=0, max_val=1e150, include_boundaries="left")
        check_scalar(self.b_std, "b_std", float, min_val=0, max_val=1e150, include_boundaries="left", allow_none="no bias")
        fan_in = [d] + [width] * depth
        self.layer_weights_ = [rng.standard_normal((width, fan_in[l])) for l in range(depth)]
        self.layer_biases_ = [rng.standard_normal(width) for _ in range(depth)]
        self.readout_ = rng.standard_normal(width)
        self.has_bias_ = self.b_std not in (None, 0, 0.0)
        per_layer = [width * fan_in[l] + (width if self.has_bias_ else 0) for l in range(depth)]
        self.n_params_ = sum(per_layer) + width + (1 if self.has_bias_ else 0)

    def _forward_backward(self, X):
        """Layer inputs h_0..h_L and backward signals δ_1..δ_L (each (n, n_l)); overflow is reported by the caller."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._forward_backward_raw(X)

    def _forward_backward_raw(self, X):
        xp = backend.get_namespace(X)
        w_std = float(self.w_std)
        b_std = 0.0 if self.b_std is None else float(self.b_std)
        inputs, derivatives = [X], []
        for W, b in zip(self.layer_weights_, self.layer_biases_):
            h = inputs[-1]
            z = (w_std / math.sqrt(h.shape[1])) * (h @ self._weights_like(W, X).T)
            if self.has_bias_:
                z = z + b_std * self._weights_like(b, X)
            value, slope = _activation(z, xp, self.activation)
            inputs.append(value)
            derivatives.append(slope)
        delta = (w_std / math.sqrt(self.width)) * self._weights_like(self.readout_, X)[None, :] * derivatives[-1]
        deltas = [delta]
        for l in range(self.depth - 1, 0, -1):
            W = self._weights_like(self.layer_weights_[l], X)
            delta = (w_std / math.sqrt(self.width)) * (delta @ W) * derivatives[l - 1]
            deltas.insert(0, delta)
        return inputs, deltas

    def transform(self, X):
        """Per-sample gradients, columns ordered W_1, b_1, …, W_L, b_L, readout w, readout b (n, n_params_)."""
        check_is_fitted(self)
        X, xp = self._validate(X, reset=False)
        inputs, deltas = self._forward_backward(X)
        n, w_std = X.shape[0], float(self.w_std)
        columns = []
        for h, delta in zip(inputs[:-1], deltas):
            outer = (w_std / math.sqrt(h.shape[1])) * (delta[:, :, None] * h[:, None, :])
            columns.append(xp.reshape(outer, (n, delta.shape[1] * h.shape[1])))
            if self.has_bias_:
                columns.append(float(self.b_std) * delta)
        columns.append((w_std / math.sqrt(self.width)) * inputs[-1])
        if self.has_bias_:
            columns.append(xp.full((n, 1), float(self.b_std), dtype=X.dtype, device=array_api_compat.device(X)))
        return _finite(xp.concat(columns, axis=1), self, "X")

    def kernel(self, x1, x2=None):
        """Empirical NTK from the structured formula: O(n1·n2·width·depth), no n_params-wide features."""
        check_is_fitted(self)
        x1, xp = self._validate(x1, reset=False, name="x1")
        h1, d1 = self._forward_backward(x1)
        if x2 is None:
            h2, d2 = h1, d1
        else:
            x2, _ = self._validate(x2, reset=False, name="x2")
            h2, d2 = self._forward_backward(x2)
        with np.errstate(over="ignore", invalid="ignore"):
            return _finite(self._structured_kernel(h1, d1, h2, d2), self, "x1/x2")

    def _structured_kernel(self, h1, d1, h2, d2):
        w2 = float(self.w_std) ** 2
        b2 = float(self.b_std) ** 2 if self.has_bias_ else 0.0
        theta = (w2 / self.width) * (h1[-1] @ h2[-1].T) + b2
        for a, b, da, db in zip(h1[:-1], h2[:-1], d1, d2):
            signal = da @ db.T
            theta = theta + signal * ((w2 / a.shape[1]) * (a @ b.T) + b2)
        return theta

    def exact_kernel(self, x1, x2=None):
        """The infinite-width NTK, ``kernels.FullyConnected(..., parameterization="ntk").ntk``."""
        check_is_fitted(self)
        return FullyConnected(depth=self.depth, activation=self.activation, w_std=self.w_std,
                              b_std=self.b_std, parameterization="ntk").ntk(x1, x2)
