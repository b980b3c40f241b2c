"""Fig 12: empirical log-ratio of query and value gradient norms over (rho, s, n, d)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting._heatmaps import plot_heatmaps, shared_limit
from sigprop.plotting.style import Style


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Heatmaps measured by autodiff (softmax attention), on Fig 13's colour scale."""
    return plot_heatmaps(
        tables["fig12"], style, shared_limit(tables["fig12"], tables["fig13"]), "measured (autodiff, softmax attention)"
    )
