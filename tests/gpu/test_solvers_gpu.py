"""GPU (CuPy) paths of the classic kernels, solvers, random features and estimators against the NumPy ones."""
import warnings

import numpy as np
import pytest

from kernels import (RBF, ArcCosineFeatures, KernelClassifier, KernelRegressor, Laplace, NTKFeatures,
                     NTKRegressor, Polynomial, RandomFeaturesRegressor, RandomFourierFeatures)
from kernels.backend import get_namespace as backend_namespace
from kernels.solve.ridge import EigenPath, GramWarning, krr_solve, nystrom_krr

cupy = pytest.importorskip("cupy")
torch = pytest.importorskip("torch")


def _rel(a, b):
    a, b = cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    return X, rng.standard_normal((200, 3))


@pytest.mark.parametrize("kernel", [RBF(), Laplace(), Polynomial()], ids=repr)
def test_classic_kernels_on_gpu_equal_cpu(kernel, data):
    X, _ = data
    assert _rel(kernel(cupy.asarray(X), cupy.asarray(X[:17])), kernel(X, X[:17])) < 1e-12


def test_cholesky_eigen_and_nystrom_on_gpu_equal_cpu(data):
    # float64 on both devices: cuSOLVER and LAPACK are both backward stable, cond(K + 0.1 I) ≈ 1e3 → 1e-10
    X, Y = data
    K = RBF()(X)
    Kg, Yg = cupy.asarray(K), cupy.asarray(Y)
    coef = krr_solve(Kg, Yg, 0.1)
    assert isinstance(coef, cupy.ndarray) and _rel(coef, krr_solve(K, Y, 0.1)) < 1e-10
    assert _rel(EigenPath(Kg).dual_coef(Yg, alpha=0.1, t=40.0), EigenPath(K).dual_coef(Y, 0.1, 40.0)) < 1e-10
    assert _rel(EigenPath(Kg).loo_errors(Yg, [0.1, 1.0]), EigenPath(K).loo_errors(Y, [0.1, 1.0])) < 1e-10
    fit = nystrom_krr(RBF(), cupy.asarray(X), Yg, 0.1, 60, random_state=0)
    assert _rel(fit.coef, nystrom_krr(RBF(), X, Y, 0.1, 60, random_state=0).coef) < 1e-7


def test_gpu_cholesky_failure_falls_back_without_nan(data):
    # duplicate rows with α = 0: the factorisation fails or leaves pivots below n·eps; either way the fallback.
    X, _ = data
    X = np.vstack([X, X[:20]])
    y = np.sin(X[:, 0])
    K = cupy.asarray(Laplace()(X))
    with pytest.warns(GramWarning):
        coef = krr_solve(K, cupy.asarray(y), 0.0)
    assert bool(cupy.all(cupy.isfinite(coef)))
    assert _rel(K @ coef, y) < 1e-8


