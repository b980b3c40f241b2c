"""Parameter values written as text in configs: residual scales like '1/sqrt(L)', input scales like '1/sqrt(d)'.

Kept free of torch so that aggregation and plotting jobs start fast.
"""

from __future__ import annotations

import math


def resolve_alpha(alpha: float | str, n_layers: int) -> float:
    """Turn a residual scale (a number or ``"1/sqrt(L)"``) into a float for a stack of ``n_layers``."""
    if isinstance(alpha, str):
        text = alpha.replace(" ", "")
        if text in {"1/sqrt(L)", "1/sqrtL"}:
            return 1.0 / math.sqrt(n_layers)
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"alpha {alpha!r}: use a number or the string '1/sqrt(L)'") from None
    return float(alpha)


def input_std(value: float | str, d: int) -> float:
    """A standard deviation given as a number or as the string ``"1/sqrt(d)"``."""
    if isinstance(value, str) and value.replace(" ", "") == "1/sqrt(d)":
        return 1.0 / math.sqrt(d)
    return float(value)
