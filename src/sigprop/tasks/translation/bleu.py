"""BLEU as the paper reports it, plus detokenised sacreBLEU.

``tokenized_bleu``: what ``fairseq-generate --remove-bpe`` prints for IWSLT'14 (its default
``bleu`` scorer, and ``fairseq-score`` without ``--sacrebleu``): corpus BLEU-4 on the
whitespace tokens of the Moses-tokenised, lowercased text after removing BPE, brevity penalty,
no smoothing. That equals ``sacrebleu.corpus_bleu(hyps, [refs], tokenize="none",
smooth_method="none")``, which is what we call. References are the test set's tokenised text
(fairseq decodes them from the binarised data, which only differs where a reference holds a
word outside the dictionary: fairseq then prints ``<<unk>>``, which never matches).

``detok_sacrebleu``: hypotheses and references Moses-detokenised (sacremoses), then sacreBLEU with
its defaults (13a tokenisation, exponential smoothing). The references are the lowercased
tokenised test text detokenised, as the model writes lowercase.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics.bleu import BLEU, BLEUScore

from sigprop.data.iwslt.moses import moses_detokenize


def _tokenized(hyps: Sequence[str], refs: Sequence[str]) -> tuple[BLEU, BLEUScore]:
    metric = BLEU(tokenize="none", lowercase=True, smooth_method="none", force=True)
    return metric, metric.corpus_score(list(hyps), [list(refs)])


def _detokenized(hyps: Sequence[str], refs: Sequence[str], lang: str = "en") -> tuple[BLEU, BLEUScore]:
    metric = BLEU()
    return metric, metric.corpus_score([moses_detokenize(h, lang) for h in hyps],
                                       [[moses_detokenize(r, lang) for r in refs]])


def tokenized_bleu(hyps: Sequence[str], refs: Sequence[str]) -> BLEUScore:
    """Tokenised, lowercased corpus BLEU-4, no smoothing (fairseq's IWSLT number)."""
    return _tokenized(hyps, refs)[1]


def detok_sacrebleu(hyps: Sequence[str], refs: Sequence[str], lang: str = "en") -> BLEUScore:
    """sacreBLEU (defaults) after Moses-detokenising both sides."""
    return _detokenized(hyps, refs, lang)[1]


def bleu_summary(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, object]:
    """Both scores (:func:`tokenized_bleu`, :func:`detok_sacrebleu`) with their signatures and details, for
    ``eval.json``."""
    tok_metric, tok = _tokenized(hyps, refs)
    detok_metric, detok = _detokenized(hyps, refs)
    return {
        "bleu": float(tok.score),
        "bleu_precisions": [float(p) for p in tok.precisions],
        "bleu_bp": float(tok.bp),
        "bleu_sys_len": int(tok.sys_len),
        "bleu_ref_len": int(tok.ref_len),
        "bleu_signature": str(tok_metric.get_signature()),
        "bleu_how": "tokenised lowercased text after removing BPE, no smoothing (fairseq's IWSLT BLEU)",
        "sacrebleu_detok": float(detok.score),
        "sacrebleu_signature": str(detok_metric.get_signature()),
    }