def test_gpu_cholesky_of_an_indefinite_matrix_is_refused():
    # cuSOLVER's potrf stops at the pivot −4 (j = 1) and, under CuPy's default linalg='ignore', returns the
    # half-factored matrix without an error: the solver must detect it and take the eigen fallback.
    from kernels.solve import ridge as solvers
    K = np.array([[4.0, 2.0, 0.0], [2.0, -3.0, 1.0], [0.0, 1.0, 5.0]])
    xp = backend_namespace(cupy.asarray(K))
    assert solvers._cholesky_lower(cupy.asarray(K), xp) is None
    y = np.array([1.0, -2.0, 0.5])
    with pytest.warns(GramWarning):
        coef = krr_solve(cupy.asarray(K), cupy.asarray(y), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = EigenPath(K).dual_coef(y)
    assert _rel(coef, want) < 1e-10


def test_random_features_on_gpu_equal_cpu(data):
    X, _ = data
    for f in (RandomFourierFeatures(64, random_state=0), ArcCosineFeatures(64, random_state=0),
              NTKFeatures(2, 16, activation="erf", b_std=0.2, random_state=0)):
        expected = f.fit(X).transform(X)
        assert _rel(f.transform(cupy.asarray(X)), expected) < 1e-12
    ntk = NTKFeatures(2, 16, random_state=0).fit(X)
    assert _rel(ntk.kernel(cupy.asarray(X)), ntk.kernel(X)) < 1e-12


def test_estimators_compute_on_gpu_and_return_where_the_input_lived(data):
    # device="auto" uses the GPU in float32; a well-posed problem (α = 0.1) agrees with float64 CPU to ~1e-4.
    X, Y = data
    y = Y[:, 0]
    cpu = KernelRegressor(alpha=0.1, device="cpu").fit(X, y).predict(X[:10])
    model = KernelRegressor(alpha=0.1).fit(X, y)
    assert isinstance(model.dual_coef_, cupy.ndarray) and model.dual_coef_.dtype == cupy.float32
    out = model.predict(X[:10])
    assert isinstance(out, np.ndarray) and _rel(out, cpu) < 1e-3
    out_cupy = model.predict(cupy.asarray(X[:10]))
    assert isinstance(out_cupy, cupy.ndarray)
    out_torch = model.predict(torch.tensor(X[:10], device="cuda"))
    assert isinstance(out_torch, torch.Tensor) and out_torch.device.type == "cuda"
    fitted = NTKRegressor(alpha=0.1).fit(cupy.asarray(X), cupy.asarray(y))
    assert _rel(fitted.predict(cupy.asarray(X[:10])), NTKRegressor(alpha=0.1, device="cpu").fit(X, y).predict(
        X[:10])) < 1e-3
    labels = KernelClassifier(alpha=0.1).fit(torch.tensor(X, device="cuda"), torch.tensor(y > 0, device="cuda"))
    predicted = labels.predict(torch.tensor(X, device="cuda"))
    assert isinstance(predicted, torch.Tensor) and predicted.device.type == "cuda"
    rf = RandomFeaturesRegressor(n_features=128, random_state=0).fit(cupy.asarray(X), cupy.asarray(y))
    assert isinstance(rf.predict(cupy.asarray(X)), cupy.ndarray)


def test_gpu_input_validation_messages(data):
    X, Y = data
    model = KernelRegressor().fit(cupy.asarray(X), cupy.asarray(Y[:, 0]))
    with pytest.raises(ValueError, match="X has 4 features, but KernelRegressor is expecting 5 features"):
        model.predict(cupy.asarray(X[:, :4]))
    with pytest.raises(ValueError, match="X contains NaN"):
        bad = cupy.asarray(X)
        bad[0, 0] = cupy.nan
        KernelRegressor().fit(bad, Y[:, 0])
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\)"):
        KernelRegressor().fit(cupy.asarray(X[:1]), Y[:1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KernelRegressor().fit(cupy.asarray(X), cupy.asarray(Y[:, 0]))


def test_float32_gpu_fit_at_a_tiny_ridge_agrees_or_warns():
    # device='auto' fits in float32 on the GPU. At α = 1e-6 the RBF Gram of 2000 points in 5-d has
    # cond(K + αI) ≈ 5e8 (measured on the CPU: eigenvalues 5e-10 .. 5e2) > 1/eps32 ≈ 1.7e7, so float32 cannot
    # resolve the float64 solution: the fit must say so (GramWarning: pivots below n·eps32, eigen pseudo-inverse)
    # or else agree with the float64 CPU fit as a well-posed one does (1e-3, the α = 0.1 test above). A silent
    # float32 fit far from the float64 one is the failure. (NumPy float32 on the CPU warns, and its predictions
    # then differ from the float64 fit by 90%: the pseudo-inverse drops the noise the α = 1e-6 fit interpolates.)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2200, 5))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.standard_normal(2200)
    cpu = KernelRegressor(alpha=1e-6, device="cpu").fit(X[:2000], y[:2000]).predict(X[2000:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = KernelRegressor(alpha=1e-6).fit(X[:2000], y[:2000])
        gpu = model.predict(X[2000:])
    assert model.dual_coef_.dtype == cupy.float32 and np.all(np.isfinite(gpu))
    if not any(issubclass(w.category, GramWarning) for w in caught):
        assert _rel(gpu, cpu) < 1e-3, f"float32 GPU fit differs from float64 by {_rel(gpu, cpu):.2g}, no GramWarning"
