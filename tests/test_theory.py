"""Closed-form theory of docs/init-time.md against its worked examples and Monte Carlo of the model code.

Monte Carlo tolerances: |MC - theory| < 4 standard errors + a small relative slack; every test also
asserts that its standard error is small enough for the comparison to mean something.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sigprop.analysis import theory
from sigprop.model import ModelConfig, MultiHeadAttention, Stack, init_paper_
from sigprop.tasks.measure import attention_jacobian_sq_norms, equicorrelated_tokens, inner_product_stats

F64 = torch.float64
N_SIGMA = 4.0

# ---------------------------------------------------------------- worked examples (docs/init-time.md)


def test_spec_examples_uncorrelated_input():
    got = theory.correlation_uncorrelated_input(20, [2, 6, 12], 1.0)
    np.testing.assert_allclose(got, [0.130, 0.759, 0.995], atol=5e-4)
    assert float(theory.correlation_uncorrelated_input(20, 48, math.sqrt(1 / 48))) == pytest.approx(0.078, abs=5e-4)
    # 1/sqrt(L) scaling: (1 + 1/L)^L -> e, so rho^L -> (e - 1)/(e - 1 + n)
    big = 10**7
    limit = (math.e - 1) / (math.e - 1 + 20)
    assert float(theory.correlation_uncorrelated_input(20, big, 1 / math.sqrt(big))) == pytest.approx(limit, rel=1e-6)


def test_correlation_formula_reduces_to_uncorrelated_case():
    # orthogonal equal-norm tokens: C(X) = sum_{k,k'} <X_k, X_k'> = |X|^2
    n, x_sq, depth = 7, 3.5, np.arange(10)
    for a1 in (1.0, 0.5, 1 / math.sqrt(10)):
        np.testing.assert_allclose(
            theory.correlation(n, x_sq, x_sq, depth, a1),
            theory.correlation_uncorrelated_input(n, depth, a1),
            rtol=1e-12,
            atol=1e-15,
        )


def test_theory_identities():
    n, x_sq, c0, depth = 5, 2.0, 3.0, np.arange(8)
    # depth 0 gives the input back
    assert float(theory.sq_norm(n, x_sq, c0, 0, 0.7, 0.3)) == x_sq
    assert float(theory.inner_products(c0, 0, 0.7, 0.3)) == c0
    assert float(theory.correlation(n, x_sq, c0, 0, 0.7)) == pytest.approx((c0 - x_sq) / ((n - 1) * x_sq))
    # rho^l = E C / ((n-1) E|X|^2) - 1/(n-1), for any a2 (it cancels)
    for a1, a2 in ((1.0, 1.0), (0.5, 2.0), (0.3, 0.0)):
        via_c = theory.inner_products(c0, depth, a1, a2) / ((n - 1) * theory.sq_norm(n, x_sq, c0, depth, a1, a2))
        np.testing.assert_allclose(theory.correlation(n, x_sq, c0, depth, a1), via_c - 1 / (n - 1), rtol=1e-12)
    # no attention branch: only the feed-forward doubling remains
    np.testing.assert_allclose(theory.sq_norm(n, x_sq, c0, depth, 0.0, 1.0), 2.0**depth * x_sq)
    # a1 -> 0 is continuous
    np.testing.assert_allclose(
        theory.sq_norm(n, x_sq, c0, depth, 1e-6, 1.0), theory.sq_norm(n, x_sq, c0, depth, 0.0, 1.0), rtol=1e-9
    )


# ---------------------------------------------------------------- Monte Carlo: norm and correlation vs depth

N_TOKENS, D_MODEL, N_LAYERS, MC_SEEDS = 6, 16, 4, 1500


def _ratio_and_se(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean(num)/mean(den) per column, with its delta-method standard error."""
    ratio = num.mean(0) / den.mean(0)
    resid = num - ratio * den
    return ratio, resid.std(0, ddof=1) / math.sqrt(len(num)) / np.abs(den.mean(0))


