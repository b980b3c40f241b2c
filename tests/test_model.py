"""The model family of docs/init-time.md: residual scales, forward pass, initialisation, uniform attention, seeds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian

from sigprop.model import (
    KVCache,
    ModelConfig,
    MultiHeadAttention,
    Stack,
    attention_weights,
    block_config,
    resolve_alpha,
)
from sigprop.model import functional as model_functional
from sigprop.model.functional import causal_mask

F64 = torch.float64

# ---------------------------------------------------------------- residual scales


@pytest.mark.parametrize(
    ("alpha", "n_layers", "expect"),
    [
        ("1/sqrt(L)", 16, 0.25),
        (" 1 / sqrt(L) ", 4, 0.5),
        ("1/sqrt(L)", 48, 1 / math.sqrt(48)),
        ("0.5", 3, 0.5),
        ("1", 7, 1.0),
        (2, 5, 2.0),
        (0.25, 5, 0.25),
    ],
)
def test_resolve_alpha(alpha, n_layers, expect):
    got = resolve_alpha(alpha, n_layers)
    assert isinstance(got, float)
    assert got == pytest.approx(expect, rel=1e-15)


@pytest.mark.parametrize("bad", ["1/sqrt(d)", "abc", "sqrt(L)", ""])
def test_resolve_alpha_bad_string_names_the_fix(bad):
    with pytest.raises(ValueError, match=r"1/sqrt\(L\)") as err:
        resolve_alpha(bad, 4)
    assert "number" in str(err.value)


def test_block_config_takes_fields_alpha_for_both_scales_and_overrides_last():
    cfg = block_config({"d_model": 8, "n_heads": 2, "alpha": "1/sqrt(L)", "vocab": 5, "seed": 3}, n_layers=3)
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers) == (8, 2, 3)  # vocab and seed are not ModelConfig fields
    assert cfg.alpha1 == cfg.alpha2 == "1/sqrt(L)"
    assert block_config({"alpha1": 0.5}).alpha2 == ModelConfig().alpha2  # alpha1 alone leaves alpha2
    assert block_config({"alpha": 1.0}, alpha2=0.0).alpha2 == 0.0 and block_config({}) == ModelConfig()


# ---------------------------------------------------------------- forward pass against the paper's equations


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:])  # LayerNorm at init: weight 1, bias 0, eps 1e-5


def _reference_block(block, x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """One block written from the paper: Z = a1 S(X) + X, Y = W2 sigma(W1 Z), X' = a2 Y + Z (plus LN placement)."""

    def attention(u):
        heads = []
        for h in range(cfg.n_heads):
            cols = slice(h * cfg.d_k, (h + 1) * cfg.d_k)
            wq, wk, wv = (getattr(block.attn, name).weight[cols].T for name in ("wq", "wk", "wv"))
            logits = cfg.tau / math.sqrt(cfg.d_k) * (u @ wq) @ (u @ wk).transpose(-2, -1)
            a = torch.softmax(logits, -1) if cfg.attention == "softmax" else torch.full_like(logits, 1 / u.shape[-2])
            heads.append(a @ u @ wv)
        s = torch.cat(heads, dim=-1)
        return s @ block.attn.wo.weight.T if cfg.out_proj else s

    def ffn(z):
        h = z @ block.ffn.w1.weight.T
        return (F.relu(h) if cfg.activation == "relu" else h) @ block.ffn.w2.weight.T

    a1, a2 = resolve_alpha(cfg.alpha1, cfg.n_layers), resolve_alpha(cfg.alpha2, cfg.n_layers)
    if cfg.norm == "pre":
        z = a1 * attention(_layer_norm(x)) + x
        return a2 * ffn(_layer_norm(z)) + z
    ln = _layer_norm if cfg.norm == "post" else (lambda v: v)
    z = ln(a1 * attention(x) + x)
    return ln(a2 * ffn(z) + z)


