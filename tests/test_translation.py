"""Translation (docs/translation.md): encoder-decoder, search, BLEU, batching, schedules, and the training job.

The job tests train a tiny model for a few dozen updates on a synthetic copy task written as
IWSLT-style text files and binarised with the real code (a few seconds each).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from sigprop.data.iwslt.binarize import binarize
from sigprop.data.iwslt.moses import moses_detokenize
from sigprop.data.iwslt.status import locate
from sigprop.data.iwslt.textio import write_lines
from sigprop.model import EncoderDecoder, ModelConfig, Seq2SeqConfig
from sigprop.tasks.translation import methods
from sigprop.tasks.translation.batching import collate, token_batches
from sigprop.tasks.translation.bleu import bleu_summary, detok_sacrebleu, tokenized_bleu
from sigprop.tasks.translation.evaluation import evaluate_run
from sigprop.tasks.translation.job import train
from sigprop.tasks.translation.plan import Run, check_config, run_spec, spec_json, target_runs
from sigprop.tasks.translation.search import Decoding, SearchConfig, beam_search, greedy_search
from sigprop.tasks.translation.task import TranslationTask

WORDS = "the cat sat on a mat and dog ran far away".split()


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(norm: str = "post", seed: int = 0, init: str = "fairseq", layers: int = 2, fast: bool = True,
               **kw) -> EncoderDecoder:
    torch.manual_seed(seed)
    block = ModelConfig(d_model=32, n_heads=4, d_ff=64, n_layers=layers, norm=norm, bias=True, **kw)
    return EncoderDecoder(Seq2SeqConfig(block=block, vocab=40, init=init, fast=fast)).eval()


def src_batch(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (5, 9), generator=g)
    src[:, -1] = 2
    src[1, 6:] = 1
    src[1, 5] = 2
    return src


# ---------------------------------------------------------------- model


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


def test_latex_tables_are_booktabs_with_escaped_cells_and_caption():
    from sigprop.plotting.tables import to_latex

    df = pd.DataFrame({"": ["General", "Adam"], "rate_%": ["a_b & 5%", "1/sqrt(L)"]})
    tex = to_latex(df, "mean ± 95% CI, iwslt_14", "tab:x").splitlines()
    body = tex[tex.index(r"\midrule") + 1 : tex.index(r"\bottomrule")]
    assert body == [r"General & a\_b \& 5\% \\", r"Adam & 1/sqrt(L) \\"]
    assert tex[tex.index(r"\toprule") + 1] == r" & rate\_\% \\" and r"\begin{tabular}{ll}" in tex
    assert r"\caption{mean ± 95\% CI, iwslt\_14}" in tex and r"\label{tab:x}" in tex


def test_table2_names_an_radam_optimizer(repo_root):
    from sigprop.config import load_config
    from sigprop.plotting.tables import table2_rows

    cfg = load_config(repo_root / "config" / "quick.yaml")
    opts = cfg["translation"]["optimizers"]
    opts["radam_nowarmup"] = {**opts["adam_nowarmup"], "kind": "radam"}
    cfg["methods"]["tfixup"]["optimizer"] = "radam_nowarmup"
    rows = {(r["section"], r["hyperparameter"]): r["ours"] for r in table2_rows(cfg)}
    assert rows[("RAdam (T-Fixup)", "Adam (beta1, beta2)")] == "(0.9, 0.98)"


def test_radam_first_step_is_the_authors_unrectified_step():
    """RAdam (the authors' fairseq fork, torch.optim.RAdam): at step 1 rho_1 = 1 <= 5, so the update is
    p (1 - lr wd) - lr g (bias-corrected momentum, decoupled decay), computed here by hand."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = methods.build_optimizer([p], {"kind": "radam", "lr": 0.1, "betas": [0.9, 0.98], "weight_decay": 0.01})
    assert isinstance(opt, torch.optim.RAdam)
    g = torch.tensor([0.3, 0.1, -0.2])
    p.grad = g.clone()
    before = p.detach().clone()
    opt.step()
    torch.testing.assert_close(p.detach(), before * (1 - 0.1 * 0.01) - 0.1 * g)


def test_set_tau_reaches_every_attention():
    model = tiny_model()
    model.set_tau(3.5)
    taus = [m.tau for m in model.modules() if hasattr(m, "tau")]
    assert len(taus) == 2 * 2 + 2 and set(taus) == {3.5}  # encoder self, decoder self + cross


# ---------------------------------------------------------------- search


def _prefix(rows: int = 5, n: int = 7, seed: int = 5) -> torch.Tensor:
    prev = torch.randint(4, 40, (rows, n), generator=torch.Generator().manual_seed(seed))
    prev[:, 0] = 2
    return prev


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("norm", ["post", "pre", "none"])
def test_incremental_decoding_matches_full_decoder(norm, fast):
    """Token by token through the cache (as search decodes) and in chunks: the full decoder's logits."""
    model = tiny_model(norm, tau=2.0, fast=fast)  # the training fast path or the plain one, cached or not
    src, prev = src_batch(), _prefix()
    memory, mask, _ = model.encode(src)
    full, _ = model.decode(prev, memory, mask)
    steps = Decoding(model, memory, mask)
    inc = torch.stack([steps.step(prev[:, t]) for t in range(prev.shape[1])], dim=1)
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-5)
    assert steps.cache.length == prev.shape[1]
    cache, chunks = model.new_cache(), []  # several positions per call: causal among the new ones
    for lo, hi in ((0, 3), (3, 4), (4, 7)):
        chunks.append(model.decode(prev[:, lo:hi], memory, mask, cache=cache)[0])
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)


