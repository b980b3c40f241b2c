"""Shared layout of Figs 3 and 9 (POST-LN / PRE-LN encoder at init) and of Fig S4 (one row per init)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.params import residual_scale_label, residual_scale_order
from sigprop.plotting.style import Style, band

PANELS = [
    ("cosine", "token cosine"),
    ("grad_ratio_q", r"$|\nabla W_Q^l| / |\nabla W_Q^1|$"),
    ("grad_ratio_v", r"$|\nabla W_V^l| / |\nabla W_V^1|$"),
]


def _draw_row(axes: np.ndarray, table: pd.DataFrame, colors: dict, alphas: list[str], title: str, tags: str,
              row_label: str = "") -> None:
    for ax, (metric, ylabel), tag in zip(axes, PANELS, tags):
        for alpha in alphas:
            t = table[(table.metric == metric) & (table.alpha == alpha)].sort_values("layer")
            band(ax, t.layer, t["mean"], t.ci_low, t.ci_high, colors[alpha], residual_scale_label(alpha))
            if metric == "grad_ratio_q":
                k = table[(table.metric == "grad_ratio_k") & (table.alpha == alpha)].sort_values("layer")
                ax.plot(k.layer, k["mean"], color=colors[alpha], ls=":", lw=1.0)
        if metric == "grad_ratio_v":
            ax.axhline(1.0, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{row_label}\n{ylabel}" if row_label and metric == "cosine" else ylabel)
        ax.set_title(f"({tag}) {title}", loc="left")
        if metric == "grad_ratio_q":
            ax.set_yscale("log")
    axes[0].set_ylim(0, 1.02)


def _alphas(tables: list[pd.DataFrame]) -> list[str]:
    return residual_scale_order(set().union(*(set(t.alpha) for t in tables)))


def plot_encoder_init(table: pd.DataFrame, style: Style, norm_label: str) -> Figure:
    """(a) token cosine, (b) |grad Wq|, |grad Wk| over layer 1, (c) |grad Wv| over layer 1, per alpha."""
    return plot_encoder_init_rows([("", table)], style, norm_label)


def plot_encoder_init_rows(rows: list[tuple[str, pd.DataFrame]], style: Style, norm_label: str) -> Figure:
    """One row of the three panels per (label, table); the value panels of all rows share their y range."""
    fig, axes = style.figure(len(rows), 3, height_ratio=0.95, squeeze=False)
    alphas = _alphas([t for _, t in rows])
    colors = dict(zip(alphas, style.colors(len(alphas))))
    letters = "abcdefghijkl"
    for i, ((label, table), row) in enumerate(zip(rows, axes)):
        _draw_row(row, table, colors, alphas, norm_label, letters[3 * i: 3 * i + 3], label)
    if len(rows) > 1:
        for col in (1, 2):
            lo = min(ax.get_ylim()[0] for ax in axes[:, col])
            hi = max(ax.get_ylim()[1] for ax in axes[:, col])
            for ax in axes[:, col]:
                ax.set_ylim(lo, hi)
    axes[0, 1].plot([], [], color="grey", ls=":", lw=1.0, label=r"keys $W_K$ (dotted)")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return fig
