"""Fuzz cases for the public entry points of ``kernels``: each builder draws the arguments of one call."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import kernels
from kernels import validation
from kernels.analytic import duals
from kernels.solve import ridge as solvers
from kernels.features import ArcCosineFeatures, NTKFeatures, RandomFourierFeatures
from tests.fuzz.harness import registry
from tests.fuzz.inputs import ESTIMATOR_INVALID, INF, NAN, NOT_NUMBERS, array, labels, shape2, targets

ENTRIES, entry = registry()


# ------------------------------------------------------------------------------------------ analytic kernels
ACTIVATION_GOOD = ("relu", "erf", "abs", "leaky_relu", "identity", "step")
FC_DEPTHS = (0, 1, 3, 20)


def _fc(case, **fixed):
    params = dict(
        depth=case.arg("depth", FC_DEPTHS, bad=(100,), reject=(-1, 2.5, True, None, "3")),
        activation=case.arg("activation", ACTIVATION_GOOD, bad=("tanh",), reject=("rellu", 3, None)),
        w_std=case.arg("w_std", (1.0, 2 ** 0.5, 3.0), bad=(1e30, 1e100), reject=(0.0, -1.0, 1e200) + NOT_NUMBERS),
        b_std=case.arg("b_std", (0.0, 0.1, None), bad=(1e30,), reject=(-1.0, 1e200, True, NAN, INF, "0")),
        negative_slope=case.arg("negative_slope", (0.01, 0.2), bad=(1e100, -5.0), reject=(1e308, True, NAN, "a")),
        dtype=case.arg("dtype", (None, "float64", "float32"), bad=("float16",), reject=("int8", 3)),
        n_jobs=case.arg("n_jobs", (None, 1, 2), reject=(0, True, 1.5)),
        block_size=case.arg("block_size", (None, 2, 64), reject=(0, True, -3)),
    )
    params.update(fixed)
    return params


@entry("FullyConnected")
def fc_init(case):
    params = _fc(case)
    params["parameterization"] = case.arg("parameterization", ("ntk",), bad=("standard",), reject=("NTK", None))
    params["width"] = case.arg("width", (None, 16), reject=(0, True, 2.0))
    return lambda: kernels.FullyConnected(**params).get_params()


def _fc_method(method):
    def build(case):
        k = kernels.FullyConnected(**_fc(case))
        n, d = shape2(case)
        x1 = array(case, "x1", (n, d))
        if case.draw(st.booleans()):
            x2 = array(case, "x2", (case.draw(st.integers(1, 4)), case.arg("x2_columns", (d,), bad=(d + 1,),
                                                                             aliases=("x2",))))
            return lambda: getattr(k, method)(x1, x2)
        return lambda: getattr(k, method)(x1)
    return build


for _m in ("nngp", "ntk", "kernels"):
    entry(f"FullyConnected.{_m}")(_fc_method(_m))


@entry("FullyConnected.set_params")
def fc_set_params(case):
    k = kernels.FullyConnected()
    name = case.draw(st.sampled_from(("depth", "w_std", "b_std", "activation", "n_jobs", "bogus")))
    value = case.arg(name, (1,) if name in ("depth", "n_jobs") else (0.5,) if name != "activation" else ("erf",),
                     reject=(True, NAN, -1) if name != "activation" else ("nope",))
    case.names.append("unknown parameters")
    return lambda: k.set_params(**{name: value}).get_params()


def _conv(case):
    return dict(
        depth=case.arg("depth", (0, 1, 2), reject=(-1, True)),
        activation=case.arg("activation", ("relu", "erf"), reject=("x",)),
        w_std=case.arg("w_std", (1.0, 2 ** 0.5), reject=(0.0, 1e200, True, NAN)),
        filter_size=case.arg("filter_size", (1, 3), reject=(2, 0, True)),
        readout=case.arg("readout", ("gap", "flatten"), reject=("mean", None)),
        memory_budget=case.arg("memory_budget", (2 ** 20,), reject=(0, True, 1.5)),
        dtype=case.arg("dtype", (None, "float32"), reject=("float16x",)),
    )


@entry("Convolutional")
def conv_init(case):
    params = _conv(case)
    return lambda: kernels.Convolutional(**params).get_params()


def _conv_method(method):
    def build(case):
        k = kernels.Convolutional(**_conv(case))
        n = case.draw(st.integers(1, 3))
        side = case.draw(st.integers(1, 4))
        x1 = array(case, "x1", (n, case.draw(st.integers(1, 2)), side, side))
        return lambda: getattr(k, method)(x1)
    return build


for _m in ("nngp", "ntk"):
    entry(f"Convolutional.{_m}")(_conv_method(_m))


@entry("duals.get_dual")
def get_dual(case):
    activation = case.arg("activation", duals.ACTIVATIONS, reject=("relu6", None, 1))
    slope = case.arg("negative_slope", (0.01, -0.5), reject=(NAN, True, 1e300, "x"))
    k12 = np.array([0.3, -0.2, 1.0])

    def call():
        d = duals.get_dual(activation, slope)
        return d.nngp(k12.copy(), np.ones(3), np.ones(3)), d.ntk(k12.copy(), np.ones(3), np.ones(3))
    return call


# ------------------------------------------------------------------------------------------ classic kernels
GAMMAS_GOOD, GAMMAS_BAD = (None, 0.1, 2.0), (1e300, 1e-300)
GAMMAS_REJECT = (0.0, -1.0, INF, NAN, True, "1")


@entry("RBF")
def rbf(case):
    gamma = case.arg("gamma", GAMMAS_GOOD, bad=GAMMAS_BAD, reject=GAMMAS_REJECT)
    n, d = shape2(case)
    x1 = array(case, "x1", (n, d))
    return lambda: kernels.RBF(gamma)(x1)


@entry("Laplace")
def laplace(case):
    gamma = case.arg("gamma", GAMMAS_GOOD, bad=GAMMAS_BAD, reject=GAMMAS_REJECT)
    n, d = shape2(case)
    x1, x2 = array(case, "x1", (n, d)), array(case, "x2", (2, d))
    return lambda: kernels.Laplace(gamma)(x1, x2)


@entry("Polynomial")
def polynomial(case):
    degree = case.arg("degree", (1, 2, 3), bad=(60,), reject=(0, 1.5, True))
    gamma = case.arg("gamma", GAMMAS_GOOD, bad=GAMMAS_BAD, reject=GAMMAS_REJECT)
    coef0 = case.arg("coef0", (0.0, 1.0, -1.0), bad=(1e200,), reject=(NAN, INF, True, "1"))
    n, d = shape2(case)
    x1 = array(case, "x1", (n, d))
    return lambda: kernels.Polynomial(degree, gamma, coef0)(x1)


@entry("classic.resolve_kernel")
def resolve_kernel(case):
    from kernels.classic import resolve_kernel
    kernel = case.arg("kernel", ("rbf", "laplace", "polynomial", kernels.RBF()), reject=("gauss", 3, None))
    return lambda: resolve_kernel(kernel)(np.eye(2))


# ------------------------------------------------------------------------------------------ random features
def _features(case, cls):
    n_features = case.arg("n_features", (4, 16), reject=(0, -2, True, 2.5) + ((3,) if cls is RandomFourierFeatures
                                                                             else ()),
                          aliases=("width",) if cls is NTKFeatures else ())
    if cls is RandomFourierFeatures:
        return cls(n_features, gamma=case.arg("gamma", GAMMAS_GOOD, reject=GAMMAS_REJECT), random_state=0)
    if cls is ArcCosineFeatures:
        return cls(n_features, random_state=0)
    return cls(depth=case.arg("depth", (1, 2), reject=(0, True)), width=n_features,
               activation=case.arg("activation", ("relu", "erf"), reject=("tanh", None)),
               w_std=case.arg("w_std", (1.0, 2.0), bad=(1e100,), reject=(NAN, -1.0, True, 1e200)),
               b_std=case.arg("b_std", (0.0, 0.5, None), reject=(NAN, -1.0, True)), random_state=0)


def _features_method(cls, method):
    def build(case):
        features = _features(case, cls)
        n, d = shape2(case)
        X = array(case, "X", (n, d), aliases=("x1",))

        def call():
            if method == "fit":
                return features.fit(X).transform(np.ones((1, d)))
            return getattr(features.fit(np.ones((2, d))), method)(X)
        return call
    return build


for _cls in (RandomFourierFeatures, ArcCosineFeatures, NTKFeatures):
    for _m in ("fit", "transform", "kernel", "exact_kernel"):
        entry(f"{_cls.__name__}.{_m}")(_features_method(_cls, _m))


# ------------------------------------------------------------------------------------------ estimators
def _estimator(case, name):
    common = dict(alpha=case.arg("alpha", (0.0, 0.1, 1.0), reject=(-1.0, NAN, INF, True, "0")))
    if not name.startswith("RandomFeatures"):
        common["t"] = case.arg("t", (None, 1.0, INF), reject=(-1.0, NAN, True))
    if name.startswith("NTK"):
        common.update(depth=case.arg("depth", (1, 2), reject=(-1, True)),
                      activation=case.arg("activation", ("relu", "erf"), reject=("bad",)),
                      w_std=case.arg("w_std", (1.0,), reject=(True, NAN, 1e200, 0.0)),
                      kernel=case.arg("kernel", ("ntk", "nngp"), reject=("rbf",)))
    elif name.startswith("Kernel"):
        common.update(kernel=case.arg("kernel", ("rbf", "laplace", "polynomial"), reject=("gauss", 3)))
    else:
        common.update(features=case.arg("features", ("fourier", "arccos", "ntk"), reject=("x", 3)),
                      n_features=case.arg("n_features", (8,), reject=(0, True)), random_state=0)
    common["device"] = case.arg("device", ("cpu", "auto"), reject=("gpu", True))
    return getattr(kernels, name)(**common)


def _estimator_method(name, method):
    classifier = name.endswith("Classifier")

    def build(case):
        est = _estimator(case, name)
        n, d = case.draw(st.integers(2, 8)), case.draw(st.integers(1, 3))
        X_fit = array(case, "X", (n, d), invalid=ESTIMATOR_INVALID)
        y = labels(case, "y", n) if classifier else targets(case, "y", n)
        X_new = array(case, "X", (3, d), invalid=ESTIMATOR_INVALID) if method != "fit" else None

        def call():
            fitted = est.fit(X_fit, y)
            out = getattr(fitted, method)(X_new) if method != "fit" else fitted.predict(X_fit)
            return np.asarray(out) if not classifier or method != "predict" else None
        return call
    return build


for _name in ("NTKRegressor", "NTKClassifier", "KernelRegressor", "KernelClassifier", "RandomFeaturesRegressor",
              "RandomFeaturesClassifier"):
    for _m in ("fit", "predict") + (("decision_function",) if _name.endswith("Classifier") else ()):
        entry(f"{_name}.{_m}")(_estimator_method(_name, _m))


# ------------------------------------------------------------------------------------------ solvers
def _gram(case, n):
    rng = np.random.default_rng(case.draw(st.integers(0, 2 ** 16)))
    A = rng.standard_normal((n, n))
    good = [A @ A.T, np.eye(n), np.zeros((n, n)), np.ones((n, n)), -np.eye(n), (A @ A.T) * 1e-300]
    bad = [(A @ A.T) * 1e150, A @ A.T + 1e-12 * A]
    reject = [np.full((n, n), np.nan), np.ones((n, n + 1)), "K", np.ones((n, n), dtype=object)]
    if n > 1:
        reject.append(np.triu(A + 10.0))   # asymmetric
    return case.arg("K", good, bad=bad, reject=reject)


@entry("solvers.krr_solve")
def krr_solve(case):
    n = case.draw(st.integers(1, 6))
    K, y = _gram(case, n), targets(case, "y", n)
    alpha = case.arg("alpha", (0.0, 1e-3, 1.0), bad=(1e300,), reject=(-1.0, NAN, INF, True))
    return lambda: solvers.krr_solve(K, y, alpha)


def _eigen(method):
    def build(case):
        n = case.draw(st.integers(1, 6))
        K, y = _gram(case, n), targets(case, "y", n) if method != "spectral_filter" else None
        if method in ("dual_coefs", "loo_errors"):
            alphas = case.arg("alphas", ([0.0, 0.1], np.array([1.0]), (0.0,)),
                              reject=([], 0.1, [NAN], [-1.0], "a", [True], None))
        else:
            alpha = case.arg("alpha", (0.0, 0.5), reject=(-1.0, NAN, True))
        t = case.arg("t", (None, 0.5, INF), reject=(-1.0, NAN, True)) if method != "loo_errors" else None

        def call():
            path = solvers.EigenPath(K)
            if method == "dual_coef":
                return path.dual_coef(y, alpha, t)
            if method == "dual_coefs":
                return path.dual_coefs(y, alphas, t)
            if method == "loo_errors":
                return path.loo_errors(y, alphas)
            return path.spectral_filter(alpha, t)
        return call
    return build


for _m in ("dual_coef", "dual_coefs", "loo_errors", "spectral_filter"):
    entry(f"EigenPath.{_m}")(_eigen(_m))


@entry("solvers.nystrom_krr")
def nystrom(case):
    n, d = case.draw(st.integers(2, 8)), case.draw(st.integers(1, 3))
    X = array(case, "X", (n, d))
    y = targets(case, "y", n)
    kernel = case.arg("kernel", ("rbf", kernels.RBF(0.5), kernels.FullyConnected(depth=1).ntk),
                      reject=("gauss", 3, None))
    alpha = case.arg("alpha", (1e-3, 1.0), reject=(-1.0, NAN, True))
    m = case.arg("n_centers", (1, 2), reject=(0, n + 1, True, 1.5))
    tol = case.arg("tol", (1e-10, 1e-3, 0.0), reject=(-1.0, NAN, True))
    max_iter = case.arg("max_iter", (1, 50), reject=(0, -1, True, 2.5))
    block_size = case.arg("block_size", (1, 4096), reject=(0, True, None))

    def call():
        model = solvers.nystrom_krr(kernel, X, y, alpha, m, tol=tol, max_iter=max_iter, block_size=block_size,
                                    random_state=0)
        return model.predict(np.asarray(X, dtype=np.float64)[:2] if isinstance(X, np.ndarray) else np.ones((2, d)))
    return call


# ------------------------------------------------------------------------------------------ empirical NTK
@entry("empirical_ntk")
def empirical(case):
    import torch
    from nets.models import MLP
    d = case.draw(st.integers(1, 3))
    torch.manual_seed(0)
    model = MLP(d, [4], d_out=case.draw(st.integers(1, 2)))
    x1 = array(case, "x1", (case.draw(st.integers(1, 4)), d))
    output = case.arg("output", ("mean", "full"), reject=("trace", None))
    method = case.arg("method", ("auto", "jacobian", "ntvp", "structured"), reject=("fast", 1))
    block_size = case.arg("block_size", (None, 1, 3), reject=(0, True, 1.5))
    return lambda: kernels.empirical_ntk(model, x1, output=output, method=method, block_size=block_size)


# ------------------------------------------------------------------------------------------ validation helpers
@entry("validation.check_scalar")
def check_scalar(case):
    value = case.arg("x", (1, 2.5, np.float32(0.5)), reject=(True, NAN, "1", None, [1]), aliases=("depth",))
    return lambda: validation.check_scalar(value, "depth", float, min_val=0)


@entry("validation.check_array")
def check_array(case):
    n, d = shape2(case)
    x = array(case, "x", (n, d))
    return lambda: validation.check_array(x, "x", ndim=2)


@entry("backend.resolve_device")
def resolve_device(case):
    device = case.arg("device", ("cpu", "auto", "CPU"), bad=("cuda",), reject=("gpu", None, 0, True))
    return lambda: kernels.backend.resolve_device(device)


@entry("backend.resolve_dtype")
def resolve_dtype(case):
    dtype = case.arg("dtype", ("float32", "float64", np.float64, None), reject=("float16", "int32", 3, "x"))
    return lambda: kernels.backend.resolve_dtype(dtype, "cpu")


@entry("NystromKRR.predict")
def nystrom_predict(case):
    rng = np.random.default_rng(0)
    model = solvers.nystrom_krr("rbf", rng.standard_normal((6, 2)), rng.standard_normal(6), 0.1, 3)
    x = array(case, "x", (case.draw(st.integers(1, 4)), 2), aliases=("x1",))
    return lambda: model.predict(x)


@entry("solvers.conjugate_gradient")
def conjugate_gradient(case):
    import array_api_compat.numpy as xp
    n = case.draw(st.integers(1, 5))
    A = np.eye(n) * 2.0
    B = array(case, "B", (n, 1), extreme=[], invalid=[])
    tol = case.arg("tol", (1e-8, 0.0), reject=(-1.0, NAN, True))
    max_iter = case.arg("max_iter", (1, 20), reject=(0, True, 1.5))
    return lambda: solvers.conjugate_gradient(lambda v: A @ v, np.asarray(B, dtype=float), tol=tol,
                                              max_iter=max_iter, xp=xp)


@entry("validation.check_choice")
def check_choice(case):
    value = case.arg("activation", ("relu", "erf"), reject=("rellu", True, None, 1, ["relu"]))
    return lambda: validation.check_choice(value, "activation", ("relu", "erf"))


@entry("validation.check_finite")
def check_finite(case):
    n, d = shape2(case)
    x = array(case, "x", (n, d), extreme=[], invalid=[s for s in __import__("tests.fuzz.inputs", fromlist=["x"]).INVALID
                                                   if s[0] in ("nan", "inf")])
    return lambda: validation.check_finite(validation.check_array(x, "x", ensure_all_finite=False), "x")


@entry("backend.to_torch")
def to_torch(case):
    n, d = shape2(case)
    x = array(case, "a", (n, d), invalid=[])
    return lambda: kernels.backend.to_torch(validation.check_array(x, "a", dtype="float64"))


@entry("backend.to_numpy")
def to_numpy(case):
    import torch
    n, d = shape2(case)
    x = array(case, "a", (n, d), invalid=[])
    return lambda: kernels.to_numpy(torch.as_tensor(validation.check_array(x, "a", dtype="float64")))