def test_reordered_cache_follows_its_rows_and_a_wrong_cache_changes_the_logits():
    """Beam search reorders the cache by hypothesis: reordered rows decode as the full decoder on the
    reordered prefixes; a cache left in the old order, or one from another prefix, gives other logits."""
    model = tiny_model("post", tau=2.0)
    src, prev = src_batch(), _prefix()
    memory, mask, _ = model.encode(src)
    rows = torch.tensor([3, 3, 0, 4, 1])  # a repeat and a dropped row, as when beams split and finish
    full, _ = model.decode(prev[rows], memory[rows], mask[rows], last_only=True)
    t = prev.shape[1] - 1

    def fed(prefix: torch.Tensor) -> Decoding:
        steps = Decoding(model, memory, mask)
        for i in range(t):
            steps.step(prefix[:, i])
        return steps

    steps = fed(prev)
    steps.reorder(rows)
    torch.testing.assert_close(steps.step(prev[rows, t]), full[:, 0], rtol=1e-5, atol=1e-5)
    stale = fed(prev)  # not reordered: keys and values of other hypotheses
    stale.memory, stale.memory_mask = memory[rows], mask[rows]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(stale.step(prev[rows, t]), full[:, 0], rtol=1e-5, atol=1e-5)
    other = prev.clone()
    other[:, 1] = (other[:, 1] - 4 + 1) % 36 + 4  # another token at position 1 in every row
    wrong = fed(other)
    wrong.reorder(rows)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong.step(prev[rows, t]), full[:, 0], rtol=1e-5, atol=1e-5)


def test_decoding_past_max_positions_names_the_limit():
    model = tiny_model()
    memory, mask, _ = model.encode(src_batch())
    with pytest.raises(ValueError, match="max_positions"):
        model.decode(torch.full((5, model.cfg.max_positions + 1), 2), memory, mask)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed):
    model = tiny_model(seed=seed)
    cfg = SearchConfig(beam=1, max_len_b=15)
    assert beam_search(model, src_batch(seed), cfg) == greedy_search(model, src_batch(seed), cfg)


