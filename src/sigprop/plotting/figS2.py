"""Supplementary Fig S2: the last layer's correlation and squared norm against the depth L, to the limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import THEORY, Style

SCALINGS = {"constant alpha": r"$\alpha=1$", "alpha^2 = 1/L": r"$\alpha^2=1/L$"}
ATTENTION = {"uniform": ("o", "-"), "softmax": ("s", ":")}
LIMIT = {"color": "grey", "ls": (0, (1, 1.5)), "lw": 1.2}


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: alpha = 1, alpha^2 = 1/L; columns: rho^L, |X^L|^2, against L (log). Markers: measured (95% CI),
    uniform solid, softmax dotted; dashed: the finite-L closed form; dotted grey: the L -> infinity limit."""
    t = tables["figS2"]
    scalings = [s for s in SCALINGS if s in set(t.scaling)]
    fig, axes = style.figure(len(scalings), 2, height_ratio=0.6, squeeze=False, sharex=True)
    colors = dict(zip(ATTENTION, style.colors(len(ATTENTION))))
    depths = sorted(int(d) for d in t.depth.unique())
    for i, scaling in enumerate(scalings):
        for j, (metric, ylabel) in enumerate((("correlation", r"$\rho^L$"), ("sq_norm", r"$\|X^L\|_F^2$"))):
            ax = axes[i, j]
            for att, (marker, ls) in ATTENTION.items():
                s = t[(t.metric == metric) & (t.scaling == scaling) & (t.attention == att)].sort_values("depth")
                if s.empty:
                    continue
                err = np.vstack([s["mean"] - s.ci_low, s.ci_high - s["mean"]])
                ax.errorbar(s.depth, s["mean"], yerr=np.where(np.isfinite(err), err, 0), color=colors[att],
                            marker=marker, ms=3, ls=ls, lw=0.9, capsize=1.5, label=f"measured, {att} attention")
            th = t[(t.metric == metric) & (t.scaling == scaling)].drop_duplicates("depth").sort_values("depth")
            ax.plot(th.depth, th.theory, color="black", label="closed form at finite $L$ (uniform)", **THEORY)
            lim = float(th.limit.iloc[0]) if len(th) else np.nan
            if np.isfinite(lim):
                ax.axhline(lim, label=r"limit $L\to\infty$", **LIMIT)
            ax.set_title(f"({chr(97 + 2 * i + j)}) {SCALINGS[scaling]}", loc="left")
            ax.set_ylabel(ylabel)
            if metric == "sq_norm" and scaling == "constant alpha":
                ax.set_yscale("log")
            if metric == "correlation" and scaling == "constant alpha":
                ax.set_ylim(-0.02, 1.05)
            ax.set_xscale("log", base=2)
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.minorticks_off()
            if i == len(scalings) - 1:
                ax.set_xlabel("depth $L$ (blocks); last layer $l = L$")
    handles, labels = axes[-1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    return fig
