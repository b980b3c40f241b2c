"""Fig 3: POST-LN encoder at initialisation."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting._encoder_init import plot_encoder_init
from sigprop.plotting.style import Style


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Token cosine and relative Q/K, V gradient norms per layer, one line per residual scale."""
    return plot_encoder_init(tables["fig03"], style, "POST-LN")
