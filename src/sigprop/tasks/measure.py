"""Measurements of docs/init-time.md, on tensors of token representations (..., n, d)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from sigprop.model import AttentionKind, attention_weights


def token_cosine(x: Tensor) -> Tensor:
    """Mean cosine between distinct tokens: mean over pairs k != k' of cos(X_k, X_k'). Shape (...)."""
    n = x.shape[-2]
    u = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    gram = u @ u.transpose(-2, -1)
    off = gram.sum(dim=(-2, -1)) - gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    return off / (n * (n - 1))


def masked_token_stats(h: Tensor, keep: Tensor) -> tuple[float, float]:
    """Mean pairwise token cosine and mean token norm over the kept tokens of each sequence, averaged over sequences.

    ``h`` (batch, n, d), ``keep`` (batch, n) bool (False: padding). The cosine of a sequence with m kept tokens is
    (|sum_k u_k|^2 - sum_k |u_k|^2) / (m (m-1)), u the unit tokens (:func:`token_cosine` over the kept tokens;
    averaged over the sequences with m >= 2), computed in float32 at least.
    """
    h = h.float()
    keep = keep.to(h.dtype)[..., None]
    norm = h.norm(dim=-1, keepdim=True)
    u = h / norm.clamp_min(torch.finfo(h.dtype).tiny) * keep
    m = keep.sum(dim=(1, 2))
    total = u.sum(dim=1).pow(2).sum(-1)
    diag = u.pow(2).sum(dim=(1, 2))
    ok = m >= 2
    cos = ((total - diag) / (m * (m - 1)).clamp_min(1))[ok].mean()
    act = ((norm * keep).sum(dim=(1, 2)) / m.clamp_min(1)).mean()
    return float(cos), float(act)


def inner_product_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(offdiag, sq_norm)``: sum over k != k' of <X_k, X_k'>, and |X|_F^2. Shapes (...).

    Their sum is C(X) = n^2 |xbar|^2. Averaging both over seeds first and then dividing
    gives the paper's correlation (see :func:`correlation_from_stats`).
    """
    sq_norm = x.pow(2).sum(dim=(-2, -1))
    total = x.sum(dim=-2).pow(2).sum(-1)  # |sum_k X_k|^2 = C(X)
    return total - sq_norm, sq_norm


def relative_residual(x: Tensor) -> Tensor:
    """Dong et al. (2021)'s distance from rank collapse: |X - 1 xbar^T|_F / |X|_F, xbar the mean token. Shape (...).

    0 when every token equals the mean token; |X - 1 xbar^T|_F^2 = |X|_F^2 - n |xbar|^2.
    """
    centred = x - x.mean(dim=-2, keepdim=True)
    return centred.pow(2).sum(dim=(-2, -1)).sqrt() / x.pow(2).sum(dim=(-2, -1)).sqrt()


def stable_rank(x: Tensor) -> Tensor:
    """|X|_F^2 / |X|_2^2 (sum of squared singular values over the largest one): between 1 and rank(X). Shape (...)."""
    sv = torch.linalg.svdvals(x.double())
    return (sv.pow(2).sum(-1) / sv[..., 0].pow(2)).to(x.dtype)


def correlation_from_stats(offdiag_mean: Tensor | float, sq_norm_mean: Tensor | float, n: int) -> Tensor | float:
    """rho = E[sum_{k!=k'} <X_k,X_k'>] / ((n-1) E|X|_F^2), the pooled form of the paper's eq. (tokens_corr).

    Equal to ``E C(X) / ((n-1) E|X|^2) - 1/(n-1)`` (docs/init-time.md).
    """
    return offdiag_mean / ((n - 1) * sq_norm_mean)


def attention_concentration(a: Tensor) -> Tensor:
    """(1/n^2) |A - (1/n) 1 1^T|_F^2 for row-stochastic A of shape (..., n, n)."""
    n = a.shape[-1]
    return (a - 1.0 / n).pow(2).sum(dim=(-2, -1)) / n**2


