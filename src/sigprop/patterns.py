"""Fixed row-stochastic attention matrices (Fig S6): what the simulation's blocks attend with and what the theory
(:func:`sigprop.analysis.theory.gram_expectation`) propagates. NumPy only: the simulate jobs and the aggregation
both read it, so an edit reruns both."""

from __future__ import annotations

import numpy as np

#: the fixed attention patterns of Fig S6
PATTERNS = ("bidirectional", "causal", "banded")


def attention_pattern(kind: str, n: int, band: int = 1) -> np.ndarray:
    """A row-stochastic n x n attention matrix: ``bidirectional`` (every token averages all n, the paper's uniform
    attention), ``causal`` (token i averages tokens 1..i: a decoder's or GPT's uniform attention), ``banded``
    (token i averages the tokens j with |i - j| <= ``band``: local attention)."""
    i, j = np.indices((n, n))
    if kind == "bidirectional":
        mask = np.ones((n, n), dtype=bool)
    elif kind == "causal":
        mask = j <= i
    elif kind == "banded":
        if band < 0:
            raise ValueError(f"banded attention: band {band} < 0; use a half-width >= 0 (0: every token attends to "
                             "itself only)")
        mask = np.abs(i - j) <= band
    else:
        raise ValueError(f"attention pattern {kind!r}: use one of {', '.join(PATTERNS)}")
    return mask / mask.sum(1, keepdims=True)