@pytest.mark.parametrize("norm", ["none", "post", "pre"])
@pytest.mark.parametrize(
    "extra",
    [
        dict(attention="softmax", activation="relu", n_heads=2, out_proj=True),
        dict(attention="uniform", activation="linear", n_heads=1, out_proj=False),
    ],
)
def test_forward_matches_paper_equations(norm, extra):
    # alphas exactly representable in float32 (the alpha buffers are created in the default dtype)
    cfg = ModelConfig(d_model=8, d_ff=12, n_layers=4, norm=norm, alpha1=0.75, alpha2="1/sqrt(L)", tau=1.9, **extra)
    stack = Stack(cfg).to(F64)
    stack.reset_parameters(torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        out, hidden = stack(x)
    assert len(hidden) == cfg.n_layers + 1
    assert hidden[0] is x or torch.equal(hidden[0], x)
    ref = x
    for layer, block in enumerate(stack.blocks, start=1):
        ref = _reference_block(block, ref, cfg)
        torch.testing.assert_close(hidden[layer], ref, rtol=1e-10, atol=1e-12)
    if norm == "pre":
        torch.testing.assert_close(out, _layer_norm(hidden[-1]), rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(out, hidden[-1], rtol=0, atol=0)


def test_preln_output_has_final_layer_norm_and_postln_states_are_normalised():
    x = 3.0 * torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(2), dtype=F64) + 1.0
    pre = Stack(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=4, norm="pre")).to(F64)
    with torch.no_grad():
        out, hidden = pre(x)
    torch.testing.assert_close(out.mean(-1), torch.zeros(1, 7, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(1, 7, dtype=F64), rtol=1e-4, atol=0)
    assert (hidden[-1].var(-1, unbiased=False) - 1).abs().max() > 0.1  # the residual stream itself is not normalised
    post = Stack(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=4, norm="post")).to(F64)
    with torch.no_grad():
        out, hidden = post(x)
    for h in hidden[1:]:
        torch.testing.assert_close(h.mean(-1), torch.zeros(1, 7, dtype=F64), rtol=0, atol=1e-12)
        torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(1, 7, dtype=F64), rtol=1e-4, atol=0)
    assert isinstance(post.final_norm, nn.Identity)


# ---------------------------------------------------------------- initialisation


def _pooled(stack: Stack, path: str) -> torch.Tensor:
    """One weight (e.g. 'attn.wq') of every block, flattened and concatenated."""
    return torch.cat([block.get_submodule(path).weight.detach().flatten() for block in stack.blocks]).double()


def _assert_variance(w: torch.Tensor, var: float, name: str) -> None:
    # sample variance of N Gaussians: relative SE sqrt(2/N) (<= 0.7% here); tolerance 5%
    assert w.var().item() == pytest.approx(var, rel=0.05), name
    assert abs(w.mean().item()) < 5 * math.sqrt(var / w.numel()), name


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_init_variances_paper(activation):
    d, heads, d_ff = 128, 4, 256
    cfg = ModelConfig(d_model=d, n_heads=heads, d_ff=d_ff, n_layers=3, activation=activation, bias=True)
    stack = Stack(cfg)
    stack.reset_parameters(torch.Generator().manual_seed(0))
    d_k = d // heads
    _assert_variance(_pooled(stack, "attn.wq"), 1 / d_k, "Wq: 1/d_k")
    _assert_variance(_pooled(stack, "attn.wk"), 1 / d_k, "Wk: 1/d_k")
    _assert_variance(_pooled(stack, "attn.wv"), 1 / d, "Wv: 1/d_model")
    _assert_variance(_pooled(stack, "attn.wo"), 1 / (heads * d_k), "Wo: 1/fan_in")
    _assert_variance(_pooled(stack, "ffn.w1"), (2 if activation == "relu" else 1) / d, "W1: gain/d_model")
    _assert_variance(_pooled(stack, "ffn.w2"), 1 / d_ff, "W2: 1/d_ff")
    for name, p in stack.named_parameters():
        if name.endswith("bias") and "norms" not in name:
            assert torch.count_nonzero(p) == 0, name
    assert not torch.equal(stack.blocks[0].attn.wq.weight, stack.blocks[0].attn.wk.weight)
    assert not torch.equal(stack.blocks[0].attn.wq.weight, stack.blocks[1].attn.wq.weight)


