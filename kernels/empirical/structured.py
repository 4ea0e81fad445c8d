"""The structured-derivatives path of ``kernels.empirical_ntk`` (Novak et al. 2022, "Fast Finite Width Neural
Tangent Kernel", ICML).

A layer y = W·p + b applied at positions s to input patches p_s has ∂f_o/∂W = Σ_s g_{o,s} p_sᵀ with g = ∂f_o/∂y,
so its contribution to Θ is Σ_{s,s'} (g_{o,s}·g'_{o',s'}) (p_s·p'_{s'} + [bias]). ``probe`` decides which
trainable parameters sit in supported layers (``kernels.empirical.layers``) used only through them;
``structured_pair`` contracts each such layer in the cheaper of two orders — "gram" (the elementwise product of
the patch and signal Gram matrices over positions) or "jacobian" (per-sample weight gradients G_o P, then their
Gram) — and sends every other parameter through ``functional.jacobian``.
"""
from __future__ import annotations

import torch
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from kernels.empirical import functional, layers

GRAM_ELEMENTS = 2 ** 26   # largest position-pair Gram tensor the "gram" order may form for a layer


class Plan:
    """What ``probe`` learnt: the supported ``sites``, the ``fallback`` parameter names (for
    ``functional.jacobian``), whether traces must ``clone`` layer inputs and outputs (in-place ops), the number
    of ``outputs`` O and the forward FLOPs per sample (None when there is no fallback)."""

    def __init__(self, sites, fallback, clone, outputs, forward_flops):
        self.sites, self.fallback, self.clone = sites, fallback, clone
        self.outputs, self.forward_flops = outputs, forward_flops


def probe(model, x1, trainable):
    """Run the model on two rows of x1 to learn O and which trainable parameters "structured" can handle."""
    nn = torch.nn
    owners = {}
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None:
                owners[p] = owners.get(p, 0) + 1
    candidates = []
    for module in model.modules():
        spec = layers.site_spec(module)
        if (spec is None or module._forward_hooks or parametrize.is_parametrized(module)
                or not isinstance(module._parameters.get("weight"), nn.Parameter)):
            continue
        site = layers.Site(module, *spec)  # a parameter shared with another module is left to the fallback
        site.weight = site.weight and owners.get(module.weight) == 1
        site.bias = site.bias and owners.get(module.bias) == 1
        if site.params():
            candidates.append(site)
    rows = x1[:2] if len(x1) >= 2 else torch.cat([x1[:1], x1[:1]])
    try:
        trace = layers.Trace(model, rows, candidates, clone=False)
    except Exception as err:
        raise ValueError(f"the model could not be applied to x1 of shape {tuple(x1.shape)} (probed with "
                         f"shape {tuple(rows.shape)}): {type(err).__name__}: {err}") from err
    if trace.f is None:
        got = tuple(trace.out.shape) if torch.is_tensor(trace.out) else type(trace.out).__name__
        raise ValueError(f"the model must map (N, ...) inputs to a tensor of shape (N, O) or (N,); inputs of "
                         f"shape {tuple(rows.shape)} gave {got}")
    clone = any(rec.modified() for recs in trace.records.values() for rec in recs)
    uses = _graph_uses(trace.f)
    sites = []
    for site in candidates:
        calls = trace.records[site]
        batch_first = all(rec.a.shape[0] == 2 and rec.y.shape[0] == 2
                          and (site.kind == "linear" or rec.a.ndim == 4) for rec in calls)
        if not (calls and batch_first):
            continue
        # a parameter with more uses in the graph than the layer has calls is also used elsewhere
        site.weight = site.weight and uses.get(site.module.weight, 0) <= len(calls)
        site.bias = site.bias and uses.get(site.module.bias, 0) <= len(calls)
        if site.params():
            sites.append(site)
    handled = {p for site in sites for p in site.params()}
    named = dict(model.named_parameters())
    fallback = [name for name in trainable if named[name] not in handled]
    flops = None
    if fallback:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(rows)
        flops = counter.get_total_flops() / 2
    return Plan(sites, fallback, clone, trace.f.shape[1], flops)


