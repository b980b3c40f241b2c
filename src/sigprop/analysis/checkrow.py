"""One row of ``results/checks.csv`` and how a p-value is written in it (shared by :mod:`sigprop.analysis.checks` and
:mod:`sigprop.analysis.claims`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Check:
    """One row of results/checks.csv."""

    name: str
    figure: str
    expected: str
    measured: float
    tolerance: str
    passed: bool
    applicable: bool = True  # False: reported only (e.g. Table 1 on the iwslt14-mini stand-in)


def format_p(p: float) -> str:
    """A p-value as the checks' text gives it: two significant digits, ``<1e-4`` below that, ``nan``."""
    return "nan" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")