def test_init_variances_glorot_and_qk_fan():
    d, heads = 128, 4
    glorot = Stack(ModelConfig(d_model=d, n_heads=heads, d_ff=64, n_layers=3, init="glorot"))
    glorot.reset_parameters(torch.Generator().manual_seed(1))
    _assert_variance(_pooled(glorot, "attn.wq"), 2 / (d + d // heads), "Glorot Wq")
    _assert_variance(_pooled(glorot, "attn.wk"), 2 / (d + d // heads), "Glorot Wk")
    _assert_variance(_pooled(glorot, "attn.wv"), 1 / d, "Wv unchanged by Glorot")
    fan = Stack(ModelConfig(d_model=d, n_heads=heads, d_ff=64, n_layers=3, qk_fan="d_model"))
    fan.reset_parameters(torch.Generator().manual_seed(2))
    _assert_variance(_pooled(fan, "attn.wq"), 1 / d, "qk_fan=d_model")


# ---------------------------------------------------------------- uniform attention: value 1/n, softmax derivative


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e8])
def test_uniform_attention_value_is_exactly_one_over_n(dtype, scale):
    n = 7
    logits = scale * torch.randn(2, 3, n, n, generator=torch.Generator().manual_seed(0), dtype=dtype)
    a = attention_weights(logits.requires_grad_(True), "uniform")
    assert torch.equal(a, torch.full_like(a, 1.0 / n))


def test_uniform_attention_gradient_is_softmax_jacobian_at_uniform_point():
    rows, n = 3, 5
    logits = torch.randn(rows, n, generator=torch.Generator().manual_seed(0), dtype=F64) * 4
    got = jacobian(lambda z: attention_weights(z, "uniform"), logits)
    expect = jacobian(lambda z: torch.softmax(z, -1), torch.zeros(rows, n, dtype=F64))
    assert got.shape == (rows, n, rows, n)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-15)
    # the same by hand: (1/n)(I - 11^T/n) within a row, zero across rows
    block = (torch.eye(n, dtype=F64) - 1.0 / n) / n
    for i in range(rows):
        for j in range(rows):
            expect_ij = block if i == j else torch.zeros_like(block)
            torch.testing.assert_close(got[i, :, j, :], expect_ij, rtol=0, atol=1e-15)
    # a constant A = 1/n would have no derivative at all: make sure this is not that
    assert got.abs().max() > 0.1


def test_attention_weights_softmax_and_bad_kind():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(attention_weights(logits, "softmax"), torch.softmax(logits, -1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="softmax"):
        attention_weights(logits, "hard")


def test_uniform_attention_rejects_masks():
    cfg = ModelConfig(d_model=8, n_heads=2, n_layers=1, attention="uniform")
    x = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="uniform"):
        Stack(cfg)(x, causal=True)


# ---------------------------------------------------------------- trainable residual scales


def test_trainable_alpha_are_parameters_with_gradients():
    cfg = ModelConfig(d_model=8, n_heads=2, d_ff=16, n_layers=4, alpha1="1/sqrt(L)", alpha2=0.3, trainable_alpha=True)
    stack = Stack(cfg)
    names = {n for n, _ in stack.named_parameters()}
    for i, block in enumerate(stack.blocks):
        assert isinstance(block.alpha1, nn.Parameter) and isinstance(block.alpha2, nn.Parameter)
        assert {f"blocks.{i}.alpha1", f"blocks.{i}.alpha2"} <= names
        assert block.alpha1.item() == pytest.approx(0.5) and block.alpha2.item() == pytest.approx(0.3)
    out, _ = stack(torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(0)))
    out.pow(2).sum().backward()
    assert all(b.alpha1.grad is not None and b.alpha1.grad.abs() > 0 for b in stack.blocks)
    assert all(b.alpha2.grad is not None and b.alpha2.grad.abs() > 0 for b in stack.blocks)


def test_fixed_alpha_are_buffers_not_parameters():
    stack = Stack(ModelConfig(d_model=8, n_heads=2, d_ff=16, n_layers=4, alpha1=0.5, alpha2="1/sqrt(L)"))
    assert not any("alpha" in n for n, _ in stack.named_parameters())
    buffers = dict(stack.named_buffers())
    assert buffers["blocks.0.alpha1"].item() == 0.5 and buffers["blocks.3.alpha2"].item() == 0.5


# ---------------------------------------------------------------- reproducibility


def test_same_generator_seed_same_weights():
    cfg = ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=3, norm="post")
    a, b = Stack(cfg), Stack(cfg)
    a.reset_parameters(torch.Generator().manual_seed(42))
    b.reset_parameters(torch.Generator().manual_seed(42))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    b.reset_parameters(torch.Generator().manual_seed(43))
    assert not torch.equal(a.blocks[0].attn.wq.weight, b.blocks[0].attn.wq.weight)
    # and the forward pass is deterministic
    x = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(0))
    b.reset_parameters(torch.Generator().manual_seed(42))
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x)[0])


# ---------------------------------------------------------------- key/value cache