def test_beam_five_is_at_least_as_likely_as_greedy():
    model = tiny_model(seed=4)
    src = src_batch(4)
    cfg5 = SearchConfig(beam=5, max_len_b=12, lenpen=0.0)  # lenpen 0: raw log-probabilities

    def logprob(ids: list[int], i: int) -> float:
        prev = torch.tensor([[2, *ids]])
        tgt = torch.tensor([[*ids, 2]])
        logits, _ = model(src[i : i + 1], prev)
        return float(torch.log_softmax(logits, -1).gather(-1, tgt[..., None]).sum())

    beams, greedy = beam_search(model, src, cfg5), greedy_search(model, src, SearchConfig(beam=1, max_len_b=12))
    assert len(beams) == src.shape[0]
    with torch.no_grad():
        for i, (b, g) in enumerate(zip(beams, greedy, strict=True)):
            assert all(1 <= t < 40 and t not in (1, 2) for t in b)
            assert logprob(b, i) >= logprob(g, i) - 1e-4


# ---------------------------------------------------------------- BLEU


HYPS = ["the cat sat on the mat .", "there is a dog in the house &apos;s garden", "hello world"]
REFS = ["the cat sat on a mat .", "there is a dog in the garden of the house", "hello there world"]


def _fairseq_bleu(hyps: list[str], refs: list[str]) -> float:
    """fairseq's C scorer on whitespace tokens: BLEU-4, brevity penalty, no smoothing (written out)."""
    match, count, hyp_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for h, r in zip(hyps, refs, strict=True):
        h, r = h.split(), r.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            hc = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            count[n - 1] += max(len(h) - n + 1, 0)
    if min(match) == 0:
        return 0.0
    bp = math.exp(1 - ref_len / hyp_len) if hyp_len < ref_len else 1.0
    return 100 * bp * math.exp(sum(math.log(m / c) for m, c in zip(match, count, strict=True)) / 4)


def test_tokenized_bleu_equals_sacrebleu_and_fairseq():
    ours = tokenized_bleu(HYPS, REFS).score
    ref = sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="none", smooth_method="none", force=True).score
    assert ours == pytest.approx(ref, abs=1e-9)
    assert ours == pytest.approx(_fairseq_bleu(HYPS, REFS), abs=1e-9)
    assert tokenized_bleu(REFS, REFS).score == pytest.approx(100.0)
    assert tokenized_bleu(["a b c"], ["d e f"]).score == 0.0  # no smoothing


def test_detokenized_sacrebleu_equals_sacrebleu_after_moses_detok():
    ours = detok_sacrebleu(HYPS, REFS).score
    detok = [moses_detokenize(h) for h in HYPS], [moses_detokenize(r) for r in REFS]
    assert "house's" in detok[0][1]  # entities unescaped, clitics re-attached
    assert ours == pytest.approx(sacrebleu.corpus_bleu(detok[0], [detok[1]]).score, abs=1e-9)


def test_bleu_summary_reports_the_two_scores_and_their_signatures():
    summary = bleu_summary(HYPS, REFS)
    assert summary["bleu"] == tokenized_bleu(HYPS, REFS).score
    assert summary["sacrebleu_detok"] == detok_sacrebleu(HYPS, REFS).score
    assert "tok:none" in summary["bleu_signature"] and "smooth:none" in summary["bleu_signature"]
    assert "tok:13a" in summary["sacrebleu_signature"] and "nrefs:1" in summary["sacrebleu_signature"]


# ---------------------------------------------------------------- batching, loss, schedules


def test_token_batches_cover_everything_within_max_tokens():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(2, 40, 300), rng.integers(2, 40, 300)
    batches = token_batches(src, tgt, 256, seed=3, epoch=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(300))
    for b in batches:
        assert len(b) * np.maximum(src[b], tgt[b]).max() <= 256
    again = token_batches(src, tgt, 256, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = token_batches(src, tgt, 256, seed=3, epoch=2)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=False))


def test_collate_shifts_targets_and_pads_right():
    pairs = [(torch.tensor([5, 6, 2]), torch.tensor([7, 8, 9, 2])), (torch.tensor([5, 2]), torch.tensor([7, 2]))]
    b = collate(pairs, pad=1, eos=2)
    assert b["src"].tolist() == [[5, 6, 2], [5, 2, 1]]
    assert b["tgt"].tolist() == [[7, 8, 9, 2], [7, 2, 1, 1]]
    assert b["prev"].tolist() == [[2, 7, 8, 9], [2, 7, 1, 1]]
    assert int(b["ntokens"]) == 6


