"""The functional methods of ``kernels.empirical_ntk`` (torch.func; Novak et al. 2022, "Fast Finite Width Neural
Tangent Kernel", ICML), and the contractions every method shares.

- "jacobian": per-sample Jacobians J (``vmap(jacrev)``), then Θ = J₁ J₂ᵀ;
- "ntvp": NTK-vector products; column (x'_m, o') of Θ is the ``jvp`` on x₁ of the ``vjp`` of the one-hot
  cotangent e_{m,o'} on x₂. Never forms J₁.
"""
from __future__ import annotations

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap


def contract(ja, jb, full):
    """Θ from per-sample features (n, Q, F): Σ_f ja[a,q,f]·jb[b,r,f] as (n1, n2, Q, Q), or Σ_q of it."""
    n1, q, _ = ja.shape
    n2 = jb.shape[0]
    if full:
        return (ja.reshape(n1 * q, -1) @ jb.reshape(n2 * q, -1).T).reshape(n1, q, n2, q).permute(0, 2, 1, 3)
    return ja.reshape(n1, -1) @ jb.reshape(n2, -1).T


def contract_into(acc, ja, jb, summed=False):
    """acc (n1, n2, Q, Q) += contract(ja, jb, full=True), or acc (n1, n2, 1, 1) += its Σ_q when ``summed``."""
    n1, q = ja.shape[:2]
    n2 = jb.shape[0]
    if q == 1 or summed:
        acc.view(n1, n2).addmm_(ja.reshape(n1, -1), jb.reshape(n2, -1).T)
    else:
        acc += contract(ja, jb, True)


def jacobian(model, x, names):
    """Per-sample Jacobian (n, O, P) of the model output with respect to the parameters ``names``."""
    fixed = {name: p.detach() for name, p in model.named_parameters()}
    diff = {name: fixed[name] for name in names}

    def single(params, xi):
        return functional_call(model, {**fixed, **params}, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(single), (None, 0))(diff, x)
    n = len(x)
    return torch.cat([jac[name].reshape(n, jac[name].shape[1], -1) for name in names], dim=2)


def ntvp_pair(model, xa, xb, names, outputs, full, chunk):
    """Θ(xa, xb) column by column: jvp on xa of the vjp on xb of each one-hot cotangent e_{m,o'}."""
    fixed = {name: p.detach() for name, p in model.named_parameters()}
    diff = {name: fixed[name] for name in names}
    na, nb = len(xa), len(xb)

    def f(params, x):
        return functional_call(model, {**fixed, **params}, (x,)).reshape(len(x), outputs)

    _, pullback = vjp(lambda p: f(p, xb), diff)

    def column(cotangent):
        (tangent,) = pullback(cotangent)
        return jvp(lambda p: f(p, xa), (diff,), (tangent,))[1]

    cotangents = torch.eye(nb * outputs, dtype=xa.dtype, device=xa.device).reshape(nb * outputs, nb, outputs)
    columns = vmap(column, chunk_size=max(1, chunk))(cotangents)  # (nb·O', na, O)
    theta = columns.reshape(nb, outputs, na, outputs).permute(2, 0, 3, 1)  # (na, nb, O, O')
    return theta if full else torch.diagonal(theta, dim1=2, dim2=3).sum(-1)
