"""Supplementary Fig S2: the last layer's correlation and squared norm against the depth L, to the limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import THEORY, Style

SCALINGS = {"constant alpha": r"$\alpha=1$", "alpha^2 = 1/L": r"$\alpha^2=1/L$"}
ATTENTION = {"uniform": ("o", "-"), "softmax": ("s", ":")}
LIMIT = {"ls": (0, (1, 1.5)), "lw": 1.0}


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Left rho^L, right |X^L|^2 (log), against L (log); markers measured (95% CI), dashed the finite-L closed
    form, dotted grey the L -> infinity limit (rho: 1 for constant alpha)."""
    t = tables["figS2"]
    fig, axes = style.figure(1, 2, height_ratio=0.8)
    colors = dict(zip(SCALINGS, style.colors(len(SCALINGS))))
    for ax, metric, ylabel in ((axes[0], "correlation", r"last-layer correlation $\rho^L$"),
                               (axes[1], "sq_norm", r"$\|X^L\|_F^2$")):
        for scaling, slabel in SCALINGS.items():
            c = colors[scaling]
            for att, (marker, ls) in ATTENTION.items():
                s = t[(t.metric == metric) & (t.scaling == scaling) & (t.attention == att)].sort_values("depth")
                if s.empty:
                    continue
                err = np.vstack([s["mean"] - s.ci_low, s.ci_high - s["mean"]])
                ax.errorbar(s.depth, s["mean"], yerr=np.where(np.isfinite(err), err, 0), color=c, marker=marker,
                            ms=3, ls=ls, lw=0.8, capsize=1.5, label=f"{slabel}, {att}")
            th = t[(t.metric == metric) & (t.scaling == scaling)].drop_duplicates("depth").sort_values("depth")
            if th.empty:
                continue
            ax.plot(th.depth, th.theory, color="black", **THEORY)
            lim = th.limit.iloc[0]
            if np.isfinite(lim):
                ax.axhline(lim, color=c, alpha=0.8, **LIMIT)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth $L$ (blocks)")
        ax.set_ylabel(ylabel)
        depths = sorted(t.depth.unique())
        ax.set_xticks(depths[:: max(1, len(depths) // 7)])
        ax.set_xticklabels([str(int(d)) for d in depths[:: max(1, len(depths) // 7)]])
        ax.minorticks_off()
    axes[1].set_yscale("log")
    axes[0].set_ylim(-0.02, 1.05)
    axes[0].plot([], [], color="black", label="closed form, finite $L$ (uniform)", **THEORY)
    axes[0].plot([], [], color="grey", label=r"limit $L\to\infty$", **LIMIT)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3)
    return fig