@pytest.mark.parametrize("alpha", ["1", "1/sqrt(L)"])
def test_norm_and_correlation_match_theory_under_uniform_attention(alpha):
    cfg = ModelConfig(
        d_model=D_MODEL,
        n_heads=1,
        d_ff=D_MODEL,
        n_layers=N_LAYERS,
        norm="none",
        activation="linear",
        out_proj=False,
        attention="uniform",
        alpha1=alpha,
        alpha2=alpha,
    )
    a = 1.0 if alpha == "1" else 1 / math.sqrt(N_LAYERS)
    stack = Stack(cfg).to(F64)
    x = torch.randn(1, N_TOKENS, D_MODEL, generator=torch.Generator().manual_seed(1234), dtype=F64)
    x_sq = float(x.pow(2).sum())
    c0 = float(x[0].sum(0).pow(2).sum())  # C(X) = |sum_k X_k|^2

    off, sq = [], []
    with torch.no_grad():
        for seed in range(MC_SEEDS):
            stack.reset_parameters(torch.Generator().manual_seed(seed))
            _, hidden = stack(x)
            o, s = inner_product_stats(torch.stack([h[0] for h in hidden]))
            off.append(o.numpy())
            sq.append(s.numpy())
    off, sq = np.array(off), np.array(sq)
    depth = np.arange(N_LAYERS + 1)

    # E|X^l|^2
    mean, se = sq.mean(0), sq.std(0, ddof=1) / math.sqrt(MC_SEEDS)
    expect = theory.sq_norm(N_TOKENS, x_sq, c0, depth, a, a)
    assert np.all(se[1:] / expect[1:] < 0.05), "MC too noisy to test anything"
    assert np.all(np.abs(mean - expect) < N_SIGMA * se + 5e-3 * expect), (mean, expect, se)

    # E C(X^l)
    c = off + sq
    mean_c, se_c = c.mean(0), c.std(0, ddof=1) / math.sqrt(MC_SEEDS)
    expect_c = theory.inner_products(c0, depth, a, a)
    assert np.all(np.abs(mean_c - expect_c) < N_SIGMA * se_c + 5e-3 * expect_c), (mean_c, expect_c, se_c)

    # pooled rho^l = mean offdiag / ((n-1) mean |X|^2)
    rho, se_rho = _ratio_and_se(off, (N_TOKENS - 1) * sq)
    expect_rho = theory.correlation(N_TOKENS, x_sq, c0, depth, a)
    assert np.all(se_rho < 0.02)
    assert np.all(np.abs(rho - expect_rho) < N_SIGMA * se_rho + 5e-3 * np.abs(expect_rho)), (rho, expect_rho, se_rho)
    assert rho[-1] > rho[0] + 0.1  # correlation does grow with depth (a non-trivial comparison)


# ---------------------------------------------------------------- Monte Carlo: gradient formulas

N_JAC, D_JAC, S_JAC, RHO_JAC, JAC_RUNS = 8, 16, 1.0, 0.3, 3000


@pytest.fixture(scope="module")
def uniform_jacobian_samples() -> tuple[np.ndarray, np.ndarray]:
    """|dS/dWq|^2 and |dS/dWv|^2 under uniform attention, equicorrelated tokens, weights of variance 1/d."""
    q, v = [], []
    for seed in range(JAC_RUNS):
        g = torch.Generator().manual_seed(seed)
        x = equicorrelated_tokens(N_JAC, D_JAC, S_JAC, RHO_JAC, g, F64)
        wq, wk, wv = (torch.randn(D_JAC, D_JAC, generator=g, dtype=F64) / math.sqrt(D_JAC) for _ in range(3))
        gq, gv = attention_jacobian_sq_norms(x, wq, wk, wv, "uniform")
        q.append(float(gq))
        v.append(float(gv))
    return np.array(q), np.array(v)


def test_grad_v_formula_monte_carlo(uniform_jacobian_samples):
    _, v = uniform_jacobian_samples
    mean, se = v.mean(), v.std(ddof=1) / math.sqrt(len(v))
    expect = float(theory.grad_v_sq(N_JAC, D_JAC, S_JAC, RHO_JAC))  # exact expectation
    assert se / expect < 0.02
    assert abs(mean - expect) < N_SIGMA * se + 1e-3 * expect, (mean, expect, se)


