"""scikit-learn estimators that train a network in the lazy regime, or its linearization.

The fitted network is `Lazy(net, scale)` (the paper's centred model α(h(w) − h(w₀)), zero at initialisation),
or `Linearized(Lazy(net, scale))` with `linearized=True`, trained by `nets.train` on loss/α² so that `lr` and
`epochs` mean the same training time for every `scale`. Inputs are standardised (per-feature mean and standard
deviation of the training set) and regression targets too, so one learning rate suits most data sets.
"""
import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from kernels import check_choice, check_scalar, n_samples, naming_inputs

from nets.lazy import Lazy, Linearized
from nets.models import MLP, TwoLayer
from nets.step_size import kernel_step, loss_curvature, ntk_lambda_max
from nets.training import train

ARCHS = ("mlp", "two_layer")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _host(a):
    """A torch tensor (even one that requires grad, or on a GPU) as a NumPy array; anything else unchanged."""
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a


def _fit_arrays(X, y):
    """Host X and y, with their sample counts compared (naming both) before scikit-learn's validation."""
    X, y = _host(X), _host(y)
    for a, name in ((X, "X"), (y, "y")):   # y=None: scikit-learn's "requires y to be passed" names it
        if (a is None and name == "X") or isinstance(a, (str, bytes, numbers.Number, np.generic)):
            raise TypeError(f"{name} must be an array-like with samples along axis 0, got {type(a).__name__} {a!r}")
    n_x, n_y = (n_samples(a) for a in (X, y))
    if n_x is not None and n_y is not None and n_x != n_y:
        raise ValueError(f"X and y must have the same number of samples, got {n_x} and {n_y}")
    return X, y


class _LazyNet(BaseEstimator):
    """Shared parameters and fitting logic (see `LazyNetRegressor`)."""

    def __init__(self, scale=1.0, arch="mlp", width=256, depth=1, activation="relu", linearized=False,
                 optimizer="gd", lr=1.0, momentum=0.0, batch_size=None, epochs=200, lr_schedule="constant",
                 lr_decay=0.0, weight_decay=0.0, dtype="float64", device="cpu", random_state=None, verbose=False,
                 lr_factor=0.5):
        self.scale = scale
        self.arch = arch
        self.width = width
        self.depth = depth
        self.activation = activation
        self.linearized = linearized
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.weight_decay = weight_decay
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.lr_factor = lr_factor

    def _network(self, d_in, d_out):
        check_choice(self.arch, "arch", ARCHS)
        check_scalar(self.width, "width", int, min_val=1)
        check_scalar(self.depth, "depth", int, min_val=1)
        if self.arch == "mlp":
            return MLP(d_in, [int(self.width)] * int(self.depth), d_out, activation=self.activation)
        # init_scale = sqrt(width) makes the NTK of (1/m) Σ b_j σ(a_j·x) of order 1 (each unit's gradient is
        # O(τ/m) and there are m of them).
        return TwoLayer(d_in, int(self.width), activation=self.activation, symmetric=self.width % 2 == 0,
                        init_scale=math.sqrt(self.width))

    def _fit_network(self, X, targets, d_out, loss):
        check_choice(self.dtype, "dtype", DTYPES)
        seed = int(check_random_state(self.random_state).randint(0, 2 ** 31 - 1))
        self.x_mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.x_scale_ = np.where(scale > 0, scale, 1.0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._network(X.shape[1], d_out).to(dtype=DTYPES[self.dtype], device=self.device)
        module = Lazy(net, self.scale)
        if self.linearized:
            module = Linearized(module)
        inputs = self._inputs(X)
        lr = self.lr
        if isinstance(lr, str):
            check_choice(lr, "lr", ("kernel",))
            batch = len(X) if self.batch_size is None else min(int(self.batch_size), len(X))
            # the α² of the lazy NTK and the loss's 1/α² cancel: the network's own λ_max sets the limit
            self.step_ = kernel_step(ntk_lambda_max(net, inputs[:batch], seed=seed), batch, float(self.momentum),
                                     loss_curvature(loss), lr_factor=self.lr_factor)
            lr = self.step_.lr
        self.history_ = train(module, inputs, targets, loss=loss, optimizer=self.optimizer, lr=lr,
                              momentum=self.momentum, batch_size=self.batch_size, epochs=self.epochs,
                              lr_schedule=self.lr_schedule, lr_decay=self.lr_decay, weight_decay=self.weight_decay,
                              seed=seed, quiet=not self.verbose)
        self.module_ = module.eval()
        return self

    def _inputs(self, X):
        return torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=DTYPES[self.dtype], device=self.device)

    def _outputs(self, X):
        check_is_fitted(self, "module_")
        X = _host(X)
        if X is None or isinstance(X, (str, bytes, numbers.Number, np.generic)):
            raise TypeError(f"X must be a 2-D array-like (n_samples, n_features), got {type(X).__name__} {X!r}")
        with naming_inputs(X):
            X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            return self.module_(self._inputs(X)).double().cpu().numpy()