def _graph_uses(f):
    """How many autograd-graph edges reach each leaf parameter from ``f`` (one per use in the forward)."""
    uses, seen = {}, set()
    stack = [f.grad_fn] if f.grad_fn is not None else []
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            variable = getattr(child, "variable", None)
            if variable is not None:
                uses[variable] = uses.get(variable, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return uses


def structured_pair(model, plan, xa, xb, full):
    """Θ(xa, xb) by structured derivatives (see the module docstring); (n1, n2) Σ_o Θ_oo or (n1, n2, O, O)."""
    ta = layers.Trace(model, xa, plan.sites, plan.clone)
    tb = ta if xb is None else layers.Trace(model, xb, plan.sites, plan.clone)
    O = plan.outputs
    q = O if full else 1
    orders, grams = {}, {}
    for site in plan.sites:
        s1 = sum(site.positions(rec.y) for rec in ta.records[site])
        s2 = sum(site.positions(rec.y) for rec in tb.records[site])
        orders[site] = _order(site, ta.n, tb.n, s1, s2, q)
        if orders[site] == "gram":
            grams[site] = _patch_gram(site, ta, tb)
    kernel = torch.zeros((ta.n, tb.n, O, O) if full else (ta.n, tb.n), dtype=xa.dtype, device=xa.device)
    acc = kernel.view(ta.n, tb.n, q, q)  # "mean" streams one output at a time (q = 1) into Σ_o Θ_oo
    for outputs in ([list(range(O))] if full else [[o] for o in range(O)]):
        ga = ta.signals(outputs)
        gb = ga if tb is ta else tb.signals(outputs)
        for site in plan.sites:
            if orders[site] == "gram":
                _gram_contract(grams[site], ga[site], gb[site], acc)
            else:
                ja = _site_jacobian(site, ta, ga[site])
                jb = ja if tb is ta else _site_jacobian(site, tb, gb[site])
                for fa, fb in zip(ja, jb):
                    if fa is not None:
                        functional.contract_into(acc, fa, fb)
    if plan.fallback:
        ja = functional.jacobian(model, xa, plan.fallback)
        functional.contract_into(acc if full else kernel.view(ta.n, tb.n, 1, 1), ja,
                       ja if xb is None else functional.jacobian(model, xb, plan.fallback), summed=not full)
    return kernel


def _order(site, n1, n2, s1, s2, q):
    """"gram" (Gram matrices over positions, then Σ_{s,s'}) or "jacobian" (per-sample weight gradients, then
    their Gram), whichever needs fewer multiply-adds; "gram" only while its (n1·S1)×(n2·S2) tensors fit."""
    C, K = site.fan_out, site.fan_in * site.weight
    features = C * K + C * site.bias
    jacobian = (n1 * s1 + n2 * s2) * q * C * K + n1 * n2 * q * q * features
    gram = n1 * n2 * s1 * s2 * (K + q * q * C)
    fits = s1 * s2 == 1 or n1 * n2 * s1 * s2 * q * q <= GRAM_ELEMENTS
    return "gram" if fits and gram <= jacobian else "jacobian"


def _patch_gram(site, ta, tb):
    """M[a,s,b,t] = ws²·p_{a,s}·p_{b,t} (+ bs² for a trainable bias), zero when only the bias is trainable."""
    def patches(trace):
        calls = [trace.patches(site, c, 0, trace.n) for c in range(len(trace.records[site]))]
        return calls[0] if len(calls) == 1 else torch.cat(calls, dim=2)

    pa = patches(ta)
    pb = pa if tb is ta else patches(tb)
    (n1, k, s1), (n2, _, s2) = pa.shape, pb.shape
    if not site.weight:
        gram = torch.zeros((n1, s1, n2, s2), dtype=pa.dtype, device=pa.device)
    elif s1 == s2 == 1:
        gram = (pa.reshape(n1, k) @ pb.reshape(n2, k).T).reshape(n1, 1, n2, 1)
    else:
        gram = torch.einsum("aks,bkt->asbt", pa, pb)
    if site.weight and site.weight_scale != 1:
        gram.mul_(site.weight_scale ** 2)
    return gram + site.bias_scale ** 2 if site.bias else gram


def _gram_contract(gram, ga, gb, acc):
    """acc[a,b,q,r] += Σ_{s,t} M[a,s,b,t]·(g_{a,q,s}·g_{b,r,t}) for signals (n, Q, C, S) concatenated over calls."""
    same = ga is gb
    ga = ga[0] if len(ga) == 1 else torch.cat(ga, dim=3)
    gb = ga if same else gb[0] if len(gb) == 1 else torch.cat(gb, dim=3)
    (n1, q, c, s1), (n2, _, _, s2) = ga.shape, gb.shape
    if s1 == s2 == 1:
        gg = (ga.reshape(n1 * q, c) @ gb.reshape(n2 * q, c).T).reshape(n1, q, n2, q).permute(0, 2, 1, 3)
        acc.addcmul_(gram.reshape(n1, n2, 1, 1), gg)
    else:
        acc += torch.einsum("asbt,aqcs,brct->abqr", gram, ga, gb)


def _site_jacobian(site, trace, signals):
    """Per-sample gradients of the layer's weight, ws·Σ_s g_s p_sᵀ as (n, Q, C·K), and bias, bs·Σ_s g_s as
    (n, Q, C) (None for a frozen one)."""
    n, q, C, _ = signals[0].shape
    weight = bias = None
    if site.weight:
        K = site.fan_in
        weight = torch.empty((n, q * C, K), dtype=signals[0].dtype, device=signals[0].device)
        for call, g in enumerate(signals):
            s = g.shape[3]
            g = g.reshape(n, q * C, s)
            step = max(1, layers.CHUNK_ELEMENTS // (K * s))
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                patches = trace.patches(site, call, lo, hi).transpose(1, 2)
                if call == 0:
                    torch.bmm(g[lo:hi], patches, out=weight[lo:hi])
                else:
                    weight[lo:hi].baddbmm_(g[lo:hi], patches)
        weight = weight.reshape(n, q, C * K)
        if site.weight_scale != 1:
            weight.mul_(site.weight_scale)
    if site.bias:
        bias = sum(g.sum(dim=3) for g in signals) * site.bias_scale
    return weight, bias
