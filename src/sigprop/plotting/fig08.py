"""Fig 8: squared norm and correlation of the tokens per layer, No-LN, linear."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.params import residual_scale_label, residual_scale_order
from sigprop.plotting.style import THEORY, Style, band

ATTENTION = {"uniform": "-", "softmax": ":"}


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Left |X^l|^2 (log), right rho^l; colour = scaling, solid uniform, dotted softmax, dashed theory."""
    t = tables["fig08"]
    fig, axes = style.figure(1, 2, height_ratio=0.8)
    alphas = residual_scale_order(t.alpha)
    colors = dict(zip(alphas, style.colors(len(alphas))))
    for ax, metric, ylabel in (
        (axes[0], "sq_norm", r"$\|X^l\|_F^2$"),
        (axes[1], "correlation", r"correlation $\rho^l$"),
    ):
        for alpha in alphas:
            alabel = residual_scale_label(alpha)
            for att, ls in ATTENTION.items():
                s = t[(t.metric == metric) & (t.alpha == alpha) & (t.attention == att)].sort_values("layer")
                if s.empty:
                    continue
                band(ax, s.layer, s["mean"], s.ci_low, s.ci_high, colors[alpha], f"{alabel}, {att}", ls=ls)
            th = t[(t.metric == metric) & (t.alpha == alpha)].drop_duplicates("layer").sort_values("layer")
            ax.plot(th.layer, th.theory, color="black", **THEORY)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
    axes[0].set_yscale("log")
    rho = t[t.metric == "correlation"]
    axes[1].set_ylim(min(-0.02, float(rho.ci_low.min()) - 0.02), 1.02)
    axes[1].plot([], [], color="black", label="theory (uniform attention)", **THEORY)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3)
    return fig
