"""Fuzz cases for the public entry points of ``nets``: models, the lazy wrappers, training, estimators and
diagnostics."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

import nets
from nets import diagnostics
from nets.training import random_crop_flip
from tests.fuzz.harness import registry
from tests.fuzz.inputs import ESTIMATOR_INVALID, INF, NAN, NETS_INVALID, NOT_NUMBERS, array, labels, targets

ENTRIES, entry = registry()


def _forward(model, x):
    with torch.no_grad():
        return model(x)


@entry("TwoLayer")
def two_layer(case):
    d = case.arg("d", (1, 3), reject=(0, True, 2.0))
    m = case.arg("m", (2, 4), bad=(3,), reject=(0, True, -1))
    init_scale = case.arg("init_scale", (0.5, 1.0), bad=(1e30,), reject=(0.0, True) + NOT_NUMBERS)
    symmetric = case.draw(st.booleans())
    activation = case.arg("activation", ("relu", "tanh", "erf"), reject=("bad", None))
    return lambda: _forward(nets.TwoLayer(d, m, activation=activation, init_scale=init_scale, symmetric=symmetric),
                            torch.ones(2, d if isinstance(d, int) else 1))


@entry("MLP")
def mlp(case):
    d_in = case.arg("d_in", (1, 3), reject=(0, True))
    widths = case.arg("widths", (4, [4, 3], (2,)), reject=(True, [], [0], [True], "4", None, 2.5))
    w_std = case.arg("w_std", (1.0, 2 ** 0.5), reject=(NAN, -1.0, True, INF))
    b_std = case.arg("b_std", (0.0, None, 0.1), reject=(NAN, -1.0, True))
    parameterization = case.arg("parameterization", ("ntk", "standard"), reject=("xavier",))
    activation = case.arg("activation", ("relu", "erf", "tanh"), reject=("elu",))
    return lambda: _forward(nets.MLP(d_in, widths, activation=activation, w_std=w_std, b_std=b_std,
                                     parameterization=parameterization), torch.ones(2, d_in))


@entry("CNN")
def cnn(case):
    channels = case.arg("channels", (2, 3), reject=(0, True))
    depth = case.arg("depth", (1, 2), reject=(0, True, -1))
    filter_size = case.arg("filter_size", (1, 3), reject=(2, 0, True))
    readout = case.arg("readout", ("gap",), bad=("flatten",), reject=("max",))
    return lambda: _forward(nets.CNN(1, channels=channels, depth=depth, filter_size=filter_size, readout=readout),
                            torch.ones(1, 1, 4, 4))


@entry("VGG")
def vgg(case):
    depth = case.arg("depth", (11,), reject=(12, True, "11"))
    width_factor = case.arg("width_factor", (0.125,), reject=(0, -1, True, NAN))
    classes = case.arg("num_classes", (2, 10), reject=(0, True))
    return lambda: _forward(nets.VGG(depth, width_factor=width_factor, num_classes=classes), torch.ones(1, 3, 32, 32))


@entry("ResNet")
def resnet(case):
    depth = case.arg("depth", (18,), reject=(19, True))
    width_factor = case.arg("width_factor", (0.125,), reject=(0, True, NAN))
    in_channels = case.arg("in_channels", (1, 3), reject=(0, True))
    c = in_channels if isinstance(in_channels, int) and not isinstance(in_channels, bool) and in_channels > 0 else 1
    return lambda: _forward(nets.ResNet(depth, width_factor=width_factor, in_channels=in_channels),
                            torch.ones(1, c, 16, 16))


@entry("Lazy")
def lazy(case):
    model = case.arg("model", (nets.MLP(2, [3]),), reject=(None, "net", 3))
    scale = case.arg("scale", (1.0, 100.0), bad=(1e200,), reject=(0.0, -1.0) + NOT_NUMBERS)
    return lambda: _forward(nets.Lazy(model, scale), torch.ones(2, 2))


@entry("Linearized")
def linearized(case):
    model = case.arg("model", (nets.MLP(2, [3]), nets.Lazy(nets.MLP(2, [3]), 10.0)), reject=(None, 3))
    return lambda: _forward(nets.Linearized(model), torch.ones(2, 2))


@entry("random_crop_flip")
def crop(case):
    padding = case.arg("padding", (0, 1, 4), reject=(-1, True, 1.5, None))
    return lambda: random_crop_flip(padding)(torch.ones(2, 1, 4, 4), torch.Generator().manual_seed(0))


@entry("train")
def train(case):
    n, d = case.draw(st.integers(1, 6)), case.draw(st.integers(1, 3))
    X = array(case, "X", (n, d), invalid=NETS_INVALID)
    loss = case.arg("loss", ("mse", "cross_entropy"), reject=("l2", None))
    y = labels(case, "y", n) if loss == "cross_entropy" else targets(case, "y", n)
    if loss == "cross_entropy" and isinstance(y, np.ndarray) and y.dtype.kind == "U":
        y = np.arange(n) % 2     # train takes integer labels (the estimators take any labels)
    optimizer = case.arg("optimizer", ("gd", "sgd"), reject=("adam",))
    batch_size = (case.arg("batch_size", (1, n), reject=(0, n + 1, True, 1.5)) if optimizer == "sgd" else None)
    kwargs = dict(
        lr=case.arg("lr", (0.01, 0.5), bad=(1e30,), reject=(0.0, -1.0) + NOT_NUMBERS),
        momentum=case.arg("momentum", (0.0, 0.9), reject=(1.0, -0.1, NAN, True)),
        steps=case.arg("steps", (1, 3), reject=(0, -1, True, 2.5, "3")),
        seed=case.arg("seed", (0, 7), reject=(-1, True, 1.5, "0")),
        callbacks=case.arg("callbacks", ((), lambda step, m, h: None), reject=(3, "cb", [3])),
        device=case.arg("device", (None, "cpu"), bad=("cuda", "mps"), reject=("gpu0", 3)),
        weight_decay=case.arg("weight_decay", (0.0, 1e-3), reject=(-1.0, NAN, True)),
    )
    model = nets.MLP(d, [4], d_out=2 if loss == "cross_entropy" else (y.shape[1] if getattr(y, "ndim", 1) == 2 else 1))
    return lambda: nets.train(model, X, y, loss=loss, optimizer=optimizer, batch_size=batch_size, quiet=True, **kwargs)


def _lazynet(case, classifier):
    params = dict(
        scale=case.arg("scale", (1.0, 10.0), reject=(0.0, -1.0, True, NAN)),
        arch=case.arg("arch", ("mlp",) + (() if classifier else ("two_layer",)), reject=("cnn",)),
        width=case.arg("width", (4,), reject=(0, True, 2.5)),
        depth=case.arg("depth", (1,), reject=(0, True)),
        lr=case.arg("lr", (0.1,), reject=(0.0, NAN, True)),
        epochs=case.arg("epochs", (2,), reject=(0, True, -1)),
        dtype=case.arg("dtype", ("float64", "float32"), reject=("float16", None)),
        random_state=0,
    )
    return (nets.LazyNetClassifier if classifier else nets.LazyNetRegressor)(**params)


def _lazynet_method(classifier, method):
    def build(case):
        est = _lazynet(case, classifier)
        n, d = case.draw(st.integers(2, 6)), case.draw(st.integers(1, 3))
        X = array(case, "X", (n, d), invalid=ESTIMATOR_INVALID)
        y = labels(case, "y", n) if classifier else targets(case, "y", n)
        X_new = array(case, "X", (2, d), invalid=ESTIMATOR_INVALID) if method != "fit" else None

        def call():
            fitted = est.fit(X, y)
            out = getattr(fitted, method)(X_new) if method != "fit" else fitted.history_
            return None if classifier and method == "predict" else out
        return call
    return build


for _name, _classifier in (("LazyNetRegressor", False), ("LazyNetClassifier", True)):
    for _m in ("fit", "predict") + (("predict_proba",) if _classifier else ()):
        entry(f"{_name}.{_m}")(_lazynet_method(_classifier, _m))


def _trained_lazy(d, scale=10.0):
    torch.manual_seed(0)
    module = nets.Lazy(nets.MLP(d, [4]), scale)
    nets.train(module, torch.randn(4, d, dtype=torch.float64), torch.randn(4, dtype=torch.float64), steps=2,
               quiet=True)
    return module


@entry("diagnostics.relative_weight_change")
def weight_change(case):
    module = case.arg("module", (_trained_lazy(2),), reject=(nets.MLP(2, [3]), None, 3))
    return lambda: diagnostics.relative_weight_change(module)


@entry("diagnostics.ntk_drift")
def drift(case):
    d = 2
    probe = array(case, "probe", (3, d), invalid=NETS_INVALID)
    output = case.arg("output", ("mean", "full"), reject=("x",))
    return lambda: diagnostics.ntk_drift(_trained_lazy(d), probe, output=output)


@entry("diagnostics.unchanged_activation_fraction")
def unchanged(case):
    X = array(case, "X", (3, 2), invalid=NETS_INVALID)
    return lambda: diagnostics.unchanged_activation_fraction(_trained_lazy(2), X)


@entry("diagnostics.parameter_distance")
def distance(case):
    lazy_module = _trained_lazy(2)
    linearized = case.arg("linearized", (nets.Linearized(nets.Lazy(nets.MLP(2, [4]), 10.0)),),
                          reject=(nets.MLP(2, [4]), None))
    return lambda: diagnostics.parameter_distance(lazy_module, linearized)


@entry("diagnostics.function_distance")
def function_distance(case):
    f = nets.MLP(2, [3])
    g = case.arg("g", (nets.MLP(2, [3]).double(), nets.MLP(2, [3])), reject=(None, 3), aliases=("f",))
    X = array(case, "X", (3, 2), invalid=NETS_INVALID)
    return lambda: diagnostics.function_distance(f, g, X)


@entry("diagnostics.scale_criterion")
def criterion(case):
    model = nets.MLP(2, [3]).double()
    X = array(case, "X", (4, 2), invalid=NETS_INVALID)
    y = targets(case, "y", 4)
    iters = case.arg("iters", (1, 5), reject=(0, True, 1.5))
    threshold = case.arg("threshold", (0.01, 1.0), reject=(0.0, NAN, True))
    return lambda: diagnostics.scale_criterion(model, X, y, iters=iters, threshold=threshold)