def test_label_smoothing_is_fairseqs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 17, generator=g)
    tgt = torch.randint(4, 17, (3, 5), generator=g)
    tgt[0, 3:] = 1
    loss, nll = methods.label_smoothed_nll(logits, tgt, 0.1, pad=1)
    v = logits.shape[-1]  # fairseq: (1 - eps - eps/(V-1)) nll + eps/(V-1) sum(-lprobs) = torch's with eps V/(V-1)
    ref = F.cross_entropy(
        logits.view(-1, v), tgt.view(-1), ignore_index=1, label_smoothing=0.1 * v / (v - 1), reduction="sum"
    )
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    assert float(nll) == pytest.approx(
        float(F.cross_entropy(logits.view(-1, v), tgt.view(-1), ignore_index=1, reduction="sum")), rel=1e-5
    )


def test_schedules_and_tau_warmup():
    adam = {
        "lr": 7e-4,
        "updates": 100000,
        "schedule": {"kind": "inverse_sqrt", "warmup_updates": 6000, "warmup_init_lr": 1e-7},
    }
    f = methods.lr_schedule(adam)
    assert f(6000) == pytest.approx(7e-4) and f(24000) == pytest.approx(3.5e-4) and f(1) < 3e-7
    sgd = {"lr": 2e-2, "updates": 250000, "schedule": {"kind": "step", "gamma": 0.1, "milestones": [0.4, 0.8]}}
    f = methods.lr_schedule(sgd)
    assert [f(t) for t in (1, 99999, 100000, 200000)] == pytest.approx([2e-2, 2e-2, 2e-3, 2e-4])
    f = methods.lr_schedule(
        {"lr": 1.0, "updates": 10, "schedule": {"kind": "inverse_sqrt_nowarmup", "decay_period": 4}}
    )
    assert f(0) == 1.0 and f(12) == pytest.approx(0.5)
    temp = {"tau": 8.5, "tau_warmup": 1000}
    assert [methods.tau_at(t, temp) for t in (0, 500, 1000, 5000)] == [0.0, 4.25, 8.5, 8.5]
    assert methods.tau_at(7, {}) == 1.0


def test_sgdw_decay_is_decoupled():
    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = methods.SGDW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.tensor([1.0])
    opt.step()
    assert float(p.detach()) == pytest.approx(2.0 * (1 - 0.1 * 0.5) - 0.1 * 1.0)


# ---------------------------------------------------------------- the training job


@pytest.fixture(scope="module")
def copy_data(tmp_path_factory) -> Path:
    """A synthetic 'translate = copy' corpus in the binarised IWSLT format."""
    d = tmp_path_factory.mktemp("copydata")
    rng = random.Random(0)
    for split, n in (("train", 64), ("valid", 8), ("test", 6)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(n)]
        write_lines(d / f"{split}.de", lines)
        write_lines(d / f"{split}.en", lines)
    binarize(d)
    return d


def job_spec(**over) -> dict:
    spec = {
        "config": "test",
        "dataset": "iwslt14-mini",
        "method": "adam_postln",
        "layers": 1,
        "seed": 0,
        "device": "cpu",
        "method_config": {"label": "Adam POST-LN", "optimizer": "adam", "norm": "post", "alpha": 1},
        "optimizer": {
            "name": "adam",
            "kind": "adam",
            "lr": 1e-2,
            "betas": [0.9, 0.98],
            "weight_decay": 1e-4,
            "updates": 40,
            "schedule": {"kind": "inverse_sqrt", "warmup_updates": 5, "warmup_init_lr": 1e-7},
        },
        "model": {
            "d_model": 32,
            "n_heads": 2,
            "d_ff": 64,
            "dropout": 0.1,
            "attn_dropout": 0.1,
            "act_dropout": 0.1,
            "bias": True,
            "max_positions": 64,
        },
        "training": {
            "max_tokens": 96,
            "label_smoothing": 0.1,
            "log_every": 5,
            "valid_every": 10,
            "checkpoint_every": 10,
            "probe_sentences": 4,
        },
        "evaluation": {"beam": 2, "max_len_a": 1.0, "max_len_b": 5, "batch_sentences": 4},
    }
    for key, value in over.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return spec


