"""Fig 4: token correlation per layer for PRE-LN, POST-LN and No-LN."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import Style, band

NORMS = {"pre": "PRE-LN", "post": "POST-LN", "none": "No-LN"}


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Solid: alpha = 1; dashed: alpha = 1/sqrt(L); dotted black: theory for No-LN (linear, uniform)."""
    t = tables["fig04"]
    fig, ax = style.figure(1, 1, height_ratio=0.45)
    colors = dict(zip(NORMS, style.colors(3)))
    for norm, label in NORMS.items():
        for alpha, ls in (("1", "-"), ("1/sqrt(L)", "--")):
            s = t[(t.norm == norm) & (t.alpha == alpha)].sort_values("layer")
            if s.empty:
                continue
            band(ax, s.layer, s["mean"], s.ci_low, s.ci_high, colors[norm], label if ls == "-" else None, ls=ls)
            if norm == "none":
                ax.plot(s.layer, s.theory, color="black", ls=":", lw=1.0)
    ax.plot([], [], color="grey", ls="-", label=r"$\alpha = 1$")
    ax.plot([], [], color="grey", ls="--", label=r"$\alpha = 1/\sqrt{L}$")
    ax.plot([], [], color="black", ls=":", label="theory (No-LN, linear, uniform)")
    ax.set_xlabel("layer")
    ax.set_ylabel(r"token correlation $\rho^l$")
    ax.set_ylim(0, 1.02)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center")
    return fig
