"""Supplementary Fig S4: Fig 3 under the two query/key init conventions (variance 1/d_model and 1/d_k)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting._encoder_init import plot_encoder_init_rows
from sigprop.plotting.style import Style

LABELS = {"d_model": r"$W_Q, W_K$ var. $1/d$", "d_k": r"$W_Q, W_K$ var. $1/d_k$"}


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Top row: queries and keys with variance 1/d_model (Figs 3, 4, 9); bottom row: 1/d_k per head."""
    t = tables["figS4"]
    rows = [(LABELS.get(q, q), t[t.qk_fan == q]) for q in ("d_model", "d_k") if q in set(t.qk_fan)]
    return plot_encoder_init_rows(rows, style, "POST-LN")
