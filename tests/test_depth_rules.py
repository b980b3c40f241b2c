"""Fig S5: the published residual/init rules (sigprop.depth_rules, ModelConfig.residual_rule) against hand-computed
constants and weights, each rule's build against the paper's block with the alpha it reduces to (and a wrong
multiplier failing that check), the aggregation and the claims' checks on constructed tables."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sigprop import depth_rules
from sigprop.analysis import aggregate, checks
from sigprop.model import Stack, attention_weights, block_config
from sigprop.model.config import ResidualRule
from sigprop.tasks.init_time import residual_rules

TINY = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 8, "alpha": 1}


def _stack(rule: str, norm: str, seed: int = 0, **over) -> Stack:
    s = Stack(block_config({**TINY, "norm": norm, "residual_rule": rule, **over})).double()
    s.reset_parameters(torch.Generator().manual_seed(seed))
    return s


def test_constants_by_hand():
    assert depth_rules.gpt2_scale(8) == 0.25  # 1/sqrt(2 * 8)
    assert depth_rules.depth_mup_multiplier(16) == 0.25
    assert depth_rules.deepnorm_alpha(8) == pytest.approx(2.0)  # (2 * 8)^(1/4)
    assert depth_rules.deepnorm_beta(2) == pytest.approx(0.5)  # (8 * 2)^(-1/4)
    assert [depth_rules.layerscale_init(L) for L in (12, 18, 24, 36)] == [0.1, 0.1, 1e-5, 1e-6]
    # DeepNorm at init: alpha_eff = beta^2 / alpha = (8L)^(-1/2) (2L)^(-1/4); L = 8: 1/8 * 1/2
    assert depth_rules.reference("deepnorm", "post", 1, 8) == pytest.approx(1 / 16)
    assert depth_rules.reference("shaped", "none", "1/sqrt(L)", 8) is None


def test_regimes_sum_of_squared_branch_scales():
    depths = [6, 12, 24, 48, 96, 192]
    assert depth_rules.branch_scale_sq_sum("none", "pre", 1, 48) == 48
    assert depth_rules.branch_scale_sq_sum("gpt2", "pre", 1, 48) == pytest.approx(0.5)
    assert depth_rules.regime("none", "post", "1", depths) == "grows"
    for rule, norm, alpha in [("none", "post", "1/sqrt(L)"), ("gpt2", "pre", "1"), ("depth_mup", "pre", "1"),
                              ("deepnorm", "post", "1"), ("layerscale", "pre", "1"), ("zero_branch", "none", "1"),
                              ("shaped", "none", "1/sqrt(L)")]:
        assert depth_rules.regime(rule, norm, alpha, depths) == "bounded", rule


def test_schema_lists_every_rule():
    schema = yaml.safe_load(open("workflow/schemas/config.schema.yaml"))
    assert schema["$defs"]["params"]["properties"]["residual_rule"]["enum"] == list(get_args(ResidualRule))
    assert list(depth_rules.RULES) == list(get_args(ResidualRule))


def test_init_rescales_the_plain_builds_weights():
    plain_pre, plain_post = _stack("none", "pre"), _stack("none", "post")
    gpt2, deep = _stack("gpt2", "pre"), _stack("deepnorm", "post")
    mup, ls, zero = _stack("depth_mup", "pre"), _stack("layerscale", "pre"), _stack("zero_branch", "none")
    for b0, bg, bd, b0post, bm, bl, bz in zip(plain_pre.blocks, gpt2.blocks, deep.blocks, plain_post.blocks,
                                              mup.blocks, ls.blocks, zero.blocks):
        for name in ("wq", "wk", "wv"):
            assert torch.equal(getattr(bg.attn, name).weight, getattr(b0.attn, name).weight)
        assert torch.allclose(bg.attn.wo.weight, b0.attn.wo.weight / 4, rtol=0, atol=1e-15)  # 1/sqrt(2*8)
        assert torch.allclose(bg.ffn.w2.weight, b0.ffn.w2.weight / 4, rtol=0, atol=1e-15)
        assert torch.equal(bg.ffn.w1.weight, b0.ffn.w1.weight)
        beta = 64**-0.25  # (8 * 8)^(-1/4)
        for name in ("wq", "wk"):
            assert torch.equal(getattr(bd.attn, name).weight, getattr(b0post.attn, name).weight)
        for new, old in ((bd.attn.wv, b0post.attn.wv), (bd.attn.wo, b0post.attn.wo), (bd.ffn.w1, b0post.ffn.w1),
                         (bd.ffn.w2, b0post.ffn.w2)):
            assert torch.allclose(new.weight, old.weight * beta, rtol=1e-15, atol=0)
        assert float(bd.skip) == pytest.approx(16**0.25)
        assert float(bm.branch_mult) == pytest.approx(8**-0.5)
        assert all(torch.all(g == 0.1) for g in bl.layerscale) and len(bl.layerscale) == 2
        assert not bz.attn.wo.weight.any() and not bz.ffn.w2.weight.any() and bz.attn.wv.weight.any()
        assert b0.skip is None and b0.branch_mult is None and b0.layerscale is None


def test_plain_build_unchanged_by_the_option():
    """residual_rule none: no extra state, the same output as before the option existed (the paper's equations,
    tests/test_model.py); here: the state dict has only the family's keys."""
    keys = set(_stack("none", "post").state_dict())
    assert not any(k.endswith(("skip", "branch_mult")) or "layerscale" in k for k in keys)


# ---- each rule is the paper's block with some alpha at init (float64: rounding ~1e-15) ----

RULES_AND_REFERENCES = [("gpt2", "pre", 1e-12), ("depth_mup", "pre", 1e-12), ("layerscale", "pre", 1e-12),
                        ("zero_branch", "none", 1e-12), ("deepnorm", "post", 1e-4)]


@pytest.mark.parametrize(("rule", "norm", "tol"), RULES_AND_REFERENCES)
def test_rule_equals_the_paper_block_with_its_reference_alpha(rule, norm, tol):
    """DeepNorm's tolerance is LayerNorm's eps (1e-5): LN(a y) = LN(y) only up to a relative ~eps/2."""
    a = depth_rules.reference(rule, norm, 1, TINY["n_layers"])
    x = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        _, h_rule = _stack(rule, norm)(x)
        _, h_ref = _stack("none", norm, alpha=a)(x)
        _, h_plain = _stack("none", norm)(x)
    dev = max(float((r - p).norm() / p.norm()) for r, p in zip(h_rule, h_ref))
    assert dev < tol
    assert max(float((r - p).norm() / p.norm()) for r, p in zip(h_rule, h_plain)) > 1e-2  # the rule does something


def test_shaped_attention_is_identity_plus_softmax_minus_uniform():
    s = _stack("shaped", "none", alpha="1/sqrt(L)", n_heads=1)
    block = s.blocks[0]
    x = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    at = block.attn
    q, k = x[0] @ at.wq.weight.T, x[0] @ at.wk.weight.T
    a = attention_weights((q @ k.T / math.sqrt(16))[None], "softmax")[0]
    shaped = torch.eye(5, dtype=torch.float64) + a - 1.0 / 5
    assert torch.allclose(shaped.sum(-1), torch.ones(5, dtype=torch.float64))  # still row-stochastic in sum
    expect = shaped @ x[0] @ at.wv.weight.T @ at.wo.weight.T
    assert torch.allclose(block._self_attention(x, None, False, None)[0], expect, atol=1e-12)
    with pytest.raises(ValueError, match="unmasked encoders only"):
        block._self_attention(x, None, True, None)


@pytest.mark.parametrize(("over", "says"), [({"residual_rule": "deepnorm", "norm": "pre"}, "needs norm: post"),
                                            ({"residual_rule": "gpt2", "out_proj": False}, "needs out_proj: true"),
                                            ({"residual_rule": "shaped", "bias": True}, "needs bias: false"),
                                            ({"residual_rule": "admin"}, "use one of none, gpt2")])
def test_a_rule_outside_its_block_is_refused_naming_the_fix(over, says):
    with pytest.raises(ValueError, match=says):
        Stack(block_config({**TINY, "norm": "post", **over}))


# ---- the job, the equivalence check and a mutation that must fail it ----

JOB = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_tokens": 8, "vocab": 50, "activation": "relu",
       "attention": "softmax", "qk_fan": "d_model", "alpha": "1"}


def _figS5_table(rules: list[tuple[str, str]], depths=(4, 8), seeds=(0, 1, 2)) -> pd.DataFrame:
    frames = []
    for rule, norm in rules:
        for L in depths:
            p = {**JOB, "norm": norm, "residual_rule": rule, "n_layers": L}
            df = residual_rules(p, list(seeds))
            for k in ("norm", "alpha", "residual_rule", "n_layers"):
                df[k] = p[k]
            frames.append(df)
    return aggregate.figS5(pd.concat(frames, ignore_index=True))


def test_job_rows_paired_inputs_and_equivalence_row():
    p = {**JOB, "norm": "pre", "residual_rule": "gpt2", "n_layers": 4}
    df = residual_rules(p, [0, 1])
    assert set(df.metric) == {"cosine", "grad_wq", "grad_wk", "grad_wv", "grad_input", "grad_output", "equiv_dev"}
    assert len(df[df.metric == "equiv_dev"]) == 1  # the job's first seed
    plain = residual_rules({**p, "residual_rule": "none"}, [0, 1])
    c0 = lambda d: d[(d.metric == "cosine") & (d.layer == 0)].value.to_numpy()  # noqa: E731
    assert np.array_equal(c0(df), c0(plain))  # same seed, same tokens in every build
    assert not (plain.metric == "equiv_dev").any()


