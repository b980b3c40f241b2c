"""The encoder-decoder (sigprop.model) as the translation task builds it: causal decoder, masked source
padding, fairseq and T-Fixup initialisation, ReZero, the temperature reaching every attention."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import src_batch, tiny_model

from sigprop.model import EncoderDecoder, ModelConfig, Seq2SeqConfig
from sigprop.tasks.translation import methods

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("norm", ["post", "pre", "none"])
def test_decoder_is_causal(norm):
    model = tiny_model(norm)
    src = src_batch()
    prev = torch.randint(4, 40, (5, 8), generator=torch.Generator().manual_seed(3))
    logits, states = model(src, prev)
    changed = prev.clone()
    changed[:, 5] = (changed[:, 5] + 7) % 36 + 4  # change a future target token
    logits2, states2 = model(src, changed)
    torch.testing.assert_close(logits[:, :5], logits2[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(logits[:, 5:], logits2[:, 5:])
    for h, h2 in zip(states["decoder"], states2["decoder"], strict=True):
        torch.testing.assert_close(h[:, :5], h2[:, :5], rtol=0, atol=1e-6)
    assert len(states["encoder"]) == len(states["decoder"]) == 3  # embedding + 2 blocks


def test_source_padding_is_masked():
    model = tiny_model()
    src = src_batch()
    prev = torch.full((5, 4), 2)
    out, _ = model(src, prev)
    longer = torch.cat([src, torch.ones(5, 3, dtype=torch.long)], dim=1)  # more padding
    out2, _ = model(longer, prev)
    torch.testing.assert_close(out, out2, rtol=0, atol=1e-5)


def _std(weights) -> float:
    return float(torch.cat([w.detach().flatten() for w in weights]).std())


def _xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    return gain * math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3)  # Xavier-uniform bound / sqrt(3)


@torch.no_grad()
def test_shared_embeddings_and_tfixup_scales():
    """T-Fixup as the authors' code: Wq, Wk Xavier with gain 1/sqrt(2) (unscaled), Wv gain 1 times the scale."""
    model = tiny_model(init="tfixup", layers=4)
    assert model.embed.weight[1].abs().sum() == 0  # padding row
    n, d, ff = 4, 32, 64
    xavier = _xavier_std(d, d)  # square matrices
    enc, dec = model.encoder.blocks, model.decoder.blocks
    assert _std(b.attn.wq.weight for b in enc) == pytest.approx(xavier * 2**-0.5, rel=0.05)
    assert _std(b.attn.wk.weight for b in enc) == pytest.approx(xavier * 2**-0.5, rel=0.05)
    assert _std(b.cross.wq.weight for b in dec) == pytest.approx(xavier * 2**-0.5, rel=0.05)
    assert _std(b.attn.wv.weight for b in enc) == pytest.approx(xavier * 0.67 * n**-0.25, rel=0.05)
    assert _std(b.attn.wo.weight for b in enc) == pytest.approx(xavier * 0.67 * n**-0.25, rel=0.05)
    assert _std(b.ffn.w1.weight for b in enc) == pytest.approx(_xavier_std(d, ff) * 0.67 * n**-0.25, rel=0.05)
    assert _std(b.cross.wv.weight for b in dec) == pytest.approx(xavier * (9 * n) ** -0.25, rel=0.05)
    assert _std(b.ffn.w2.weight for b in dec) == pytest.approx(_xavier_std(ff, d) * (9 * n) ** -0.25, rel=0.05)
    assert all(float(b.ffn.w1.bias.abs().max()) == 0 for b in enc)  # fairseq 0.9's Linear(): bias 0
    assert float(model.embed.weight.std()) == pytest.approx(d**-0.5 * (9 * n) ** -0.25, rel=0.1)