class LazyNetRegressor(RegressorMixin, _LazyNet):
    """Least-squares regression with a lazily trained (or linearized) network.

    Parameters
    ----------
    scale : the paper's α > 0. Large α → lazy (kernel-like) training; α = 1 with the centred model is the
        usual training of a network with zero output at initialisation.
    arch : 'mlp' (`MLP` in the NTK parameterization, `depth` hidden layers of `width`) or 'two_layer'
        (`TwoLayer`, `width` units, symmetrised initialisation when `width` is even).
    activation : 'relu', 'erf' or 'tanh'.  linearized : train the exact linearization instead.
    optimizer, lr, momentum, batch_size, epochs, lr_schedule, lr_decay, weight_decay : passed to `nets.train`
        (loss 'mse', i.e. (1/2n)·Σ‖f(x_i) − y_i‖² on standardised targets, divided by α²). lr='kernel':
        `lr_factor` (default 0.5) times the stability limit 2(1 + momentum)·B/(c·λ_max) of the network's NTK at
        init on the first batch of B inputs (`nets.step_size`); the step used is in `step_`.
    dtype : 'float64' (default) or 'float32'.  device : torch device.  random_state : seeds the initialisation
        and the minibatch order.  verbose : show a progress bar.

    Attributes: `module_` (the trained torch module), `history_` (`nets.History`), `step_` (with lr='kernel':
    the `nets.KernelStep` — lr, λ_max, limit, ratio), `n_features_in_`,
    `single_output_` (y was 1-D, so predictions are too), `x_mean_`, `x_scale_`, `y_mean_`, `y_scale_`.
    """

    def fit(self, X, y):
        X, y = _fit_arrays(X, y)
        with naming_inputs(X):
            X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        if self.arch == "two_layer" and y.ndim == 2:
            if y.shape[1] > 1:
                raise ValueError(f"y has {y.shape[1]} columns, but arch='two_layer' has one output; pass 1-D y "
                                 "or use arch='mlp'")
            y = column_or_1d(y, warn=True)
        self.single_output_ = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.y_mean_ = y2.mean(axis=0)
        spread = y2.std(axis=0)
        self.y_scale_ = np.where(spread > 0, spread, 1.0)
        targets = torch.as_tensor((y2 - self.y_mean_) / self.y_scale_, dtype=DTYPES.get(self.dtype, torch.float64))
        return self._fit_network(X, targets, y2.shape[1], "mse")

    def predict(self, X):
        """Network outputs mapped back to the target scale."""
        out = self._outputs(X) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self.single_output_ else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = self.arch == "mlp"
        return tags


class LazyNetClassifier(ClassifierMixin, _LazyNet):
    """Classification with a lazily trained (or linearized) network: one output per class, trained on the
    softmax cross-entropy (divided by α²). Parameters as for `LazyNetRegressor` ('two_layer' is not available:
    it has a single output).

    Attributes: `classes_`, `module_`, `history_`, `n_features_in_`.
    """

    def fit(self, X, y):
        X, y = _fit_arrays(X, y)
        with naming_inputs(X):
            X, y = validate_data(self, X, y, dtype=np.float64)
        with naming_inputs(np.zeros((1, 1))):
            check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y must contain at least 2 classes, got 1 class ({self.classes_[0]!r})")
        if self.arch == "two_layer":
            raise ValueError("arch='two_layer' has one output and cannot classify; use arch='mlp'")
        return self._fit_network(X, torch.as_tensor(labels), len(self.classes_), "cross_entropy")

    def predict_proba(self, X):
        """Softmax of the network outputs, columns in the order of `classes_`."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        outputs = self._outputs(X)
        return self.classes_[np.argmax(outputs, axis=1)]
