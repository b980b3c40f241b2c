"""Supplementary Fig S6: correlation and squared norm per layer under fixed attention patterns, theory beside
simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sigprop.params import residual_scale_label, residual_scale_order
from sigprop.patterns import PATTERNS
from sigprop.plotting.style import Style

MARKERS = {"bidirectional": "o", "causal": "s", "banded": "^"}
METRICS = (("correlation", r"correlation $\rho^l$"), ("sq_norm", r"$\|X^l\|_F^2$"))


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: correlation, squared norm (log); columns: the residual scales. Markers with 95% intervals: the
    simulation per pattern; solid lines of the same colour: the closed recursion."""
    t = tables["figS6"]
    alphas = residual_scale_order(t.alpha)
    patterns = [p for p in PATTERNS if p in set(t.pattern)]
    colors = dict(zip(patterns, style.colors(len(patterns))))
    fig, axes = style.figure(2, len(alphas), height_ratio=0.75, squeeze=False, sharex=True)
    band = int(t.band.iloc[0])
    for j, alpha in enumerate(alphas):
        for i, (metric, ylabel) in enumerate(METRICS):
            ax = axes[i, j]
            for k, pattern in enumerate(patterns):
                s = t[(t.alpha == alpha) & (t.metric == metric) & (t.pattern == pattern)].sort_values("layer")
                label = f"{pattern} (|i - j| <= {band})" if pattern == "banded" else pattern
                ax.plot(s.layer, s.theory, color=colors[pattern], lw=1.0)
                err = np.clip(np.vstack([s["mean"] - s.ci_low, s.ci_high - s["mean"]]), 0, None)
                ax.errorbar(s.layer + 0.12 * (k - 1), s["mean"], yerr=np.where(np.isfinite(err), err, 0), ls="-",
                            lw=0, elinewidth=0.8, marker=MARKERS.get(pattern, "o"), ms=3, color=colors[pattern],
                            capsize=1.5, label=label)
            if metric == "sq_norm":
                ax.set_yscale("log")
            ax.set_title(f"({chr(97 + i * len(alphas) + j)}) {residual_scale_label(alpha)}", loc="left")
            if j == 0:
                ax.set_ylabel(ylabel)
            if i == len(METRICS) - 1:
                ax.set_xlabel("layer $l$")
    n, depth = int(t.n_tokens.iloc[0]), int(t.n_layers.iloc[0])
    fig.suptitle(f"No-LN, linear, fixed attention: n = {n} tokens, L = {depth} blocks, {int(t.n_seeds.min())} seeds",
                 fontsize="medium")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [Line2D([], [], color="black", lw=1.0), Line2D([], [], color="black", marker="o", ms=3, ls="none")]
    labels += ["closed recursion", "simulation (95% CI)"]
    fig.legend(handles, labels, loc="outside lower center", ncols=5, fontsize="small")
    return fig
