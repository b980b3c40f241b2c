"""The Moses scripts fairseq's preprocessing runs, in Python: tokenizer.perl, lowercase.perl, clean-corpus-n.perl.

Tokenisation uses sacremoses with one correction: ``tokenizer.perl`` always splits the period off the *last*
word of a line ("... in the u.s." -> "... in the u.s ."), which sacremoses 0.x does not. With it, our output is
byte-identical to fairseq's tokenised dev/test files (tests/test_iwslt_data.py). :func:`moses_detokenize` is
the inverse used before detokenised BLEU.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sigprop.data.iwslt.corpus import CLEAN_MAX, CLEAN_MIN, CLEAN_RATIO, TGT_LANG

#: Perl's \s under Unicode rules (what tokenizer.perl / clean-corpus-n.perl see with :utf8 I/O).
PERL_WS = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_PERL_WS_RUN = re.compile(PERL_WS + "+")
_PERL_BLANK = re.compile(PERL_WS + "*")
_LAST_WORD_PERIOD = re.compile(r"^(\S+)\.$")


@functools.cache
def _tokenizer(lang: str) -> Any:
    from sacremoses import MosesTokenizer

    class _PerlMosesTokenizer(MosesTokenizer):
        """sacremoses plus tokenizer.perl's rule: always split the period off the last word."""

        def handles_nonbreaking_prefixes(self, text: str) -> str:
            tokens = text.split()
            if tokens:
                m = _LAST_WORD_PERIOD.match(tokens[-1])
                if m:
                    tokens[-1] = m.group(1) + " ."
            return super().handles_nonbreaking_prefixes(" ".join(tokens))

    return _PerlMosesTokenizer(lang=lang)


def moses_tokenize(lines: Iterable[str], lang: str) -> list[str]:
    """Moses ``tokenizer.perl -l LANG`` (escaping on); blank lines pass through unchanged."""
    tok = _tokenizer(lang)
    return [
        line if _PERL_BLANK.fullmatch(line) else tok.tokenize(line, escape=True, return_str=True)
        for line in lines
    ]


def lowercase(lines: Iterable[str]) -> list[str]:
    """Moses ``lowercase.perl`` (Perl ``lc``: no context-dependent final sigma)."""
    return [line.replace("\u03a3", "\u03c3").lower() for line in lines]


def clean_corpus(
    src: Sequence[str],
    tgt: Sequence[str],
    ratio: float = CLEAN_RATIO,
    min_len: int = CLEAN_MIN,
    max_len: int = CLEAN_MAX,
    max_word_length: int = 1000,
) -> tuple[list[str], list[str]]:
    """Moses ``clean-corpus-n.perl -ratio R corpus src tgt out MIN MAX`` on two parallel lists."""
    if len(src) != len(tgt):
        raise ValueError(f"parallel corpus sides differ in length: {len(src)} vs {len(tgt)}")
    long_word = re.compile(r"[^\s|]{" + str(max_word_length + 1) + "}")
    factored = bool(src) and ("|" in src[0] or "|" in tgt[0])
    out_src: list[str] = []
    out_tgt: list[str] = []
    for f, e in zip(src, tgt, strict=True):
        if not factored:
            f, e = f.replace("|", ""), e.replace("|", "")
        f = _PERL_WS_RUN.sub(" ", f).removeprefix(" ").removesuffix(" ")
        e = _PERL_WS_RUN.sub(" ", e).removeprefix(" ").removesuffix(" ")
        if not f or not e:
            continue
        fc, ec = len(f.split(" ")), len(e.split(" "))
        if ec > max_len or fc > max_len or ec < min_len or fc < min_len:
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if long_word.search(e) or long_word.search(f):
            continue
        out_src.append(f)
        out_tgt.append(e)
    return out_src, out_tgt


def moses_detokenize(line: str, lang: str = TGT_LANG) -> str:
    """Moses-detokenise a tokenised line (XML entities unescaped), for detokenised sacreBLEU."""
    return _detokenizer(lang).detokenize(line.split(), unescape=True) if line else ""


@functools.cache
def _detokenizer(lang: str) -> Any:
    from sacremoses import MosesDetokenizer

    return MosesDetokenizer(lang=lang)
