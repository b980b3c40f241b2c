"""Fig 4: token correlation per layer for PRE-LN, POST-LN and No-LN."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import Style, band

NORMS = {"pre": "PRE-LN", "post": "POST-LN", "none": "No-LN"}
THEORY_COLOR = "0.45"


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Solid: alpha = 1; dashed: alpha = 1/sqrt(L). Coloured: the ReLU, softmax encoder; grey: No-LN with
    linear activation and uniform attention (the theory's setting), with the theory dotted black on it."""
    t = tables["fig04"]
    if "activation" not in t:
        t = t.assign(activation="relu", attention="softmax")
    fig, ax = style.figure(1, 1, height_ratio=0.45)
    colors = dict(zip(NORMS, style.colors(3)))
    model = t[(t.activation == "relu") & (t.attention == "softmax")]
    matched = t[(t.norm == "none") & (t.activation == "linear") & (t.attention == "uniform")]
    for alpha, ls in (("1", "-"), ("1/sqrt(L)", "--")):
        for norm, label in NORMS.items():
            s = model[(model.norm == norm) & (model.alpha == alpha)].sort_values("layer")
            if not s.empty:
                band(ax, s.layer, s["mean"], s.ci_low, s.ci_high, colors[norm], label if ls == "-" else None, ls=ls)
        s = matched[matched.alpha == alpha].sort_values("layer")
        if not s.empty:
            lab = "No-LN, linear, uniform attention" if ls == "-" else None
            band(ax, s.layer, s["mean"], s.ci_low, s.ci_high, THEORY_COLOR, lab, ls=ls)
            ax.plot(s.layer, s.theory, color="black", ls=":", lw=1.0)
    ax.plot([], [], color="grey", ls="-", label=r"$\alpha = 1$")
    ax.plot([], [], color="grey", ls="--", label=r"$\alpha = 1/\sqrt{L}$")
    if not matched.empty:
        ax.plot([], [], color="black", ls=":", label="theory (No-LN, linear,\nuniform attention)")
    ax.set_xlabel("layer")
    ax.set_ylabel(r"token correlation $\rho^l$")
    ax.set_ylim(0, 1.02)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center")
    return fig
