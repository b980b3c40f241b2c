"""The training fast path equals the plain path: attention, read-out + loss, optimiser, collation.

Each fast part is compared with the plain implementation it replaces on a tiny model (losses,
gradients, parameters after a few updates, batches), and the pipeline is checked to use it by default.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sigprop import model as sp_model
from sigprop.data.iwslt.binarize import binarize, load_split
from sigprop.data.iwslt.textio import write_lines
from sigprop.model import EncoderDecoder, ModelConfig, MultiHeadAttention, Seq2SeqConfig
from sigprop.tasks.translation import methods
from sigprop.tasks.translation.batching import collate, flat_arrays, make_batch, token_batches
from sigprop.tasks.translation.task import translation_step

PAD, EOS, V = 1, 2, 37


pytestmark = pytest.mark.usefixtures("one_thread")


def model_pair(norm: str = "post", tau: float = 1.0, dropout: float = 0.0, init: str = "fairseq",
               **kw) -> tuple[EncoderDecoder, ...]:
    """The same weights on the plain and on the fast path."""
    block = ModelConfig(d_model=16, n_heads=4, d_ff=24, n_layers=2, norm=norm, bias=True, tau=tau, dropout=dropout,
                        attn_dropout=dropout, act_dropout=dropout, **kw)
    plain, fast = (EncoderDecoder(Seq2SeqConfig(block=block, vocab=V, fast=on, init=init),
                                  torch.Generator().manual_seed(0)) for on in (False, True))
    assert not any(m.fast for m in plain.modules() if isinstance(m, MultiHeadAttention))
    assert all(m.fast for m in fast.modules() if isinstance(m, MultiHeadAttention))
    assert plain.state_dict().keys() == fast.state_dict().keys()
    assert all(torch.equal(p, q) for p, q in zip(plain.state_dict().values(), fast.state_dict().values()))
    return plain, fast


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded pairs of different lengths (some targets much shorter than the longest)."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for s, t in ((7, 5), (3, 8), (9, 2), (5, 5), (2, 6)):
        src = torch.randint(4, V, (s,), generator=g)
        tgt = torch.randint(4, V, (t,), generator=g)
        src[-1] = tgt[-1] = EOS
        pairs.append((src, tgt))
    return collate(pairs, PAD, EOS)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_close_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("norm", "tau", "dropout"), [("post", 1.0, 0.0), ("pre", 0.3, 0.0), ("none", 2.0, 0.0),
                                                      ("post", 1.0, 0.2), ("pre", 1.0, 0.2), ("post", 0.0, 0.0),
                                                      ("none", 0.0, 0.2)])  # tau = 0: the start of a tau warm-up
def test_fast_step_equals_plain_step_losses_and_gradients(norm, tau, dropout, monkeypatch):
    # the fast path's dropout draws other (equally distributed) masks, tested on its own below; here
    # it is F.dropout, so that with the same seed both paths drop the same elements
    monkeypatch.setattr(sp_model.functional, "dropout", torch.nn.functional.dropout)
    plain, fast = model_pair(norm, tau, dropout, alpha1=0.5, alpha2=0.7)
    b = batch()
    out = {}
    for name, model, fused in (("plain", plain, False), ("fast", fast, True)):
        model.train()
        torch.manual_seed(3)  # the same dropout masks: both paths draw them in the same order and shapes
        res = translation_step(model, b, eps=0.1, pad=PAD, fused=fused)
        res["loss"].backward()
        out[name] = (res, grads(model))
    (rp, gp), (rf, gf) = out["plain"], out["fast"]
    torch.testing.assert_close(rf["loss"], rp["loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(rf["nll"], rp["nll"], rtol=1e-5, atol=0)
    assert float(rf["tokens"]) == float(b["tgt"].ne(PAD).sum())
    assert_close_grads(gp, gf)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_fast_dropout_keeps_1_minus_p_and_is_unbiased(p):
    x = torch.full((400, 500), 2.0, requires_grad=True)
    torch.manual_seed(0)
    y = sp_model.dropout(x, p, True)
    kept = y.detach().ne(0)
    n = kept.numel()
    rate = float(kept.float().mean())
    assert abs(rate - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5  # binomial: 5 standard errors
    assert torch.all(y.detach()[kept] == 2.0 / (1 - p))
    y.sum().backward()  # the gradient passes the kept elements, scaled, and nothing else
    assert torch.equal(x.grad, kept.float() / (1 - p))
    assert abs(float(y.detach().mean()) - 2.0) < 5 * 2.0 * (p / (1 - p) / n) ** 0.5
    # neighbouring elements (the two halves of one 64-bit draw) are independent
    flat = kept.flatten().float()
    both = float((flat[0::2] * flat[1::2]).mean())
    assert abs(both - (1 - p) ** 2) < 5 * ((1 - p) ** 2 * (1 - (1 - p) ** 2) / (n / 2)) ** 0.5
    torch.manual_seed(0)
    assert torch.equal(sp_model.dropout(x, p, True), y)  # reproducible from the global seed
    z = torch.randn(3, 5)
    assert sp_model.dropout(z, p, False) is z or torch.equal(sp_model.dropout(z, p, False), z)
    assert torch.equal(sp_model.dropout(z, 0.0, True), z)
    assert torch.equal(sp_model.dropout(z, 1.0, True), torch.zeros_like(z))


@pytest.mark.parametrize("method", ["rezero", "tfixup"])
def test_fast_step_equals_plain_step_for_rezero_and_tfixup(method, monkeypatch):
    monkeypatch.setattr(sp_model.functional, "dropout", torch.nn.functional.dropout)
    if method == "rezero":  # alpha = 0, trainable, one scalar per block, no LN (the config's rezero method)
        plain, fast = model_pair("none", dropout=0.1, alpha1=0.0, alpha2=0.0, trainable_alpha=True, shared_alpha=True)
        for m in (plain, fast):  # away from 0, so that every weight gets a gradient
            for blk in [*m.encoder.blocks, *m.decoder.blocks]:
                blk.alpha1.data.fill_(0.3)
    else:
        plain, fast = model_pair("none", dropout=0.1, init="tfixup")
    b = batch(3)
    out = []
    for model, fused in ((plain, False), (fast, True)):
        torch.manual_seed(4)
        res = translation_step(model.train(), b, eps=0.1, pad=PAD, fused=fused)
        res["loss"].backward()
        out.append((res["loss"], grads(model)))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-5, atol=0)
    assert_close_grads(out[0][1], out[1][1])


def test_fast_path_differs_from_a_wrong_model():
    """The comparison above can fail: another tau gives other losses and gradients."""
    plain, _ = model_pair(tau=1.0)
    _, other = model_pair(tau=1.3)
    b = batch()
    lp = translation_step(plain.train(), b, eps=0.1, pad=PAD, fused=False)["loss"]
    lo = translation_step(other.train(), b, eps=0.1, pad=PAD, fused=True)["loss"]
    assert abs(float(lp.detach()) - float(lo.detach())) > 1e-3


def test_fast_attention_in_eval_equals_plain_and_trainable_alpha_gets_gradients():
    plain, fast = model_pair("post", trainable_alpha=True)
    b = batch(1)
    with torch.no_grad():
        lp, _ = plain.eval()(b["src"], b["prev"])
        lf, _ = fast.eval()(b["src"], b["prev"])
    torch.testing.assert_close(lf, lp, rtol=1e-5, atol=1e-6)
    fast.train()
    translation_step(fast, b, eps=0.1, pad=PAD)["loss"].backward()
    assert all(blk.alpha1.grad is not None for blk in fast.encoder.blocks)


def test_linear_label_smoothed_nll_equals_the_full_logits_loss_in_chunks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, 8, generator=g, requires_grad=True)
    w = torch.randn(V, 8, generator=g, requires_grad=True)
    t = torch.randint(4, V, (4, 9), generator=g)
    t[1, 4:] = PAD
    t[3, 1:] = PAD
    ref = methods.label_smoothed_nll(x @ w.T, t, 0.1, PAD)
    ref_g = torch.autograd.grad(ref[0] * 0.37, (x, w))
    for chunk in (1, 5, 64):  # chunks smaller, not dividing, larger than the 21 non-pad rows
        got = methods.linear_label_smoothed_nll(x, w, t, 0.1, PAD, chunk=chunk)
        got_g = torch.autograd.grad(got[0] * 0.37, (x, w))
        torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=0)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=0)
        for a, b in zip(got_g, ref_g):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert float(got_g[0][3, 1:].abs().sum()) == 0.0  # pad rows get no gradient
    with torch.no_grad():  # validation: forward only, same numbers
        nograd = methods.linear_label_smoothed_nll(x, w, t, 0.1, PAD, chunk=5)
    torch.testing.assert_close(nograd[0], ref[0].detach(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_fused_optimizer_equals_default(kind):
    opt_cfg = {"kind": kind, "lr": 1e-2, "betas": [0.9, 0.98], "weight_decay": 1e-2, "momentum": 0.9}
    plain, fast = model_pair()
    b = batch(2)
    for model, fused in ((plain, False), (fast, True)):
        opt = methods.build_optimizer(model.parameters(), opt_cfg, "cpu", fused=fused)
        assert opt.defaults.get("fused") is (True if fused else None)
        model.train()
        for _ in range(3):
            opt.zero_grad()
            translation_step(model, b, eps=0.1, pad=PAD, fused=fused)["loss"].backward()
            opt.step()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        if name.endswith("wk.bias"):
            # the softmax ignores a key bias: its exact gradient is 0, so Adam's step on it is the
            # sign of rounding noise, which differs between any two implementations
            continue
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def binarised(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    rng = random.Random(0)
    words = "a b c d e f g h i j k l".split()

    def lines(n: int) -> list[str]:
        return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(n)]

    for split, n in (("train", 50), ("valid", 4), ("test", 4)):
        write_lines(d / f"{split}.de", lines(n))
        write_lines(d / f"{split}.en", lines(n))
    binarize(d)
    return d


def test_vectorised_collation_equals_sentence_by_sentence(binarised):
    ds = load_split(binarised, "train")
    assert flat_arrays(ds) is not None  # the binarised split takes the vectorised path
    batches = token_batches(ds.src_sizes, ds.tgt_sizes, 40, seed=1)
    assert len(batches) > 3
    for idx in [*batches, np.array([7]), [3, 0, 49]]:
        fast = make_batch(ds, idx, ds.pad, ds.eos)
        plain = collate([ds[int(i)] for i in idx], ds.pad, ds.eos)
        assert fast.keys() == plain.keys()
        for k in plain:
            assert fast[k].dtype == plain[k].dtype and torch.equal(fast[k], plain[k]), k


def test_pipeline_defaults_to_the_fast_path(binarised, monkeypatch):
    from sigprop.tasks.translation.task import TranslationTask

    spec = {"seed": 0, "model": {"d_model": 16, "n_heads": 4, "d_ff": 24, "max_positions": 64},
            "method_config": {"norm": "post"}, "layers": 1, "optimizer": {"kind": "adam", "lr": 1e-3},
            "training": {"max_tokens": 40, "label_smoothing": 0.1, "probe_sentences": 2}}
    task = TranslationTask(spec, binarised)
    model = task.build_model()
    assert all(m.fast for m in model.modules() if isinstance(m, MultiHeadAttention))
    assert task.build_optimizer(model).defaults["fused"] is True
    assert flat_arrays(task.train) is not None  # EpochBatches collates with the vectorised path
    calls = []
    fused = methods.linear_label_smoothed_nll
    monkeypatch.setattr(methods, "linear_label_smoothed_nll", lambda *a, **k: calls.append(1) or fused(*a, **k))
    out = task.step(model.train(), next(task.data()))
    assert calls == [1] and torch.isfinite(out["loss"])
