"""Fig 10: density of |X^l|_F^2 at depths 1..10 under uniform and softmax attention."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sigprop.plotting.style import Style


def _std_label(std: object) -> str:
    return r"$1/\sqrt{d}$" if str(std) == "1/sqrt(d)" else f"{float(std):g}"


def _panel_order(t: pd.DataFrame) -> list[tuple[str, object]]:
    """Uniform before softmax, then the smaller input scale first (1/sqrt(d) before numbers)."""
    panels = t[["attention", "input_std"]].drop_duplicates().itertuples(index=False)
    return sorted(panels, key=lambda p: (str(p[1]) != "1/sqrt(d)", p[0] != "uniform", str(p[1])))


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """One panel per (attention, input std); colour = depth.

    Red dashed: empirical mean at the last depth; blue dashed: the theoretical mean there.
    """
    t = tables["fig10"].copy()
    t["log10_sq_norm"] = np.log10(t.sq_norm)
    panels = _panel_order(t)
    fig, axes = style.figure(1, len(panels), height_ratio=0.85, squeeze=False, sharey=False)
    depths = sorted(t.layer.unique())
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(min(depths), max(depths))
    palette = {d: cmap(norm(d)) for d in depths}
    last = int(max(depths))
    for i, (ax, (att, std)) in enumerate(zip(axes[0], panels)):
        s = t[(t.attention == att) & (t.input_std == std)]
        sns.kdeplot(
            data=s, x="log10_sq_norm", hue="layer", palette=palette, ax=ax, common_norm=False, legend=False, lw=0.9
        )
        end = s[s.layer == last]
        ax.axvline(np.log10(end.emp_mean.iloc[0]), color="red", ls="--", lw=1.0)
        ax.axvline(np.log10(end.theory_mean.iloc[0]), color="blue", ls="--", lw=1.0)
        ax.set_title(f"({'abc'[i]}) {att}, std {_std_label(std)}", loc="left")
        ax.set_xlabel(r"$\log_{10}\|X^l\|_F^2$")
        if i:
            ax.set_ylabel("")
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0].tolist(), label="depth l", aspect=30)
    axes[0][0].plot([], [], color="red", ls="--", label=f"empirical mean, depth {last}")
    axes[0][0].plot([], [], color="blue", ls="--", label=f"theoretical mean, depth {last}")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig
