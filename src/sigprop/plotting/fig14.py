"""Fig 14: during SGD-temperature training, cosine, alpha1, alpha2 and token norm per layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sigprop.plotting._translation import dataset_title
from sigprop.plotting.style import Style

PANELS = [
    ("cosine", "token cosine"),
    ("alpha1", r"trained $\alpha_1$"),
    ("alpha2", r"trained $\alpha_2$"),
    ("act_norm", r"token norm $|X_k|$"),
]
SIDES = ["encoder", "decoder"]


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: encoder, decoder; columns: the four quantities against the layer (0 = embedding); colour: update step."""
    t = tables["fig14"]
    fig, axes = style.figure(2, 4, height_ratio=1.1)
    steps = np.sort(t.step.unique())
    palette = dict(zip(steps, sns.color_palette("viridis", len(steps))))
    # tau at each drawn step: under a tau warm-up the update-0 curve is the model at tau = 0 (uniform attention)
    tau = t[t.metric == "tau"].groupby("step").value.first() if "tau" in set(t.metric) else pd.Series(dtype=float)
    names = {s: f"{int(s)}" + (f" (tau = {tau[s]:.3g}{': uniform attention' if tau[s] == 0 else ''})"
                               if s in tau.index else "") for s in steps}
    for row, side in enumerate(SIDES):
        for col, (metric, label) in enumerate(PANELS):
            ax = axes[row, col]
            for step in steps:
                s = t[(t.side == side) & (t.metric == metric) & (t.step == step)].sort_values("layer")
                ax.plot(s.layer, s.value, color=palette[step], marker="o", ms=2.5, label=names[step])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlim(-0.3, t.layer.max() + 0.3)
            if row == 0:
                ax.set_title(label)
            if row == 1:
                ax.set_xlabel("layer")
            if metric == "cosine":
                ax.set_ylim(-0.05, 1.02)
        axes[row, 0].set_ylabel(side, fontsize=style.font_size + 1, fontweight="bold")
    fig.legend(
        *axes[0, 0].get_legend_handles_labels(),
        title="update step (inverse temperature)" if len(tau) else "update step",
        loc="outside right center",
        fontsize=style.font_size - 1,
        title_fontsize=style.font_size - 1,
    )
    r = t.iloc[0]
    status = ", diverged" if bool(t.diverged.any()) else ""
    fig.suptitle(
        f"{r.method_label}, {int(r.layers)}+{int(r.layers)} blocks, seed {int(r.seed)}{status}\n{dataset_title(t)}",
        fontsize=style.font_size,
    )
    return fig