@torch.no_grad()
def test_fairseq_init_is_fairseq_0_10s():
    """q/k/v Xavier gain 1/sqrt(2) with nn.Linear's default biases, out_proj Xavier with bias 0, fc1/fc2 nn.Linear's
    default U(+-1/sqrt(fan_in)) for weight and bias (fairseq >= 0.10), embeddings N(0, 1/d)."""
    model = tiny_model(init="fairseq", layers=4)
    d, ff = 32, 64
    blocks = [*model.encoder.blocks, *model.decoder.blocks]
    attns = [b.attn for b in blocks] + [b.cross for b in model.decoder.blocks]
    for name in ("wq", "wk", "wv"):
        assert _std(getattr(a, name).weight for a in attns) == pytest.approx(_xavier_std(d, d, 2**-0.5), rel=0.05)
        assert _std(getattr(a, name).bias for a in attns) == pytest.approx((3 * d) ** -0.5, rel=0.1)
    assert _std(a.wo.weight for a in attns) == pytest.approx(_xavier_std(d, d), rel=0.05)
    assert all(float(a.wo.bias.abs().max()) == 0 for a in attns)
    assert _std(b.ffn.w1.weight for b in blocks) == pytest.approx((3 * d) ** -0.5, rel=0.05)  # U(+-1/sqrt(d))
    assert _std(b.ffn.w2.weight for b in blocks) == pytest.approx((3 * ff) ** -0.5, rel=0.05)
    assert float(torch.cat([b.ffn.w1.bias for b in blocks]).abs().max()) <= d**-0.5
    assert _std(b.ffn.w1.bias for b in blocks) == pytest.approx((3 * d) ** -0.5, rel=0.15)
    assert float(model.embed.weight[2:].std()) == pytest.approx(d**-0.5, rel=0.05)


def test_rezero_has_one_trainable_scalar_per_block():
    """shared_alpha: one Parameter per block for all its sub-layers, whose gradient is the sum of those of the
    two separate scalars of the same model (the chain rule through alpha1 and alpha2)."""
    cfg = methods.model_config({"d_model": 32, "n_heads": 4, "d_ff": 64},
                               {"norm": "none", "alpha": 0.3, "trainable_alpha": True, "shared_alpha": True}, 3, 40)
    torch.manual_seed(0)
    shared = EncoderDecoder(cfg)
    scalars = [p for p in shared.parameters() if p.dim() == 0]
    assert len(scalars) == 3 + 3 and all(b.alpha1 is b.alpha2 for b in (*shared.encoder.blocks, *shared.decoder.blocks))
    cfg.block.shared_alpha = False
    torch.manual_seed(0)
    separate = EncoderDecoder(cfg)
    assert len([p for p in separate.parameters() if p.dim() == 0]) == 2 * 6
    separate.load_state_dict(shared.state_dict())  # the same weights (state_dict lists alpha2 for both)
    src, prev = src_batch(), src_batch(2)
    for m in (shared.eval(), separate.eval()):
        logits, _ = m(src, prev)
        logits.square().mean().backward()
    for bs, bp in zip(shared.decoder.blocks, separate.decoder.blocks, strict=True):
        assert float(bs.alpha1.grad) == pytest.approx(float(bp.alpha1.grad + bp.alpha2.grad), rel=1e-4)
    opt = torch.optim.SGD(shared.parameters(), lr=0.1)
    opt.step()
    assert all(b.alpha1 is b.alpha2 for b in shared.encoder.blocks)
    bad = ModelConfig(d_model=8, n_heads=2, d_ff=8, n_layers=1, alpha1=1.0, alpha2=0.5, shared_alpha=True)
    with pytest.raises(ValueError, match="shared_alpha needs alpha1 = alpha2"):
        EncoderDecoder(Seq2SeqConfig(block=bad, vocab=10))


def test_set_tau_reaches_every_attention():
    model = tiny_model()
    model.set_tau(3.5)
    taus = [m.tau for m in model.modules() if hasattr(m, "tau")]
    assert len(taus) == 2 * 2 + 2 and set(taus) == {3.5}  # encoder self, decoder self + cross