def train_and_evaluate(spec: dict, data: Path, out: Path) -> dict:
    """The two jobs of one run, as the workflow chains them: train_translation, then evaluate_translation."""
    train(spec, data, out)
    return evaluate_run(spec, data, out)


def test_tiny_training_lowers_the_loss_and_writes_every_file(copy_data, tmp_path):
    out = tmp_path / "run"
    trained = train(job_spec(), copy_data, out)
    assert {p.name for p in out.iterdir()} == {"log.parquet", "train.json", "checkpoint_best.pt"}  # no BLEU yet
    assert "bleu" not in trained
    summary = evaluate_run(job_spec(), copy_data, out)
    assert {p.name for p in out.iterdir()} == {
        "log.parquet", "train.json", "checkpoint_best.pt", "eval.parquet", "eval.json", "hypotheses.txt"
    }
    assert summary["best_update"] == trained["best_update"] and summary["decode_dtype"] == "float32"
    log = pd.read_parquet(out / "log.parquet")
    loss = log[log.metric == "loss"].sort_values("step")["value"].to_numpy()
    assert loss[-1] < 0.7 * loss[0]
    assert not summary["diverged"] and math.isfinite(summary["bleu"]) and summary["test_sentences"] == 6
    metrics = set(log.metric)
    assert {
        "cosine",
        "act_norm",
        "grad_wq",
        "grad_wk",
        "grad_wv",
        "alpha1",
        "alpha2",
        "tau",
        "lr",
        "valid_loss",
    } <= metrics
    assert log[(log.metric == "cosine") & (log.step == 0)].shape[0] == 2 * 2  # init: both sides, 2 layers
    assert len((out / "hypotheses.txt").read_text().splitlines()) == 6
    ckpt = torch.load(out / "checkpoint_best.pt", weights_only=True)
    assert ckpt["update"] == summary["best_update"]
    ev = pd.read_parquet(out / "eval.parquet")
    assert ev.loc[0, "method_label"] == "Adam POST-LN" and ev.loc[0, "dataset"] == "iwslt14-mini"


