"""Shared layout of Figs 3 and 9 (POST-LN / PRE-LN encoder at init)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import ALPHA_LABELS, Style, band

ALPHAS = ["1", "0.5", "0.25", "1/sqrt(L)"]


def plot_encoder_init(table: pd.DataFrame, style: Style, norm_label: str) -> Figure:
    """(a) token cosine, (b) |grad Wq|, |grad Wk| over layer 1, (c) |grad Wv| over layer 1, per alpha."""
    fig, axes = style.figure(1, 3, height_ratio=0.95)
    alphas = [a for a in ALPHAS if a in set(table.alpha)] + sorted(set(table.alpha) - set(ALPHAS))
    colors = dict(zip(alphas, style.colors(len(alphas))))
    panels = [
        ("cosine", "token cosine", "(a)"),
        ("grad_ratio_q", r"$|\nabla W_Q^l| / |\nabla W_Q^1|$", "(b)"),
        ("grad_ratio_v", r"$|\nabla W_V^l| / |\nabla W_V^1|$", "(c)"),
    ]
    for ax, (metric, ylabel, tag) in zip(axes, panels):
        for alpha in alphas:
            t = table[(table.metric == metric) & (table.alpha == alpha)].sort_values("layer")
            band(ax, t.layer, t["mean"], t.ci_low, t.ci_high, colors[alpha], ALPHA_LABELS.get(alpha, alpha))
            if metric == "grad_ratio_q":
                k = table[(table.metric == "grad_ratio_k") & (table.alpha == alpha)].sort_values("layer")
                ax.plot(k.layer, k["mean"], color=colors[alpha], ls=":", lw=1.0)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{tag} {norm_label}", loc="left")
        if metric == "grad_ratio_q":
            ax.set_yscale("log")
    axes[0].set_ylim(0, 1.02)
    axes[1].plot([], [], color="grey", ls=":", lw=1.0, label=r"keys $W_K$ (dotted)")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return fig
