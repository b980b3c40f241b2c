"""Fig 13: the closed-form log-ratio of query and value gradient norms over (rho, s, n, d)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting._heatmaps import plot_heatmaps, shared_limit
from sigprop.plotting.style import Style


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Heatmaps from the formulas of docs/init-time.md, on Fig 12's colour scale."""
    return plot_heatmaps(
        tables["fig13"], style, shared_limit(tables["fig12"], tables["fig13"]), "theory (uniform-attention formulas)"
    )
