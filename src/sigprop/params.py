"""Parameter values written as text in configs: residual scales like '1/sqrt(L)', input scales like '1/sqrt(d)'.

Kept free of torch so that aggregation and plotting jobs start fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: the residual scales the init-time figures compare, from the largest to the smallest (for L >= 16, where
#: 1/sqrt(L) <= 0.25), with their plot labels: the one place for the order of the alphas and their names
RESIDUAL_SCALES: dict[str, str] = {
    "1": r"$\alpha=1$",
    "0.5": r"$\alpha=0.5$",
    "0.25": r"$\alpha=0.25$",
    "1/sqrt(L)": r"$\alpha=1/\sqrt{L}$",
}


def is_depth_scaled(alpha: float | str) -> bool:
    """Whether a residual scale is written as alpha = 1/sqrt(L) (alpha^2 = 1/L, the scaling of the L -> infinity
    limits)."""
    return str(alpha).replace(" ", "") in {"1/sqrt(L)", "1/sqrtL"}


def residual_scale_order(alphas: Iterable[str]) -> list[str]:
    """The distinct residual scales of ``alphas``: those of :data:`RESIDUAL_SCALES` in its order, then any others
    sorted."""
    present = set(alphas)
    return [a for a in RESIDUAL_SCALES if a in present] + sorted(present - set(RESIDUAL_SCALES))


def residual_scale_label(alpha: str) -> str:
    """The plot label of a residual scale (``$\\alpha=...$``)."""
    return RESIDUAL_SCALES.get(alpha, rf"$\alpha={alpha}$")


def resolve_alpha(alpha: float | str, n_layers: int) -> float:
    """Turn a residual scale (a number or ``"1/sqrt(L)"``) into a float for a stack of ``n_layers``."""
    if isinstance(alpha, str):
        text = alpha.replace(" ", "")
        if is_depth_scaled(text):
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
