"""Measurements of docs/init-time.md against hand-computed cases and independent autodiff."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from sigprop.model import ModelConfig, Stack
from sigprop.tasks.measure import (
    adam_effective_lr,
    attention_concentration,
    attention_jacobian_sq_norms,
    correlation_from_stats,
    equicorrelated_tokens,
    grad_norms,
    inner_product_stats,
    masked_token_stats,
    token_cosine,
)

F64 = torch.float64


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


# ---------------------------------------------------------------- token cosine


def test_token_cosine_hand_computed():
    # two tokens at 45 degrees
    assert token_cosine(t([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    # three tokens: pair cosines 0, 1/sqrt2, 1/sqrt2 -> mean sqrt(2)/3
    x = t([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert token_cosine(x).item() == pytest.approx(math.sqrt(2) / 3, abs=1e-15)
    # opposite tokens
    assert token_cosine(t([[1.0, 2.0], [-3.0, -6.0]])).item() == pytest.approx(-1.0, abs=1e-15)


def test_token_cosine_identical_and_orthogonal():
    x = torch.randn(5, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert token_cosine(x.repeat(4, 1)).item() == pytest.approx(1.0, abs=1e-14)
    assert token_cosine(torch.eye(6, dtype=F64)).item() == pytest.approx(0.0, abs=1e-15)
    # orthogonal but unequal norms: still 0
    assert token_cosine(torch.diag(t([1.0, 5.0, 0.1]))).item() == pytest.approx(0.0, abs=1e-15)


def test_token_cosine_scale_invariant_and_batched():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 6, generator=g, dtype=F64)
    scales = torch.rand(3, 4, 5, 1, generator=g, dtype=F64) + 0.1
    got = token_cosine(x)
    assert got.shape == (3, 4)
    torch.testing.assert_close(token_cosine(x * scales), got, rtol=1e-12, atol=1e-14)
    # brute force over pairs for one batch element
    u = x[1, 2] / x[1, 2].norm(dim=-1, keepdim=True)
    pairs = [float(u[i] @ u[j]) for i in range(5) for j in range(5) if i != j]
    assert got[1, 2].item() == pytest.approx(sum(pairs) / len(pairs), abs=1e-14)


# ---------------------------------------------------------------- inner products and correlation


def test_inner_product_stats_hand_computed():
    x = t([[1.0, 2.0], [3.0, 4.0]])
    offdiag, sq = inner_product_stats(x)
    assert sq.item() == 30.0  # 1 + 4 + 9 + 16
    assert offdiag.item() == 22.0  # 2 <(1,2),(3,4)> = 2 * 11
    # offdiag + sq = C(X) = n^2 |xbar|^2 = 4 * |(2,3)|^2 = 52
    assert (offdiag + sq).item() == 52.0


def test_inner_product_stats_batched_brute_force():
    x = torch.randn(7, 4, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    offdiag, sq = inner_product_stats(x)
    for b in range(7):
        gram = x[b] @ x[b].T
        assert sq[b].item() == pytest.approx(gram.trace().item(), rel=1e-13)
        assert offdiag[b].item() == pytest.approx((gram.sum() - gram.trace()).item(), rel=1e-12, abs=1e-12)


def test_correlation_identical_orthogonal_and_hand_computed():
    n = 4
    same = torch.randn(1, 5, generator=torch.Generator().manual_seed(3), dtype=F64).repeat(n, 1)
    assert correlation_from_stats(*inner_product_stats(same), n).item() == pytest.approx(1.0, abs=1e-14)
    assert correlation_from_stats(*inner_product_stats(torch.eye(n, dtype=F64)), n).item() == 0.0
    # tokens (1,0), (1,1): offdiag 2, |X|^2 = 3 -> 2 / (1 * 3)
    assert correlation_from_stats(*inner_product_stats(t([[1.0, 0.0], [1.0, 1.0]])), 2).item() == pytest.approx(2 / 3)


def test_correlation_averages_over_samples_before_dividing():
    # sample A: identical tokens (offdiag 2, |X|^2 2, own rho 1); sample B: orthogonal (offdiag 0, |X|^2 8, own rho 0)
    samples = torch.stack([t([[1.0, 0.0], [1.0, 0.0]]), t([[0.0, 2.0], [2.0, 0.0]])])
    offdiag, sq = inner_product_stats(samples)
    assert offdiag.tolist() == [2.0, 0.0] and sq.tolist() == [2.0, 8.0]
    # pooled: E[offdiag] / ((n-1) E|X|^2) = 1 / 5, not the mean of per-sample values (0.5)
    assert correlation_from_stats(offdiag.mean(), sq.mean(), 2).item() == pytest.approx(0.2, abs=1e-15)


# ---------------------------------------------------------------- attention concentration


@pytest.mark.parametrize("n", [2, 3, 7])
def test_attention_concentration_uniform_and_permutation(n):
    uniform = torch.full((n, n), 1.0 / n, dtype=F64)
    assert attention_concentration(uniform).item() == pytest.approx(0.0, abs=1e-30)
    perm = torch.eye(n, dtype=F64)[torch.randperm(n, generator=torch.Generator().manual_seed(n))]
    # |P - 11^T/n|^2 = n (1 - 1/n)^2 + n (n-1) / n^2 = n - 1
    assert attention_concentration(perm).item() == pytest.approx((n - 1) / n**2, rel=1e-14)


def test_attention_concentration_hand_computed_and_batched():
    a = t([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    # deviations from 1/3: row 0: (1/6, 1/6, -1/3) -> 1/6; row 1: (2/3, -1/3, -1/3) -> 2/3; row 2: 0
    assert attention_concentration(a).item() == pytest.approx((1 / 6 + 2 / 3) / 9, rel=1e-14)
    batch = torch.stack([a, torch.full((3, 3), 1 / 3, dtype=F64)])
    got = attention_concentration(batch)
    assert got.shape == (2,)
    assert got[0].item() == pytest.approx((1 / 6 + 2 / 3) / 9, rel=1e-14)
    assert got[1].item() == pytest.approx(0.0, abs=1e-30)


# ---------------------------------------------------------------- Jacobian norms of one attention layer


def _reference_attention_output(x, wq, wk, wv, kind, tau):
    """S = A(tau/sqrt(d_k) X Wq (X Wk)^T) X Wv, written out independently of sigprop.

    For 'uniform' this returns the linearisation of the softmax at the uniform point,
    A = 1/n + l (I - 11^T/n) / n per row: it has the softmax's derivative there (what the model's
    uniform attention must have) but not the value 1/n, so it is only used for d/dWq.
    """
    n, d_k = x.shape[0], wq.shape[1]
    logits = tau / math.sqrt(d_k) * (x @ wq) @ (x @ wk).T
    if kind == "softmax":
        a = torch.softmax(logits, dim=-1)
    else:
        centre = torch.eye(n, dtype=x.dtype) - 1.0 / n
        a = 1.0 / n + logits @ centre / n
    return a @ x @ wv


@pytest.mark.parametrize("method", ["contraction", "autodiff"])
@pytest.mark.parametrize("kind", ["softmax", "uniform"])
@pytest.mark.parametrize(("n", "tau"), [(3, 1.0), (3, 1.7), (6, 0.6)])
def test_attention_jacobian_sq_norms_match_full_jacobian(kind, n, tau, method):
    g = torch.Generator().manual_seed(11 + n)
    d_v, d_k, d_out = 4, 5, 2  # distinct sizes catch transposed shapes
    x = torch.randn(n, d_v, generator=g, dtype=F64)
    wq = torch.randn(d_v, d_k, generator=g, dtype=F64)
    wk = torch.randn(d_v, d_k, generator=g, dtype=F64)
    wv = torch.randn(d_v, d_out, generator=g, dtype=F64)

    jq = jacobian(lambda w: _reference_attention_output(x, w, wk, wv, kind, tau), wq)
    assert jq.shape == (n, d_out, d_v, d_k)
    if kind == "softmax":
        jv = jacobian(lambda w: _reference_attention_output(x, wq, wk, w, kind, tau), wv)
    else:  # uniform: S = (1/n) 1 1^T X Wv exactly
        jv = jacobian(lambda w: torch.full((n, n), 1.0 / n, dtype=F64) @ x @ w, wv)

    got_q, got_v = attention_jacobian_sq_norms(x, wq, wk, wv, kind, tau, method=method)
    assert got_q.item() == pytest.approx(jq.pow(2).sum().item(), rel=1e-10, abs=0)
    assert got_v.item() == pytest.approx(jv.pow(2).sum().item(), rel=1e-10, abs=0)
    assert got_q.item() > 1e-3  # a non-degenerate case


def test_uniform_jacobian_closed_form():
    """Under uniform attention both norms have a closed form for any X and weights (derived by hand).

    dS_i/dq_i = tau/sqrt(d_k) (X Wv)^T (I - 11^T/n)/n (X Wk) is the same for every row i, so
    |dS/dWq|^2 = |X|^2 tau^2 / (d_k n^2) |Wv^T X^T (I - 11^T/n) X Wk|^2; and |dS/dWv|^2 = d_out n |xbar|^2.
    """
    g = torch.Generator().manual_seed(5)
    n, d_v, d_k, d_out, tau = 6, 5, 3, 4, 0.8
    x = torch.randn(n, d_v, generator=g, dtype=F64)
    wq, wk = (torch.randn(d_v, d_k, generator=g, dtype=F64) for _ in range(2))
    wv = torch.randn(d_v, d_out, generator=g, dtype=F64)
    centre = torch.eye(n, dtype=F64) - 1.0 / n
    expect_q = x.pow(2).sum() * tau**2 / (d_k * n**2) * (wv.T @ x.T @ centre @ x @ wk).pow(2).sum()
    expect_v = d_out * n * x.mean(0).pow(2).sum()
    for method in ("contraction", "autodiff"):
        got_q, got_v = attention_jacobian_sq_norms(x, wq, wk, wv, "uniform", tau, method=method)
        assert got_q.item() == pytest.approx(expect_q.item(), rel=1e-12), method
        assert got_v.item() == pytest.approx(expect_v.item(), rel=1e-12), method


def test_jacobian_methods_agree_on_larger_softmax_case():
    g = torch.Generator().manual_seed(3)
    n, d = 16, 12
    x = equicorrelated_tokens(n, d, 1.5, 0.4, g, F64)
    wq, wk, wv = (torch.randn(d, d, generator=g, dtype=F64) / math.sqrt(d) for _ in range(3))
    fast = attention_jacobian_sq_norms(x, wq, wk, wv, "softmax", 2.0, method="contraction")
    slow = attention_jacobian_sq_norms(x, wq, wk, wv, "softmax", 2.0, method="autodiff")
    assert fast[0].item() == pytest.approx(slow[0].item(), rel=1e-10)
    assert fast[1].item() == pytest.approx(slow[1].item(), rel=1e-12)


# ---------------------------------------------------------------- per-layer gradient norms


def test_grad_norms_per_block():
    cfg = ModelConfig(d_model=8, n_heads=2, d_ff=16, n_layers=3, norm="post")
    stack = Stack(cfg).double()
    x = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    out, _ = stack(x)
    out.pow(2).sum().backward()
    got = grad_norms(stack.blocks)
    assert set(got) == {"wq", "wk", "wv"}
    for name, values in got.items():
        expect = [getattr(b.attn, name).weight.grad.norm().item() for b in stack.blocks]
        assert values == pytest.approx(expect, rel=1e-15)
        assert all(v > 0 for v in values)
    stack.zero_grad(set_to_none=True)
    assert all(math.isnan(v) for v in grad_norms(stack.blocks)["wq"])


def test_masked_token_stats_is_token_cosine_over_the_kept_tokens():
    """Per sequence over its non-padding tokens, then the mean over sequences (one-token sequences: no cosine)."""
    h = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1))
    keep = torch.zeros(3, 6, dtype=torch.bool)
    keep[0, :] = True
    keep[1, :3] = True
    keep[2, :1] = True  # one token: no pair, left out of the cosine, kept in the norm
    cos, act = masked_token_stats(h, keep)
    assert cos == pytest.approx(float((token_cosine(h[0]) + token_cosine(h[1, :3])) / 2), rel=1e-5)
    norms = [h[0].norm(dim=-1).mean(), h[1, :3].norm(dim=-1).mean(), h[2, 0].norm()]
    assert act == pytest.approx(float(sum(norms) / 3), rel=1e-6)
    same = torch.randn(1, 4).expand(1, 5, 4)
    assert masked_token_stats(same, torch.ones(1, 5, dtype=torch.bool))[0] == pytest.approx(1.0, abs=1e-6)


def test_grad_norms_float32_and_missing_gradients():
    cfg = ModelConfig(d_model=8, n_heads=2, d_ff=16, n_layers=2, norm="pre")
    stack = Stack(cfg)
    out, _ = stack(torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(2)))
    out.pow(2).sum().backward()
    stack.blocks[1].attn.wk.weight.grad = None
    got = grad_norms(stack.blocks, ("wk",))["wk"]
    assert got[0] == float(stack.blocks[0].attn.wk.weight.grad.norm()) and math.isnan(got[1])


# ---------------------------------------------------------------- equicorrelated tokens


@pytest.mark.parametrize(("s", "rho"), [(1.5, 0.3), (0.5, 0.0), (1.0, 0.9)])
def test_equicorrelated_tokens_moments(s, rho):
    # columns are iid draws of the n-vector (X_1a, ..., X_na): estimate over many columns
    n, d = 4, 200_000
    x = equicorrelated_tokens(n, d, s, rho, torch.Generator().manual_seed(0), dtype=F64)
    assert x.shape == (n, d) and x.dtype == F64
    cov = torch.cov(x)  # (n, n), rows are variables
    var = cov.diagonal()
    corr = cov / torch.sqrt(var[:, None] * var[None, :])
    off = corr[~torch.eye(n, dtype=torch.bool)]
    # SE of a variance ~ s^2 sqrt(2/d) = 0.3% s^2; of a correlation ~ (1 - rho^2)/sqrt(d) <= 0.0023
    torch.testing.assert_close(var, torch.full_like(var, s**2), rtol=0.02, atol=0)
    torch.testing.assert_close(off, torch.full_like(off, rho), rtol=0, atol=0.012)
    assert x.mean().abs().item() < 5 * s / math.sqrt(n * d) + 5 * s * math.sqrt(rho / d)


def test_equicorrelated_tokens_edge_cases_and_reproducible():
    x = equicorrelated_tokens(5, 7, 2.0, 1.0, torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(x, x[:1].expand(5, 7), rtol=0, atol=1e-15)  # rho = 1: identical tokens
    a = equicorrelated_tokens(3, 4, 1.0, 0.3, torch.Generator().manual_seed(7))
    b = equicorrelated_tokens(3, 4, 1.0, 0.3, torch.Generator().manual_seed(7))
    assert a.dtype == torch.float32 and torch.equal(a, b)


# ---------------------------------------------------------------- Adam's effective learning rate


def test_adam_effective_lr_after_one_step_hand_computed():
    """After one step from zero state: v_hat = g^2 exactly, so lr_eff = lr / (|g| + eps)."""
    w = torch.nn.Parameter(torch.zeros(2, 3, dtype=F64))
    grad = torch.tensor([[1.0, -2.0, 0.5], [4.0, 0.0, -0.25]], dtype=F64)
    opt = torch.optim.Adam([w], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    with pytest.raises(ValueError):
        adam_effective_lr(opt, w)  # no state yet
    w.grad = grad.clone()
    opt.step()
    got = adam_effective_lr(opt, w)
    torch.testing.assert_close(got, 0.01 / (grad.abs() + 1e-8), rtol=1e-12, atol=0)
    with pytest.raises(ValueError):
        adam_effective_lr(opt, torch.nn.Parameter(torch.zeros(1)))  # not in the optimizer
