"""Cholesky failure on CuPy, proven on the CPU with a stand-in namespace that behaves as CuPy does.

CuPy's ``linalg.cholesky`` raises only under ``cupyx.errstate(linalg='raise')``; under its default 'ignore'
cuSOLVER's potrf stops at the first non-positive pivot and returns the half-factored matrix: finite numbers
with that (negative) pivot on the diagonal, no NaN and no error. The stand-in does exactly that, and reads
the error state from a stand-in ``cupyx`` that records it.
"""
import contextlib
import sys
import types
import warnings

import array_api_compat.numpy as anp
import numpy as np
import pytest
import scipy.linalg

from kernels.solve import ridge as solvers
from kernels.solve.ridge import EigenPath, GramWarning


def _potrf_ignore(A):
    """cuSOLVER potrf without an info check: the factor up to the first pivot ≤ 0, the rest left unfactored."""
    L = np.tril(np.array(A, dtype=float))
    for j in range(L.shape[0]):
        pivot = L[j, j] - L[j, :j] @ L[j, :j]
        if pivot <= 0:
            L[j, j] = pivot          # what potrf leaves there: the failed (negative) pivot
            return L, j + 1
        L[j, j] = np.sqrt(pivot)
        L[j + 1:, j] = (L[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L, 0


@pytest.fixture
def fake_cupy(monkeypatch):
    """(namespace named 'cupy', record of the linalg error state at each cholesky call)."""
    state = {"linalg": "ignore", "seen": []}

    @contextlib.contextmanager
    def errstate(*, linalg=None):
        old, state["linalg"] = state["linalg"], linalg or state["linalg"]
        try:
            yield
        finally:
            state["linalg"] = old

    def cholesky(A):
        state["seen"].append(state["linalg"])
        L, info = _potrf_ignore(A)
        if info and state["linalg"] == "raise":
            raise np.linalg.LinAlgError(f"Error reported by potrf in cuSOLVER. devInfo = {info}.")
        return L

    cupyx = types.ModuleType("cupyx")
    cupyx.errstate = errstate
    cupyx.scipy = types.SimpleNamespace(linalg=types.SimpleNamespace(
        solve_triangular=lambda L, B, lower, trans: scipy.linalg.solve_triangular(L, B, lower=lower, trans=trans)))
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx.scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.linalg", cupyx.scipy.linalg)
    xp = types.ModuleType("cupy")     # array_api_compat.is_cupy_namespace goes by this name
    xp.__dict__.update({k: getattr(anp, k) for k in dir(anp) if not k.startswith("__")})
    xp.linalg = types.SimpleNamespace(cholesky=cholesky, diagonal=anp.linalg.diagonal, eigh=anp.linalg.eigh)
    return xp, state


INDEFINITE = np.array([[4.0, 2.0, 0.0], [2.0, -3.0, 1.0], [0.0, 1.0, 5.0]])   # eigenvalues of both signs


def test_failed_factorisation_is_detected(fake_cupy):
    xp, state = fake_cupy
    assert solvers._cholesky_lower(INDEFINITE, xp) is None     # garbage factor (pivot −4 at j = 1) refused
    assert state["seen"] == ["raise"]                           # and CuPy was asked to check its info code
    good = INDEFINITE + 5 * np.eye(3)                           # eigenvalues now all > 0
    np.testing.assert_allclose(solvers._cholesky_lower(good, xp), np.linalg.cholesky(good), rtol=1e-15)


def test_negative_pivot_fails_the_pivot_check():
    # pivots (2, −1): squared they would be (4, 1), comfortably above n·eps·4; the sign must fail them
    assert not solvers._pivots_ok(np.array([2.0, -1.0]), np, 1e-15)
    assert not solvers._pivots_ok(np.array([2.0, 0.0]), np, 1e-15)
    assert solvers._pivots_ok(np.array([2.0, 1.0]), np, 1e-15)


def test_krr_on_cupy_falls_back_to_the_pseudo_inverse(fake_cupy, monkeypatch):
    xp, _ = fake_cupy
    monkeypatch.setattr(solvers.backend, "get_namespace", lambda *arrays: xp)
    y = np.array([1.0, -2.0, 0.5])
    with pytest.warns(GramWarning, match="singular or indefinite"):
        coef = solvers.krr_solve(INDEFINITE, y, 0.0)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = EigenPath(INDEFINITE).dual_coef(y)   # the documented fallback: negative eigenvalues dropped
    np.testing.assert_allclose(coef, want, rtol=1e-12)           # same eigendecomposition: equal to rounding
