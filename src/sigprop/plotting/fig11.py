"""Fig 11: autodiff Jacobian norms of one attention layer against the closed-form formulas."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from sigprop.plotting.style import THEORY, Style, band

SWEEPS = {
    "n_tokens": "sequence length n",
    "d_model": "width d",
    "s": r"input std $\sigma_x$",
    "rho": r"correlation $\rho$",
}
LOG_X = {"n_tokens", "d_model"}


def _sweep(t: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows of the sweep over ``key``: the other keys at their most common (fixed) value."""
    others = [k for k in SWEEPS if k != key]
    mode = {k: t[k].mode().iloc[0] for k in others}
    mask = pd.Series(True, index=t.index)
    for k, v in mode.items():
        mask &= t[k] == v
    return t[mask].sort_values(key)


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: queries, values; columns: n, d, s, rho. Markers autodiff (softmax, uniform), dashed formula."""
    t = tables["fig11"]
    fig, axes = style.figure(2, 4, height_ratio=0.9)
    colors = dict(zip(["softmax", "uniform"], style.colors(2)))
    for row, (metric, ylabel) in enumerate(
        (("grad_q_sq", r"$\|\partial S/\partial W_Q\|_F^2$"), ("grad_v_sq", r"$\|\partial S/\partial W_V\|_F^2$"))
    ):
        for col, (key, xlabel) in enumerate(SWEEPS.items()):
            ax = axes[row][col]
            for att, color in colors.items():
                s = _sweep(t[(t.metric == metric) & (t.attention == att)], key)
                band(ax, s[key], s["mean"], s.ci_low, s.ci_high, color, f"autodiff, {att}", marker="o", ms=2.5)
            th = _sweep(t[t.metric == metric], key).drop_duplicates(key)
            ax.plot(th[key], th.theory, color="black", label="formula", **THEORY)
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
            if key in LOG_X:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(xlabel)
            if col == 0:
                ax.set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3)
    return fig