def test_grad_q_formula_monte_carlo(uniform_jacobian_samples):
    """E|dS/dWq|^2 against the formula.

    Derivation (see test_measure.test_uniform_jacobian_closed_form): |dS/dWq|^2 = |X|^2 |Wv^T W Wk|^2 / (n^2 d)
    with W = X^T (I - 11^T/n) X = s^2 (1-rho) Wishart_d(n-1). Averaging the two factors SEPARATELY gives
    the closed-form formula; the exact mean is larger by the factor 1 + 4 (1-rho)/(n d), because |X|^2 and |W|^2
    are positively correlated (for a chi^2_N radius: E r^6 / (E r^2 E r^4) = (N + 4)/N, N = (n-1) d).
    At n = 8, d = 16 the factor is 1.022; at Fig 11's n = 32, d = 64 it is 1.0014.
    """
    q, _ = uniform_jacobian_samples
    mean, se = q.mean(), q.std(ddof=1) / math.sqrt(len(q))
    formula = float(theory.grad_q_sq(N_JAC, D_JAC, S_JAC, RHO_JAC))
    correction = 4 * (1 - RHO_JAC) / (N_JAC * D_JAC)
    assert se / formula < 0.02
    assert abs(mean - formula * (1 + correction)) < N_SIGMA * se + 1e-3 * formula, (mean, formula, se)
    # the formula itself, within the MC error plus its own (independence) approximation
    assert abs(mean - formula) < N_SIGMA * se + correction * formula, (mean, formula, se)


# ---------------------------------------------------------------- rank collapse: query/key gradients vanish


def _collapsed_input(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.randn(1, 1, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x.repeat(1, n, 1).requires_grad_(True)  # X = 1 x^T


@pytest.mark.parametrize("attention", ["uniform", "softmax"])
def test_rank_collapse_kills_query_key_gradients_in_attention(attention):
    cfg = ModelConfig(d_model=12, n_heads=3, n_layers=1, attention=attention, tau=1.3, out_proj=True)
    mha = MultiHeadAttention(cfg).to(F64)
    init_paper_(mha, cfg, torch.Generator().manual_seed(0))
    x = _collapsed_input(5, 12, seed=0)
    out = mha(x)
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    (out * target).sum().backward()
    big = max(mha.wv.weight.grad.abs().max().item(), x.grad.abs().max().item())
    assert mha.wv.weight.grad.norm().item() > 1e-3
    assert x.grad.norm().item() > 1e-3
    assert mha.wq.weight.grad.abs().max().item() < 1e-12 * big
    assert mha.wk.weight.grad.abs().max().item() < 1e-12 * big


@pytest.mark.parametrize("attention", ["uniform", "softmax"])
@pytest.mark.parametrize("norm", ["none", "post", "pre"])
def test_rank_collapse_kills_query_key_gradients_in_every_block(attention, norm):
    cfg = ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=3, norm=norm, attention=attention, activation="relu")
    stack = Stack(cfg).to(F64)
    stack.reset_parameters(torch.Generator().manual_seed(2))
    x = _collapsed_input(6, 16, seed=3)
    out, hidden = stack(x)
    for h in hidden:  # the representation stays rank one through every block
        torch.testing.assert_close(h[0], h[0, :1].expand_as(h[0]), rtol=1e-12, atol=1e-12)
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    (out * target).sum().backward()
    assert x.grad.norm().item() > 1e-3
    for block in stack.blocks:
        big = block.attn.wv.weight.grad.abs().max().item()
        assert big > 1e-4
        assert block.attn.wq.weight.grad.abs().max().item() < 1e-12 * max(big, 1.0)
        assert block.attn.wk.weight.grad.abs().max().item() < 1e-12 * max(big, 1.0)


def test_generic_input_gives_query_key_gradients():
    """Control for the two tests above: the same model on a non-collapsed input has Q/K gradients."""
    cfg = ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, norm="none", attention="uniform")
    stack = Stack(cfg).to(F64)
    x = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    out, _ = stack(x)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)).sum().backward()
    for block in stack.blocks:
        assert block.attn.wq.weight.grad.norm().item() > 1e-3
        assert block.attn.wk.weight.grad.norm().item() > 1e-3
