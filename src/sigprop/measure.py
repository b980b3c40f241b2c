"""Measurements of SPEC section 2, on tensors of token representations (..., n, d)."""

from __future__ import annotations

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


def inner_product_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(offdiag, sq_norm)``: sum over k != k' of <X_k, X_k'>, and |X|_F^2. Shapes (...).

    Their sum is C(X) = n^2 |xbar|^2. Averaging both over seeds first and then dividing
    gives the paper's correlation (see :func:`correlation_from_stats`).
    """
    sq_norm = x.pow(2).sum(dim=(-2, -1))
    total = x.sum(dim=-2).pow(2).sum(-1)  # |sum_k X_k|^2 = C(X)
    return total - sq_norm, sq_norm


def correlation_from_stats(offdiag_mean: Tensor | float, sq_norm_mean: Tensor | float, n: int) -> Tensor | float:
    """rho = E[sum_{k!=k'} <X_k,X_k'>] / ((n-1) E|X|_F^2), the pooled form of the paper's eq. (tokens_corr).

    Equal to ``E C(X) / ((n-1) E|X|^2) - 1/(n-1)`` (SPEC section 3).
    """
    return offdiag_mean / ((n - 1) * sq_norm_mean)


def attention_concentration(a: Tensor) -> Tensor:
    """(1/n^2) |A - (1/n) 1 1^T|_F^2 for row-stochastic A of shape (..., n, n)."""
    n = a.shape[-1]
    return (a - 1.0 / n).pow(2).sum(dim=(-2, -1)) / n**2


def attention_jacobian_sq_norms(
    x: Tensor, wq: Tensor, wk: Tensor, wv: Tensor, kind: AttentionKind = "softmax", tau: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Exact |dS/dWq|_F^2 and |dS/dWv|_F^2 of one single-head attention layer S = A(X) X Wv.

    ``x`` (n, d_v); ``wq``, ``wk`` (d_v, d_k); ``wv`` (d_v, d_out). Row i of S depends on Wq only
    through q_i = X_i Wq, so dS_i/dWq_ab = X_ia dS_i/dq_ib and
    |dS/dWq|^2 = sum_i |X_i|^2 |dS_i/dq_i|_F^2; the per-row Jacobians come from autodiff
    (``torch.func.jacrev``, vectorised over rows). S is linear in Wv:
    |dS/dWv|^2 = d_out |A X|_F^2.
    """
    d_k = wq.shape[1]
    k = x @ wk
    g = x @ wv
    scale = tau / d_k**0.5

    def row(q_i: Tensor) -> Tensor:
        a_i = attention_weights((scale * q_i @ k.T)[None], kind)[0]
        return a_i @ g

    q = x @ wq
    jac = torch.func.vmap(torch.func.jacrev(row))(q)  # (n, d_out, d_k)
    grad_q = (x.pow(2).sum(-1) * jac.pow(2).sum(dim=(-2, -1))).sum()
    with torch.no_grad():
        a = attention_weights(scale * q @ k.T, kind)
        grad_v = wv.shape[1] * (a @ x).pow(2).sum()
    return grad_q.detach(), grad_v


def grad_norms(blocks: torch.nn.ModuleList, names: tuple[str, ...] = ("wq", "wk", "wv")) -> dict[str, list[float]]:
    """Per-block Frobenius norms of the gradients of the self-attention matrices, after ``backward()``."""
    out: dict[str, list[float]] = {name: [] for name in names}
    for block in blocks:
        for name in names:
            grad = getattr(block.attn, name).weight.grad
            out[name].append(float("nan") if grad is None else float(grad.norm()))
    return out


def equicorrelated_tokens(
    n: int, d: int, s: float, rho: float, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Gaussian tokens X (n, d): every entry variance s^2, corr(X_k,a, X_k',a) = rho for k != k'."""
    shared = torch.randn(1, d, generator=generator, dtype=dtype)
    own = torch.randn(n, d, generator=generator, dtype=dtype)
    return s * (rho**0.5 * shared + (1.0 - rho) ** 0.5 * own)
