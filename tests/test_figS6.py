"""Fig S6: the closed recursion of the expected Gram matrix under any fixed attention matrix (docs/init-time.md)
against hand-computed cases, the uniform-attention closed forms and Monte Carlo of the model code; its checks
pass on the right build and fail on a mutated one (attention applied as A^T)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sigprop.analysis import aggregate, checks, theory
from sigprop.patterns import PATTERNS, attention_pattern
from sigprop.tasks import init_time
from sigprop.tasks.init_time import run_point

N_SIGMA = 4.0

# ---------------------------------------------------------------- the patterns and the recursion by hand


def test_patterns_are_row_stochastic_with_the_stated_support():
    for kind in PATTERNS:
        a = attention_pattern(kind, 7, 2)
        np.testing.assert_allclose(a.sum(1), 1.0)
    causal = attention_pattern("causal", 4)
    np.testing.assert_allclose(causal[3], [0.25] * 4)
    np.testing.assert_allclose(causal[1], [0.5, 0.5, 0, 0])
    assert np.allclose(np.triu(causal, 1), 0)
    band = attention_pattern("banded", 5, 1)
    np.testing.assert_allclose(band[0], [0.5, 0.5, 0, 0, 0])
    np.testing.assert_allclose(band[2], [0, 1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(attention_pattern("bidirectional", 3), np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="use one of bidirectional, causal, banded"):
        attention_pattern("sliding", 3)
    with pytest.raises(ValueError, match="band -1 < 0"):
        attention_pattern("banded", 3, -1)


def test_recursion_one_step_by_hand():
    # n = 2, causal: token 1 keeps itself, token 2 averages both
    g0 = np.array([[2.0, 0.5], [0.5, 1.0]])
    a = attention_pattern("causal", 2)
    a1, a2 = 0.5, 2.0
    aga = np.array([[2.0, 1.25], [1.25, 1.0]])  # A G A^T: [g11, (g11+g12)/2; ., (g11+2 g12+g22)/4]
    np.testing.assert_allclose(a @ g0 @ a.T, aga)
    g1 = theory.gram_expectation(g0, a, 1, a1, a2)[1]
    np.testing.assert_allclose(g1, 5.0 * (g0 + 0.25 * aga))
    assert float(theory.gram_sq_norm(g1)) == pytest.approx(5.0 * (3.0 + 0.25 * 3.0))
    cos = 5.0 * (0.5 + 0.25 * 1.25) / math.sqrt(g1[0, 0] * g1[1, 1])
    assert float(theory.gram_correlation(g1)) == pytest.approx(cos)


def test_bidirectional_recursion_is_the_uniform_closed_form():
    rng = np.random.default_rng(0)
    n, depth = 6, np.arange(9)
    x = rng.standard_normal((n, 4))
    g0 = x @ x.T
    for a1, a2 in ((1.0, 1.0), (0.3, 0.7)):
        g = theory.gram_expectation(g0, attention_pattern("bidirectional", n), 8, a1, a2)
        np.testing.assert_allclose(theory.gram_sq_norm(g), theory.sq_norm(n, np.trace(g0), g0.sum(), depth, a1, a2),
                                   rtol=1e-12)
        np.testing.assert_allclose(g.sum((1, 2)), theory.inner_products(g0.sum(), depth, a1, a2), rtol=1e-12)


# ---------------------------------------------------------------- Monte Carlo of the model code

FIXED = dict(d_model=16, n_heads=1, d_ff=16, n_layers=3, n_tokens=5, norm="none", activation="linear",
             out_proj=False, dtype="float64", input_seed=0, input_std=1.0, band=1)
MC_SEEDS = 400


def _grams(raw: pd.DataFrame, n: int) -> np.ndarray:
    return aggregate._gram_matrices(raw, n)[0]


@pytest.mark.parametrize(("pattern", "alpha"), [("causal", "1"), ("banded", "1/sqrt(L)")])
def test_expected_gram_matrix_matches_the_recursion_by_monte_carlo(pattern, alpha):
    raw = init_time.fixed_attention({**FIXED, "pattern": pattern, "alpha": alpha}, list(range(MC_SEEDS)))
    n, depth = FIXED["n_tokens"], FIXED["n_layers"]
    gram = _grams(raw, n)  # (seeds, L+1, n, n)
    a = 1.0 if alpha == "1" else 1 / math.sqrt(depth)
    expect = theory.gram_expectation(gram[:, 0].mean(0), attention_pattern(pattern, n, 1), depth, a, a)
    mean, se = gram.mean(0), gram.std(0, ddof=1) / math.sqrt(MC_SEEDS)
    scale = np.sqrt(np.einsum("lii,ljj->lij", expect, expect))  # sqrt(G_ii G_jj): the entries' natural scale
    assert np.all(se[1:] / scale[1:] < 0.1), "MC too noisy to test anything"
    assert np.all(np.abs(mean - expect) < N_SIGMA * se + 5e-3 * scale), (mean - expect) / se


# ---------------------------------------------------------------- the checks: right build passes, mutation fails

S6_FIXED = {**FIXED, "d_model": 32, "d_ff": 32, "n_layers": 4, "n_tokens": 6}


def _figS6_table(seeds: int = 150) -> pd.DataFrame:
    raw = pd.concat([run_point("fixed_attention", S6_FIXED, {"alpha": a}, {"pattern": ["bidirectional", "causal"]},
                               list(range(seeds))) for a in ("1", "1/sqrt(L)")], ignore_index=True)
    return aggregate.figS6(raw)


@pytest.fixture(scope="module")
def s6_table() -> pd.DataFrame:
    return _figS6_table()


def test_figS6_table_layer_zero_is_the_input_and_pseudo_values_average_to_the_estimate():
    t = _figS6_table(20)
    zero = t[t.layer == 0]
    np.testing.assert_allclose(zero["mean"], zero.theory, rtol=1e-9, atol=1e-12)
    r = t[(t.metric == "sq_norm") & (t.layer == 2)].iloc[0]
    assert np.mean(r.seed_values) == pytest.approx(r["mean"]) and len(r.seeds) == 20


@pytest.mark.slow
def test_figS6_theory_checks_pass_on_the_build_and_fail_on_a_mutation(s6_table, monkeypatch):
    rows = checks.figS6(s6_table)
    band = [c for c in rows if "vs closed recursion" in c.name]
    assert len(band) == 8 and all(c.status in ("passed", "undecided") for c in band), [c.tolerance for c in band]
    assert any(c.passed for c in band if "causal" in c.name)
    # mutation: the blocks attend with A^T (a transposed pattern: token i sums the tokens that attend to it)
    monkeypatch.setattr(init_time, "attention_pattern", lambda kind, n, band=1: attention_pattern(kind, n, band).T)
    mutated = checks.figS6(_figS6_table())
    causal = [c for c in mutated if c.name.startswith("figS6 causal") and "vs closed recursion" in c.name]
    assert any(c.status == "failed" for c in causal), [c.tolerance for c in causal]
    bidirectional = [c for c in mutated if c.name.startswith("figS6 bidirectional")]  # A = A^T: unchanged
    assert not any(c.status == "failed" for c in bidirectional)


@pytest.mark.slow
def test_figS6_causal_against_bidirectional_check_follows_the_measurement(s6_table):
    t = s6_table
    rows = [c for c in checks.figS6(t) if "causal attention collapses" in c.name]
    assert len(rows) == 2 and all(c.status == "passed" for c in rows), [c.tolerance for c in rows]
    # swap the two patterns' measurements (not the theory): the measured difference contradicts the prediction
    swapped = t.copy()
    last = swapped.layer == swapped.layer.max()
    sel = last & (swapped.metric == "correlation")
    c, b = sel & (swapped.pattern == "causal"), sel & (swapped.pattern == "bidirectional")
    cols = ["mean", "seed_values"]
    cv, bv = swapped.loc[c, cols].to_numpy(), swapped.loc[b, cols].to_numpy()
    swapped.loc[c, cols], swapped.loc[b, cols] = bv, cv
    assert all(c.status == "failed" for c in checks.figS6(swapped) if "causal attention collapses" in c.name)