def test_kv_cache_self_attention_in_steps_equals_causal_attention_and_cross_keys_are_computed_once():
    cfg = ModelConfig(d_model=16, n_heads=2, n_layers=1, tau=1.5, bias=True)
    attn = MultiHeadAttention(cfg).to(F64)
    g = torch.Generator().manual_seed(0)
    x, memory = torch.randn(3, 6, 16, generator=g, dtype=F64), torch.randn(3, 4, 16, generator=g, dtype=F64)
    pad = torch.tensor([[False] * 4, [False, False, True, True], [False] * 3 + [True]])
    cache = KVCache()
    steps = torch.cat([attn(x[:, t : t + 1], causal=True, cache=cache) for t in range(6)], dim=1)
    torch.testing.assert_close(steps, attn(x, causal=True), rtol=1e-12, atol=1e-12)
    assert len(cache) == 6 and cache.k.shape == (3, 2, 6, 8)
    cross = KVCache()
    first = attn(x[:, :2], memory, pad, cache=cross)
    torch.testing.assert_close(first, attn(x[:, :2], memory, pad), rtol=1e-12, atol=1e-12)
    # later calls read the memory's keys and values from the cache, not from the memory passed
    later = attn(x[:, 2:], torch.zeros_like(memory), pad, cache=cross)
    torch.testing.assert_close(later, attn(x[:, 2:], memory, pad), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(later, attn(x[:, 2:], torch.zeros_like(memory), pad))
    rows = torch.tensor([2, 0])
    cross.reorder(rows)  # beam search's reordering: the memory rows follow
    torch.testing.assert_close(attn(x[rows, 2:], memory[rows], pad[rows], cache=cross),
                               attn(x[rows, 2:], memory[rows], pad[rows]), rtol=1e-12, atol=1e-12)

def test_kv_cache_with_uniform_attention_says_it_needs_softmax():
    attn = MultiHeadAttention(ModelConfig(d_model=8, n_heads=2, n_layers=1, attention="uniform"))
    with pytest.raises(ValueError, match="softmax"):
        attn(torch.randn(1, 2, 8), cache=KVCache())


def test_causal_mask_lets_the_last_n_of_m_positions_see_every_earlier_key():
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # cached decoding: 2 new queries after 3 cached positions see the cached keys and, causally, each other
    assert causal_mask(2, 5).tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


@pytest.mark.parametrize("fast", [False, True])
def test_kv_cache_several_positions_per_step_equal_causal_attention(fast, monkeypatch):
    """A non-square causal mask (n new queries, m > n keys): feeding 3, then 2, then 1 positions gives the rows of
    full causal attention, on SDPA's path and on the fast path's explicit scores (attention dropout on the CPU,
    here the identity); a mask aligned with the first key instead would hide the cached keys."""
    monkeypatch.setattr(model_functional, "dropout", lambda x, p, training: x)
    cfg = ModelConfig(d_model=16, n_heads=2, n_layers=1, tau=1.5, bias=True, attn_dropout=0.1 if fast else 0.0,
                      fast=fast)
    attn = MultiHeadAttention(cfg).to(F64).train()
    x = torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(1), dtype=F64)
    full = attn(x, causal=True)
    cache = KVCache()
    steps = torch.cat([attn(x[:, a:b], causal=True, cache=cache) for a, b in ((0, 3), (3, 5), (5, 6))], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-12, atol=1e-12)
    # the path taken is the one named: with fast on, the explicit scores (not SDPA) ran
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    attn(x[:, :2], causal=True, cache=KVCache())
    assert calls == ([] if fast else [1])


@pytest.mark.parametrize(("init", "paper_inits"), [("fairseq", 0), ("tfixup", 0), ("paper", 2)])
def test_encoder_decoder_draws_each_weight_once(init, paper_inits, monkeypatch):
    """Its stacks leave the paper's init to the model's own (one per stack under init='paper', none otherwise)."""
    from sigprop.model import EncoderDecoder, Seq2SeqConfig
    from sigprop.model import stack as stack_module

    calls = []
    real = stack_module.init_paper_
    monkeypatch.setattr(stack_module, "init_paper_", lambda *a, **k: calls.append(1) or real(*a, **k))
    block = ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2)
    EncoderDecoder(Seq2SeqConfig(block=block, vocab=20, init=init), torch.Generator().manual_seed(0))
    assert len(calls) == paper_inits
    Stack(block)  # a stack on its own draws the paper's init when built
    assert len(calls) == paper_inits + 1
