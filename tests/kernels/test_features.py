"""kernels.features: random features approximate their kernels with error ∝ 1/√n_features."""
import math

import numpy as np
import pytest

from kernels import ArcCosineFeatures, NTKFeatures, RandomFourierFeatures


def relu_ntk_depth1(x1, x2, w_std, b_std):
    """Analytic NTK of one hidden ReLU layer, NTK parameterization (docs/conventions.md, *Parameterizations*),
    written out independently: Σ = w²·x·y/d + b², Θ = w²·E[φ(u)φ(v)] + b² + w²·Σ·E[φ'(u)φ'(v)] with the arc-cosine formulas
    E[φφ] = (s + (π − θ)Σ₁₂)/2π, E[φ'φ'] = (π − θ)/2π, s = √(Σ₁₁Σ₂₂ − Σ₁₂²), θ = atan2(s, Σ₁₂)."""
    d = x1.shape[1]
    s11 = w_std ** 2 * np.sum(x1 * x1, 1)[:, None] / d + b_std ** 2
    s22 = w_std ** 2 * np.sum(x2 * x2, 1)[None, :] / d + b_std ** 2
    s12 = w_std ** 2 * (x1 @ x2.T) / d + b_std ** 2
    s = np.sqrt(np.clip(s11 * s22 - s12 ** 2, 0, None))
    if x1 is x2:
        np.fill_diagonal(s, 0.0)  # θ = 0 exactly on the diagonal (rounding would leave s ≈ 1e-8·Σ)
    theta = np.arctan2(s, s12)
    nngp = (s + (np.pi - theta) * s12) / (2 * np.pi)
    return w_std ** 2 * nngp + b_std ** 2 + w_std ** 2 * s12 * (np.pi - theta) / (2 * np.pi)


def _slope(sizes, errors):
    return np.polyfit(np.log(sizes), np.log(errors), 1)[0]


# Log-log slope of the relative Frobenius error against n_features (4 sizes over a factor 64, 4 seeds each).
# Monte Carlo: each entry's error is an average of D independent terms, so the error ∝ D^(-1/2) exactly in
# expectation; 20 repetitions of this experiment gave slopes −0.504 ± 0.026 (Fourier) and −0.490 ± 0.032
# (arc-cosine), so ±0.12 is about 4 standard deviations.
@pytest.mark.parametrize("features", [RandomFourierFeatures, ArcCosineFeatures])
def test_error_falls_like_inverse_sqrt_features(features, rng):
    X = rng.standard_normal((40, 4))
    sizes = [64, 256, 1024, 4096]
    errors = []
    for D in sizes:
        per_seed = []
        for seed in range(4):
            f = features(n_features=D, random_state=seed).fit(X)
            exact = f.exact_kernel(X)
            per_seed.append(np.linalg.norm(f.kernel(X) - exact) / np.linalg.norm(exact))
        errors.append(np.mean(per_seed))
    assert _slope(sizes, errors) == pytest.approx(-0.5, abs=0.12)
    assert errors[-1] < 0.06  # measured ~0.04 at D = 4096: the approximation is of the right kernel


def test_fourier_exact_kernel_is_rbf_and_features_are_cos_sin_pairs(rng):
    from sklearn.metrics.pairwise import rbf_kernel
    X = rng.standard_normal((10, 3))
    f = RandomFourierFeatures(n_features=8, gamma=0.4, random_state=0).fit(X)
    np.testing.assert_allclose(f.exact_kernel(X), rbf_kernel(X, gamma=0.4), rtol=1e-12)
    Z = f.transform(X)
    # each cos/sin pair has squared norm 2/D, so z(x)·z(x) = 1 = k(x, x) exactly
    np.testing.assert_allclose(np.sum(Z * Z, 1), 1.0, rtol=1e-12)


def test_arccos_exact_kernel_closed_form_at_special_angles():
    # θ = 0: k = ‖x‖²; orthogonal (θ = π/2): k = ‖x‖‖y‖/π; opposite (θ = π): k = 0.
    X = np.array([[3.0, 0.0], [0.0, 2.0], [-1.5, 0.0]])
    K = ArcCosineFeatures(n_features=2).fit(X).exact_kernel(X)
    np.testing.assert_allclose(np.diag(K), [9.0, 4.0, 2.25], rtol=1e-15)
    assert K[0, 1] == pytest.approx(6.0 / math.pi, rel=1e-14)
    assert K[0, 2] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("depth, b_std, activation", [(1, 0.0, "relu"), (2, 0.5, "relu"), (3, None, "erf")])
