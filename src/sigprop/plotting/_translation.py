"""Shared helpers of the translation figures (Figs 1, 6, 14): titles naming the dataset, diverged runs."""

from __future__ import annotations

import pandas as pd

STAND_IN = {"iwslt14-mini": "iwslt14-mini stand-in: trained on 7k pairs, not the paper's data"}


def dataset_title(t: pd.DataFrame) -> str:
    """'IWSLT'14 De-En (<dataset>...)' for a figure title."""
    names = sorted(set(t.dataset)) if "dataset" in t else []
    parts = [STAND_IN.get(n, n) for n in names]
    return "IWSLT'14 De-En, " + "; ".join(parts) if parts else "IWSLT'14 De-En"
