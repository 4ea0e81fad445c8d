"""Conjugate gradient for symmetric positive definite systems, with an optional preconditioner.

Used by ``kernels.solve.ridge.nystrom_krr`` (on the FALKON-preconditioned system) and ``kernels.solve.stored``
(on stored Gram matrices). Every column of the right-hand side is solved independently, vectorised; arrays are
NumPy, CuPy or any array-API namespace ``xp`` (Hestenes & Stiefel 1952; Saad, "Iterative Methods for Sparse
Linear Systems", 2nd ed., Alg. 9.1 for the preconditioned form).
"""
from __future__ import annotations

from kernels.validation import check_scalar


def conjugate_gradient(operator, B, *, tol: float, max_iter: int, xp, precondition=None):
    """(Preconditioned) CG for a symmetric positive definite operator, every column of B solved independently.

    ``precondition(R)`` applies M⁻¹ ≈ operator⁻¹ (symmetric positive definite; None: the identity).
    Stops when every column's residual ‖B − operator(X)‖ is below ``tol`` times its right-hand side's norm.
    Returns (X, iterations, converged).
    """
    tol = min(check_scalar(tol, "tol", float, min_val=0), 1.0)   # tol ≥ 1 accepts the start; tol² stays finite
    check_scalar(max_iter, "max_iter", int, min_val=1)
    apply = precondition if precondition is not None else (lambda R: R)
    X = xp.zeros_like(B)
    R = B
    Z = apply(R)
    P = Z
    rz = xp.sum(R * Z, axis=0)
    rs0 = xp.sum(B * B, axis=0)
    target = (tol ** 2) * xp.where(rs0 > 0, rs0, xp.ones_like(rs0))
    for iteration in range(1, max_iter + 1):
        AP = operator(P)
        curvature = xp.sum(P * AP, axis=0)
        step = xp.where(curvature > 0, rz / xp.where(curvature > 0, curvature, xp.ones_like(curvature)),
                        xp.zeros_like(rz))
        X = X + step * P
        R = R - step * AP
        if bool(xp.all(xp.sum(R * R, axis=0) <= target)):
            return X, iteration, True
        Z = apply(R)
        rz_new = xp.sum(R * Z, axis=0)
        P = Z + (rz_new / xp.where(rz != 0, rz, xp.ones_like(rz))) * P
        rz = rz_new
    return X, max_iter, False