def test_resume_gives_the_same_parameters(copy_data, tmp_path, monkeypatch):
    spec = job_spec(optimizer={"updates": 30}, evaluation={"beam": 1})
    train_and_evaluate(spec, copy_data, tmp_path / "whole")

    original = TranslationTask.tau_setter
    state = {"armed": True}

    def crashing(self, model):
        inner = original(self, model)

        def fn(t):
            if state["armed"] and t == 17:  # after the checkpoint at update 10
                raise KeyboardInterrupt("simulated kill")
            inner(t)

        return fn

    monkeypatch.setattr(TranslationTask, "tau_setter", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(spec, copy_data, tmp_path / "killed")
    assert torch.load(tmp_path / "killed" / "state" / "last.pt", weights_only=True)["update"] == 10
    state["armed"] = False
    summary = train_and_evaluate(spec, copy_data, tmp_path / "killed")
    assert summary["resumed_from"] == 10

    assert not (tmp_path / "killed" / "state").exists()  # outputs written: the resume state is deleted
    a = torch.load(tmp_path / "whole" / "checkpoint_best.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint_best.pt", weights_only=True)
    assert a["update"] == b["update"] and a["score"] == b["score"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    la, lb = (pd.read_parquet(tmp_path / d / "log.parquet") for d in ("whole", "killed"))
    pd.testing.assert_frame_equal(la, lb)


def test_evaluation_rereads_the_best_checkpoint_in_float32_without_touching_training(copy_data, tmp_path):
    from sigprop.tasks.translation.evaluation import decode_test, load_best
    from sigprop.tasks.translation.job import fingerprint

    out, spec = tmp_path / "run", job_spec()
    train(spec, copy_data, out)
    trained = {n: (out / n).read_bytes() for n in ("log.parquet", "train.json", "checkpoint_best.pt")}
    five = evaluate_run(spec, copy_data, out)
    greedy_spec = job_spec(evaluation={"beam": 1})
    assert fingerprint(greedy_spec) == fingerprint(spec)  # the evaluation section is not part of the training
    greedy = evaluate_run(greedy_spec, copy_data, out)  # re-evaluation with another beam
    assert {n: (out / n).read_bytes() for n in trained} == trained
    assert (five["beam"], greedy["beam"]) == (2, 1) and greedy["best_update"] == five["best_update"]
    # the hypotheses are the best checkpoint's, decoded in float32 even from a bf16 copy of the model
    ckpt = torch.load(out / "checkpoint_best.pt", weights_only=True)
    model = load_best(spec, copy_data, ckpt, torch.device("cpu")).to(torch.bfloat16)
    _, hyps = decode_test(model, copy_data, greedy_spec["evaluation"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reference = load_best(spec, copy_data, ckpt, torch.device("cpu")).to(torch.bfloat16).float()
    assert hyps == decode_test(reference, copy_data, greedy_spec["evaluation"])[1]
    full = load_best(spec, copy_data, ckpt, torch.device("cpu"))
    assert (out / "hypotheses.txt").read_text().splitlines() == decode_test(full, copy_data,
                                                                           greedy_spec["evaluation"])[1]


def test_divergence_is_recorded_and_logs_kept(copy_data, tmp_path):
    spec = job_spec(
        method_config={"optimizer": "sgd", "norm": "none"},
        optimizer={"kind": "sgd", "lr": 1e12, "momentum": 0.0, "schedule": {"kind": "constant"}},
    )
    summary = train_and_evaluate(spec, copy_data, tmp_path / "run")
    assert summary["diverged"] and math.isnan(summary["bleu"])
    log = pd.read_parquet(tmp_path / "run" / "log.parquet")
    assert log.diverged.all() and not log.empty
    assert float(log[log.metric == "diverged"]["value"].iloc[0]) == 1.0
    assert bool(pd.read_parquet(tmp_path / "run" / "eval.parquet").diverged.iloc[0])
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["summary"]["diverged"] is True


# ---------------------------------------------------------------- data status and plan


def test_missing_data_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGPROP_IWSLT_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    status = locate("iwslt14-mini", None, "http://127.0.0.1:9/de-en.tgz", None, str(tmp_path / "cache"), timeout=2)
    assert status["available"] is False
    for needle in ("SIGPROP_IWSLT_DIR", "data.local_dir", "iwslt14-mini", "snakemake"):
        assert needle in status["message"]


def test_plan_shares_runs_between_targets(repo_root):
    from sigprop.config import load_config

    cfg = load_config(repo_root / "config" / "paper.yaml")
    check_config(cfg)
    shared = Run("adam_postln", 6, 0)  # one run directory serves Table 1 and Fig 6
    assert shared in target_runs(cfg, "table1") and shared in target_runs(cfg, "fig06")
    assert all(len(set(target_runs(cfg, t))) == len(target_runs(cfg, t)) for t in ("table1", "fig06", "fig01"))
    assert len(target_runs(cfg, "table1")) == 7 * 5
    spec = run_spec(cfg, Run("sgd_temperature", 6, 2))
    assert spec["optimizer"]["lr"] == 2e-2 and spec["method_config"]["tau"] == 8.5
    run = Run("sgd_temperature", 6, 2)
    assert "evaluation" not in json.loads(spec_json(cfg, run, "train"))  # a beam change retrains nothing
    assert json.loads(spec_json(cfg, run, "evaluate")) == spec
    cfg["translation"]["fig06"]["methods"].append("adam_nope")
    with pytest.raises(ValueError, match="adam_nope"):
        check_config(cfg)


@pytest.mark.parametrize("name", ["quick.yaml", "paper.yaml", "gpu-check.yaml"])
def test_translation_configs_validate_and_cross_check(repo_root, name):
    from sigprop.config import load_layered, validate_config

    cfg = load_layered(repo_root / "config" / name)[0]
    validate_config(cfg, repo_root / "workflow" / "schemas" / "config.schema.yaml")
    check_config(cfg)


def test_unknown_translation_key_names_the_key_and_the_allowed_ones(repo_root):
    from sigprop.config import ConfigError, load_layered, validate_config

    cfg = load_layered(repo_root / "config" / "quick.yaml")[0]
    cfg["translation"]["training"]["max_token"] = 100
    cfg["methods"]["rezero"]["optimiser"] = "adam"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, repo_root / "workflow" / "schemas" / "config.schema.yaml")
    msg = str(err.value)
    for needle in ("'max_token'", "translation.training", "max_tokens", "'optimiser'", "methods.rezero", "optimizer"):
        assert needle in msg, msg


# ---------------------------------------------------------------- aggregation, checks, plots


def _eval_rows(dataset: str = "iwslt14") -> pd.DataFrame:
    rows = []
    for method, label, bleu in (
        ("sgd_postln", "SGD POST-LN", 31.0),
        ("sgd_resscale", "SGD res-scale", 33.0),
        ("sgd_temperature", "SGD temperature", 35.5),
    ):
        for seed in range(3):
            diverged = method == "sgd_postln" and seed == 2
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "method_label": label,
                    "layers": 6,
                    "seed": seed,
                    "diverged": diverged,
                    "bleu": math.nan if diverged else bleu + 0.1 * seed,
                    "sacrebleu_detok": bleu - 1,
                    "best_valid_loss": 4.0,
                    "test_sentences": 6750,
                    "beam": 5,
                }
            )
    return pd.DataFrame(rows)


def test_table1_aggregation_and_checks():
    from sigprop.analysis import aggregate, checks

    t = aggregate.table1(_eval_rows())
    post = t.set_index("method").loc["sgd_postln"]
    assert post.n_runs == 3 and post.n_diverged == 1 and post["mean"] == pytest.approx(31.05)
    assert list(t.method) == ["sgd_postln", "sgd_resscale", "sgd_temperature"]  # the paper's order
    rows = checks.run_checks({"table1": t})
    assert rows.applicable.all() and len(rows) == 4  # 3 BLEU-vs-paper + the order (tests/test_claims.py)
    order = rows[rows.name.str.contains("order")].iloc[0]
    # the diverged SGD POST-LN run counts as BLEU 0 in the claim's Welch test: 3 runs this spread show no order
    assert "20.70" in order["name"] and not order["pass"]
    mini = checks.run_checks({"table1": aggregate.table1(_eval_rows("iwslt14-mini"))})
    assert not mini.applicable.any() and "not applicable" in checks.summary(mini)


def test_translation_figures_draw_diverged_runs(tmp_path):
    from sigprop.analysis import aggregate
    from sigprop.plotting import fig01, fig06, fig14
    from sigprop.plotting.style import Style, save

    style = Style()
    save(fig06.plot({"fig06": aggregate.fig06(_eval_rows())}, style), tmp_path / "f6.pdf", 50)
    log = []
    for method in ("adam_postln", "adam_postln_scaled"):
        for layers in (2, 4):
            for step in (0, 10, 20):
                for side in ("encoder", "decoder"):
                    for layer in range(layers + 1):
                        for metric in ("cosine", "act_norm", "alpha1", "alpha2"):
                            log.append(
                                {
                                    "dataset": "iwslt14-mini",
                                    "method": method,
                                    "method_label": method,
                                    "layers": layers,
                                    "seed": 0,
                                    "diverged": layers == 4,
                                    "step": step,
                                    "metric": metric,
                                    "side": side,
                                    "layer": layer,
                                    "value": 0.1 * layer,
                                }
                            )
    log = pd.DataFrame(log)
    save(fig01.plot({"fig01": aggregate.fig01(log)}, style), tmp_path / "f1.pdf", 50)
    save(fig14.plot({"fig14": aggregate.fig14(log[log.method == "adam_postln"])}, style), tmp_path / "f14.pdf", 50)
    assert (tmp_path / "f1.png").exists() and (tmp_path / "f6.png").exists() and (tmp_path / "f14.png").exists()
