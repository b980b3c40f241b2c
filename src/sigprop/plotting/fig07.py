"""Fig 7: how far softmax attention is from uniform, against the key dimension."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.analysis.aggregate import loglog_slope
from sigprop.plotting.style import THEORY, Style, band

FIT_FROM = 1024


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Log-log mean with 95% band, a d_k^-2 reference (dashed) and the slope fitted over d_k >= 1024."""
    t = tables["fig07"].sort_values("d_k")
    fig, ax = style.figure(1, 1, height_ratio=0.55)
    color = style.colors(1)[0]
    band(ax, t.d_k, t["mean"], t.ci_low, t.ci_high, color, "measured", marker="o", ms=3)
    tail = t[t.d_k >= FIT_FROM]
    if len(tail) >= 2:
        slope = loglog_slope(tail.d_k, tail["mean"])
        ref_x = np.array([tail.d_k.min(), tail.d_k.max()], dtype=float)
        ref_y = tail["mean"].iloc[0] * (ref_x / ref_x[0]) ** -2.0
        ax.plot(ref_x, ref_y * 1.5, color="black", label=r"$\propto d_k^{-2}$", **THEORY)
        ax.text(0.03, 0.05, f"fitted slope (d_k ≥ {FIT_FROM}): {slope:.2f}", transform=ax.transAxes)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(r"key dimension $d_k$")
    ax.set_ylabel(r"$\frac{1}{n^2}\,\|A - \frac{1}{n}\mathbf{1}\mathbf{1}^\top\|_F^2$")
    n, d_v = int(t.n_tokens.iloc[0]), int(t.d_v.iloc[0])
    ax.set_title(f"softmax attention at Glorot init, n = {n}, $d_v$ = {d_v}", loc="left")
    ax.legend(loc="upper right")
    return fig
