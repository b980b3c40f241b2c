"""Fig 10: density of |X^l|_F^2 at depths 1..10 under uniform and softmax attention."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sigprop.plotting.style import Style


def _panel_title(att: str, std: str) -> str:
    std_label = r"$1/\sqrt{d}$" if str(std) == "1/sqrt(d)" else str(std)
    return f"{att} attention, input std {std_label}"


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """One panel per (attention, input std); hue = depth; red dashed = empirical mean, blue dashed = theory, at the last depth."""
    t = tables["fig10"].copy()
    panels = t[["attention", "input_std"]].drop_duplicates().sort_values(["input_std", "attention"], ascending=[True, False])
    fig, axes = style.figure(1, len(panels), height_ratio=0.9, squeeze=False)
    t["log10_sq_norm"] = np.log10(t.sq_norm)
    last = int(t.layer.max())
    for ax, (_, row) in zip(axes[0], panels.iterrows()):
        s = t[(t.attention == row.attention) & (t.input_std == row.input_std)]
        sns.kdeplot(data=s, x="log10_sq_norm", hue="layer", palette="viridis", ax=ax, common_norm=False,
                    legend=ax is axes[0][-1], lw=0.9)
        end = s[s.layer == last]
        ax.axvline(np.log10(end.emp_mean.iloc[0]), color="red", ls="--", lw=1.0)
        ax.axvline(np.log10(end.theory_mean.iloc[0]), color="blue", ls="--", lw=1.0)
        ax.set_title(_panel_title(row.attention, row.input_std), loc="left")
        ax.set_xlabel(r"$\log_{10}\|X^l\|_F^2$")
    legend = axes[0][-1].get_legend()
    if legend is not None:
        legend.set_title("depth")
    axes[0][0].plot([], [], color="red", ls="--", label=f"empirical mean, depth {last}")
    axes[0][0].plot([], [], color="blue", ls="--", label=f"theoretical mean, depth {last}")
    axes[0][0].legend(loc="upper left")
    return fig
