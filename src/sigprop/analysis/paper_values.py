"""Numbers reported in the paper that the project compares against (facts only: imported by every layer)."""

from __future__ import annotations

#: the paper's Table 1 (6+6 blocks, mean of 5 runs, tokenised BLEU on IWSLT'14 De-En test), in its row order
PAPER_TABLE1 = {
    "sgd_postln": 31.36,
    "sgd_resscale": 32.79,
    "sgd_temperature": 35.69,
    "adam_postln": 35.39,
    "adam_preln": 35.10,
    "rezero": 34.55,
    "tfixup": 35.59,
}