def test_ntk_features_are_autograd_per_sample_gradients(depth, b_std, activation, rng):
    # The structured fast path (outer products of backward signals and layer inputs) equals torch.func's
    # per-sample gradients of the same network, and its kernel equals Z·Zᵀ: float64 rounding only (1e-12).
    torch = pytest.importorskip("torch")
    from torch.func import grad, vmap
    X = rng.standard_normal((12, 5))
    f = NTKFeatures(depth=depth, width=16, activation=activation, w_std=1.3, b_std=b_std, random_state=0).fit(X)
    Z = f.transform(X)
    assert Z.shape == (12, f.n_params_)
    np.testing.assert_allclose(f.kernel(X), Z @ Z.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f.kernel(X[:4], X[4:]), Z[:4] @ Z[4:].T, rtol=1e-12, atol=1e-12)

    phi = torch.relu if activation == "relu" else torch.erf
    has_bias = b_std not in (None, 0.0)
    params = []
    for W, b in zip(f.layer_weights_, f.layer_biases_):
        params.append(torch.tensor(W))
        if has_bias:
            params.append(torch.tensor(b))
    params += [torch.tensor(f.readout_)] + ([torch.ones((), dtype=torch.float64)] if has_bias else [])

    def network(params, x):
        h, step = x, 2 if has_bias else 1
        for layer in range(depth):
            z = 1.3 / math.sqrt(h.shape[0]) * (params[step * layer] @ h)
            h = phi(z + b_std * params[step * layer + 1] if has_bias else z)
        out = 1.3 / math.sqrt(16) * (params[step * depth] @ h)
        return out + b_std * params[-1] if has_bias else out

    grads = vmap(grad(network), in_dims=(None, 0))(params, torch.tensor(X))
    autograd = torch.cat([g.reshape(12, -1) for g in grads], 1).numpy()
    np.testing.assert_allclose(Z, autograd, rtol=1e-12, atol=1e-13)


def test_ntk_features_converge_to_analytic_ntk_like_inverse_sqrt_width(rng):
    # One hidden layer: E[empirical NTK] equals the analytic NTK at every width (readout weights are independent
    # of the first layer), so the error is pure Monte Carlo: ∝ width^(-1/2). Same slope tolerance as above.
    X = rng.standard_normal((30, 4))
    exact = relu_ntk_depth1(X, X, 1.5, 0.3)
    widths = [32, 128, 512, 2048]
    errors = []
    for width in widths:
        per_seed = [np.linalg.norm(NTKFeatures(1, width, w_std=1.5, b_std=0.3, random_state=s).fit(X).kernel(X)
                                   - exact) / np.linalg.norm(exact) for s in range(4)]
        errors.append(np.mean(per_seed))
    assert _slope(widths, errors) == pytest.approx(-0.5, abs=0.12)
    # unbiased: the mean over 64 draws at width 64 is within 4 MC standard errors of the analytic NTK
    draws = np.stack([NTKFeatures(1, 64, w_std=1.5, b_std=0.3, random_state=s).fit(X).kernel(X)
                      for s in range(64)])
    sem = draws.std(0) / 8
    assert np.all(np.abs(draws.mean(0) - exact) <= 4 * sem + 1e-12)


def test_ntk_features_match_kernels_fully_connected(rng):
    analytic = pytest.importorskip("kernels.analytic.networks")
    X = rng.standard_normal((20, 4))
    f = NTKFeatures(depth=1, width=8, w_std=1.5, b_std=0.3, random_state=0).fit(X)
    np.testing.assert_allclose(f.exact_kernel(X), relu_ntk_depth1(X, X, 1.5, 0.3), rtol=1e-10, atol=1e-12)
    reference = analytic.FullyConnected(depth=2, activation="relu", w_std=1.5, b_std=0.3).ntk(X)
    # depth 2 at width 2048 (mean over 4 draws): finite-width bias and MC noise are O(1/√width) ≈ 2%
    mean = np.mean([NTKFeatures(2, 2048, w_std=1.5, b_std=0.3, random_state=s).fit(X).kernel(X)
                    for s in range(4)], axis=0)
    assert np.linalg.norm(mean - reference) / np.linalg.norm(reference) < 0.05


def test_features_generic_namespace(xp, rng):
    X = rng.standard_normal((6, 3))
    for f in (RandomFourierFeatures(16, random_state=0), ArcCosineFeatures(16, random_state=0),
              NTKFeatures(2, 8, random_state=0)):
        expected = f.fit(X).transform(X)
        np.testing.assert_allclose(np.asarray(f.transform(xp.asarray(X))), expected, rtol=1e-12, atol=1e-14)


def test_bad_input(rng):
    X = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="n_features must be even"):
        RandomFourierFeatures(n_features=7).fit(X)
    with pytest.raises(ValueError, match="`n_features` must be an integer ≥ 1"):
        ArcCosineFeatures(n_features=0).fit(X)
    with pytest.raises(ValueError, match="unknown activation 'tanh'; valid: relu, erf"):
        NTKFeatures(activation="tanh").fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but RandomFourierFeatures is expecting 3"):
        RandomFourierFeatures(8).fit(X).transform(X[:, :2])
    with pytest.raises(ValueError, match="X contains NaN"):
        ArcCosineFeatures(8).fit(np.full((2, 2), np.nan))
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        NTKFeatures().transform(X)
