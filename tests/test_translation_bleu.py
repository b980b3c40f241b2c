"""sigprop.tasks.translation.bleu: tokenized BLEU equals sacrebleu's and fairseq's scorer (written out here),
detokenized sacreBLEU after the Moses detokenizer, the summary with both scores and their signatures."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import sacrebleu

from sigprop.data.iwslt.moses import moses_detokenize
from sigprop.tasks.translation.bleu import bleu_summary, detok_sacrebleu, tokenized_bleu

pytestmark = pytest.mark.usefixtures("one_thread")

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
