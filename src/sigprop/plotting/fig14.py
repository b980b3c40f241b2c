"""Fig 14: during SGD-temperature training, cosine, alpha1, alpha2 and token norm per layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sigprop.plotting._translation import dataset_title
from sigprop.plotting.style import Style

PANELS = [("cosine", "token cosine"), ("alpha1", r"trained $\alpha_1$"), ("alpha2", r"trained $\alpha_2$"),
          ("act_norm", r"token norm $|X_k|$")]
STACKS = ["encoder", "decoder"]


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: encoder, decoder; columns: the four quantities against the layer; colour: update step."""
    t = tables["fig14"]
    fig, axes = style.figure(2, 4, height_ratio=0.95, sharex="row")
    steps = np.sort(t.step.unique())
    palette = dict(zip(steps, sns.color_palette("viridis", len(steps))))
    for row, stack in enumerate(STACKS):
        for col, (metric, label) in enumerate(PANELS):
            ax = axes[row, col]
            for step in steps:
                s = t[(t.side == stack) & (t.metric == metric) & (t.step == step)].sort_values("layer")
                ax.plot(s.layer, s.value, color=palette[step], marker="o", ms=2.5, label=f"step {int(step)}")
            ax.set_xlabel(f"{stack} layer" + (" (0 = embedding)" if metric in ("cosine", "act_norm") else ""))
            ax.set_ylabel(label)
            if metric == "cosine":
                ax.set_ylim(-0.05, 1.02)
    axes[0, 0].legend(loc="best", fontsize=style.font_size - 2)
    r = t.iloc[0]
    status = " (diverged)" if bool(t.diverged.any()) else ""
    fig.suptitle(f"{r.method_label}, {int(r.layers)}+{int(r.layers)} blocks, seed {int(r.seed)}{status} - "
                 f"{dataset_title(t)}", fontsize=style.font_size)
    return fig