def test_equivalence_check_passes_and_a_wrong_multiplier_fails_it(monkeypatch):
    rules = [("gpt2", "pre"), ("depth_mup", "pre"), ("deepnorm", "post")]
    good = {c.name.split(":")[0]: c for c in checks.figS5(_figS5_table(rules)) if "hidden states equal" in c.name}
    assert len(good) == 3 and all(c.status == "passed" for c in good.values())
    # the model applies 1/L instead of 1/sqrt(L); the reference alpha (derived in depth_rules.reference) does not
    monkeypatch.setattr(depth_rules, "depth_mup_multiplier", lambda n: 1.0 / n)
    bad = [c for c in checks.figS5(_figS5_table([("depth_mup", "pre")])) if "hidden states equal" in c.name]
    assert [c.status for c in bad] == ["failed"] and bad[0].measured > 0.01


def test_aggregate_ratios_by_hand():
    rows = []
    for seed in (0, 1):
        for layer, (q, k, v) in {1: (1.0, 3.0, 4.0), 6: (0.5, 0.5, 2.0)}.items():
            rows += [{"seed": seed, "layer": layer, "metric": m, "value": val}
                     for m, val in (("grad_wq", q), ("grad_wk", k), ("grad_wv", v))]
        rows += [{"seed": seed, "layer": 6, "metric": "cosine", "value": 0.1 + seed},
                 {"seed": seed, "layer": 6, "metric": "grad_input", "value": 6.0},
                 {"seed": seed, "layer": 6, "metric": "grad_output", "value": 3.0}]
    raw = pd.DataFrame(rows).assign(residual_rule="none", norm="pre", alpha="1", n_layers=6)
    t = aggregate.figS5(raw).set_index("metric")
    assert t.loc["qk_v_first", "mean"] == pytest.approx(0.5)  # (1 + 3) / (2 * 4)
    assert t.loc["qk_v_last", "mean"] == pytest.approx(0.25)  # (0.5 + 0.5) / (2 * 2)
    assert t.loc["grad_in_out", "mean"] == pytest.approx(2.0)
    assert t.loc["cosine_last", "mean"] == pytest.approx(0.6)
    assert t.loc["cosine_last", "regime"] == "grows" and "equiv_dev" not in t.index  # sum alpha^2 = 6 > 2


def _claims_table(cos: dict[int, list[float]], rule="gpt2", norm="pre") -> pd.DataFrame:
    rows = [{"residual_rule": rule, "norm": norm, "alpha": "1", "depth": d, "metric": "cosine_last",
             "mean": float(np.mean(v)), "seeds": np.arange(len(v)), "seed_values": np.asarray(v, float),
             "label": rule, "regime": depth_rules.regime(rule, norm, "1", list(cos))} for d, v in cos.items()]
    return pd.DataFrame(rows)


def test_bounded_claim_passes_levelled_off_and_fails_when_the_cosine_collapses():
    rng = np.random.default_rng(0)
    flat = {d: list(0.3 + 0.01 * rng.standard_normal(8)) for d in (6, 12, 24)}
    assert [c.status for c in checks.figS5(_claims_table(flat))] == ["passed"]
    collapsing = {6: list(0.5 + 0.01 * rng.standard_normal(8)), 12: list(0.8 + 0.01 * rng.standard_normal(8)),
                  24: list(0.999 + 0.0001 * rng.standard_normal(8))}
    assert [c.status for c in checks.figS5(_claims_table(collapsing))] == ["failed"]
    # the same cosines for a build whose sum alpha^2 grows: the prediction (rises until collapsed) passes
    assert [c.status for c in checks.figS5(_claims_table(collapsing, "none", "pre"))] == ["passed"]
    noisy = {6: [0.3, 0.5], 12: [0.2, 0.6], 24: [0.1, 0.9]}  # two seeds, wide spread
    assert [c.status for c in checks.figS5(_claims_table(noisy))] == ["undecided"]


def test_report_table_last_layer_cosine_per_build_and_depth(tmp_path):
    from sigprop.analysis import report

    t = pd.concat([_claims_table({6: [0.2, 0.4], 12: [0.3, 0.5]}),
                   _claims_table({6: [0.9, 0.9], 12: [1.0, 1.0]}, "none", "pre").assign(label=r"PRE-LN $\alpha=1$")])
    t.to_parquet(tmp_path / "figS5.parquet")
    table = report.residual_rules_table(tmp_path / "figS5.parquet").set_index("build")
    assert table.loc["PRE-LN alpha=1", "regime"] == "grows" and table.loc["gpt2", "regime"] == "bounded"
    assert table.loc["gpt2", "L = 6"] == pytest.approx(0.3) and table.loc["PRE-LN alpha=1", "L = 12"] == 1.0
