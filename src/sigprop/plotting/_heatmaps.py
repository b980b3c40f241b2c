"""Shared layout of Figs 12 and 13: a grid of (n, d) heatmaps over (s, rho), one colour scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sigprop.plotting.style import Style


def plot_heatmaps(table: pd.DataFrame, style: Style, vlim: float, title: str) -> Figure:
    """Rows: input std s; columns: correlation rho; inside: n (x) by d (y); colour log10 |grad Q|/|grad V|."""
    ss, rhos = sorted(table.s.unique()), sorted(table.rho.unique())
    fig, axes = style.figure(len(ss), len(rhos), height_ratio=1.0, squeeze=False)
    for i, s in enumerate(ss):
        for j, rho in enumerate(rhos):
            ax = axes[i][j]
            sub = table[(table.s == s) & (table.rho == rho)]
            grid = sub.pivot(index="d_model", columns="n_tokens", values="log10_ratio").sort_index(ascending=False)
            last = i == len(ss) - 1 and j == len(rhos) - 1
            sns.heatmap(
                grid,
                ax=ax,
                cmap="RdBu_r",
                vmin=-vlim,
                vmax=vlim,
                center=0,
                cbar=last,
                cbar_kws={"label": r"$\log_{10}\,|\nabla W_Q| / |\nabla W_V|$"} if last else None,
                xticklabels=2,
                yticklabels=2,
                square=True,
            )
            ax.set_xlabel("n" if i == len(ss) - 1 else "")
            ax.set_ylabel(f"s = {s:g}\nd" if j == 0 else "")
            if i == 0:
                ax.set_title(rf"$\rho$ = {rho:g}")
            ax.tick_params(labelsize=style.font_size - 2.5, length=0)
    fig.suptitle(title, fontsize=style.font_size)
    return fig


def shared_limit(*tables: pd.DataFrame) -> float:
    """The symmetric colour limit that covers every table."""
    values = np.concatenate([t.log10_ratio.to_numpy() for t in tables])
    return float(np.nanmax(np.abs(values[np.isfinite(values)])))
