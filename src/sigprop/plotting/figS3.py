"""Supplementary Fig S3: token cosine beside the relative residual and the stable rank, per layer at init."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.params import residual_scale_label, residual_scale_order
from sigprop.plotting.style import Style, band

NORMS = {"post": "POST-LN", "pre": "PRE-LN", "none": "No-LN"}
PANELS = {
    "cosine": "token cosine",
    "rel_residual": "relative residual",
    "stable_rank": "stable rank",
}


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: POST-LN, PRE-LN, No-LN; columns: cosine, relative residual, stable rank; colour = alpha."""
    t = tables["figS3"]
    norms = [n for n in NORMS if n in set(t.norm)]
    fig, axes = style.figure(len(norms), 3, height_ratio=0.75, squeeze=False, sharex=True)
    alphas = residual_scale_order(t.alpha)
    colors = dict(zip(alphas, style.colors(len(alphas))))
    for i, norm in enumerate(norms):
        for j, (metric, ylabel) in enumerate(PANELS.items()):
            ax = axes[i, j]
            for alpha in alphas:
                s = t[(t.norm == norm) & (t.metric == metric) & (t.alpha == alpha)].sort_values("layer")
                if len(s):
                    band(ax, s.layer, s["mean"], s.ci_low, s.ci_high, colors[alpha], residual_scale_label(alpha))
            ax.set_title(f"({chr(97 + 3 * i + j)}) {NORMS[norm]}", loc="left")
            ax.set_ylabel(ylabel)
            if metric == "stable_rank":
                ax.set_ylim(bottom=1 - 0.05 * (ax.get_ylim()[1] - 1))
            elif metric == "cosine":
                ax.set_ylim(0, 1.02)
            else:
                ax.set_ylim(bottom=0)
            if i == len(norms) - 1:
                ax.set_xlabel("layer")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(r"relative residual $\|X-\mathbf{1}\bar{x}^\top\|_F/\|X\|_F$ (0: rank collapse), "
                 r"stable rank $\|X\|_F^2/\|X\|_2^2$ (1: rank one)", fontsize=style.font_size)
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return fig