def attention_jacobian_sq_norms(
    x: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    kind: AttentionKind = "softmax",
    tau: float = 1.0,
    method: Literal["contraction", "autodiff"] = "contraction",
) -> tuple[Tensor, Tensor]:
    """Exact |dS/dWq|_F^2 and |dS/dWv|_F^2 of one single-head attention layer S = A(X) X Wv.

    ``x`` (n, d_v); ``wq``, ``wk`` (d_v, d_k); ``wv`` (d_v, d_out). Row i of S depends on Wq only
    through q_i = X_i Wq, so dS_i/dWq_ab = X_ia dS_i/dq_ib and |dS/dWq|^2 = sum_i |X_i|^2 |dS_i/dq_i|_F^2.
    With G = X Wv, K = X Wk and J_i the Jacobian of row i of A w.r.t. its logits,
    dS_i/dq_i = (tau/sqrt(d_k)) G^T J_i K.

    ``method='autodiff'`` takes the per-row Jacobians from ``torch.func.jacrev`` (O(n^2 d^2));
    ``'contraction'`` evaluates |G^T J_i K|_F^2 = tr(J_i P J_i R), P = G G^T, R = K K^T, in closed form
    (O(n^3 + n^2 d)); the tests check that both agree. S is linear in Wv: |dS/dWv|^2 = d_out |A X|_F^2.
    """
    d_k = wq.shape[1]
    k, g, q = x @ wk, x @ wv, x @ wq
    scale = tau / d_k**0.5
    x_sq = x.pow(2).sum(-1)
    if method == "autodiff":

        def row(q_i: Tensor) -> Tensor:
            return attention_weights((scale * q_i @ k.T)[None], kind)[0] @ g

        jac = torch.func.vmap(torch.func.jacrev(row))(q)  # (n, d_out, d_k)
        grad_q = (x_sq * jac.pow(2).sum(dim=(-2, -1))).sum().detach()
    else:
        with torch.no_grad():
            p, r = g @ g.T, k @ k.T
            grad_q = scale**2 * (x_sq * _jacobian_traces(attention_weights(scale * q @ k.T, kind), p, r, kind)).sum()
    with torch.no_grad():
        a = attention_weights(scale * q @ k.T, kind)
        grad_v = wv.shape[1] * (a @ x).pow(2).sum()
    return grad_q, grad_v


def _jacobian_traces(a: Tensor, p: Tensor, r: Tensor, kind: AttentionKind) -> Tensor:
    """tr(J_i P J_i R) for every row i, J_i the row's softmax Jacobian (symmetric P, R).

    Softmax: J = diag(a) - a a^T gives a^T (P*R) a - 2 sum_j a_j (Pa)_j (Ra)_j + (a^T P a)(a^T R a).
    Uniform: J = (I - 11^T/n)/n, the same for every row: tr(C P C R)/n^2 with C the centring matrix.
    """
    n = a.shape[-1]
    if kind == "uniform":
        c = torch.eye(n, dtype=p.dtype) - 1.0 / n
        return torch.full((n,), float(torch.trace(c @ p @ c @ r)) / n**2, dtype=p.dtype)
    u, v = a @ p, a @ r  # rows: P a_i, R a_i (P, R symmetric)
    first = ((a @ (p * r)) * a).sum(-1)
    return first - 2 * (a * u * v).sum(-1) + (a * u).sum(-1) * (a * v).sum(-1)


def grad_norms(blocks: torch.nn.ModuleList, names: tuple[str, ...] = ("wq", "wk", "wv")) -> dict[str, list[float]]:
    """Per-block Frobenius norms of the gradients of the self-attention matrices, after ``backward()`` (NaN where a
    matrix has no gradient), computed in float32 at least (float64 gradients in float64)."""
    out: dict[str, list[float]] = {name: [] for name in names}
    for block in blocks:
        for name in names:
            grad = getattr(block.attn, name).weight.grad
            if grad is not None and grad.dtype != torch.float64:
                grad = grad.float()
            out[name].append(float("nan") if grad is None else float(grad.norm()))
    return out


def equicorrelated_tokens(
    n: int, d: int, s: float, rho: float, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Gaussian tokens X (n, d): every entry variance s^2, corr(X_k,a, X_k',a) = rho for k != k'."""
    shared = torch.randn(1, d, generator=generator, dtype=dtype)
    own = torch.randn(n, d, generator=generator, dtype=dtype)
    return s * (rho**0.5 * shared + (1.0 - rho) ** 0.5 * own)


def adam_effective_lr(optimizer: torch.optim.Optimizer, param: Tensor) -> Tensor:
    """Adam's effective learning rate per entry of ``param``: lr_t / (sqrt(v_hat) + eps).

    ``v_hat = exp_avg_sq / (1 - beta2^t)`` is the bias-corrected second moment read from the optimizer
    state (``max_exp_avg_sq`` with amsgrad); ``lr_t`` is the param group's current lr. Works for
    ``torch.optim.Adam`` and ``AdamW``; call it after ``optimizer.step()``. Shape: ``param.shape``.
    """
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])), None)
    if group is None:
        raise ValueError("this parameter is not in the optimizer")
    state = optimizer.state.get(param, {})
    if "exp_avg_sq" not in state:
        raise ValueError("no Adam state for this parameter yet: call adam_effective_lr after optimizer.step()")
    step = float(state["step"])
    v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
    v_hat = v.detach() / (1.0 - group["betas"][1] ** step)
    return float(group["lr"]) / (v_hat.sqrt() + group["eps"])


def attention_effective_lrs(
    optimizer: torch.optim.Optimizer, blocks: torch.nn.ModuleList, names: tuple[str, ...] = ("wq", "wk", "wv")
) -> dict[str, list[tuple[float, float]]]:
    """Per block, ``(median, mean)`` over the entries of each self-attention matrix's Adam effective lr.

    The median is the interpolated 0.5 quantile (``torch.quantile``).
    """
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for block in blocks:
        for name in names:
            eff = adam_effective_lr(optimizer, getattr(block.attn, name).weight).flatten().double()
            out[name].append((float(eff.quantile(0.5)), float(eff.mean())))
    return out
