"""Fig 10: density of |X^l|_F^2 at depths 1..10 under uniform and softmax attention."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sigprop.params import residual_scale_label, residual_scale_order
from sigprop.plotting.style import Style


def _std_label(std: object) -> str:
    return r"$1/\sqrt{d}$" if str(std) == "1/sqrt(d)" else f"{float(std):g}"


def _panel_order(t: pd.DataFrame) -> list[tuple[str, object]]:
    """Uniform before softmax, then the smaller input scale first (1/sqrt(d) before numbers)."""
    panels = t[["attention", "input_std"]].drop_duplicates().itertuples(index=False)
    return sorted(panels, key=lambda p: (str(p[1]) != "1/sqrt(d)", p[0] != "uniform", str(p[1])))


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """One row per residual scale alpha, one panel per (attention, input std); colour = depth.

    Red dashed: empirical mean at the last depth; blue dashed: the theoretical mean there.
    """
    t = tables["fig10"].copy()
    if "alpha" not in t:
        t["alpha"] = "1"
    t["log10_sq_norm"] = np.log10(t.sq_norm)
    panels = _panel_order(t)
    alphas = residual_scale_order(t.alpha)
    fig, axes = style.figure(len(alphas), len(panels), height_ratio=0.85, squeeze=False, sharey=False)
    depths = sorted(t.layer.unique())
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(min(depths), max(depths))
    palette = {d: cmap(norm(d)) for d in depths}
    last = int(max(depths))
    for r, alpha in enumerate(alphas):
        for i, (ax, (att, std)) in enumerate(zip(axes[r], panels)):
            s = t[(t.attention == att) & (t.input_std == std) & (t.alpha == alpha)]
            if s.empty:
                ax.set_visible(False)
                continue
            sns.kdeplot(
                data=s, x="log10_sq_norm", hue="layer", palette=palette, ax=ax, common_norm=False, legend=False,
                lw=0.9,
            )
            end = s[s.layer == last]
            emp, th = end.emp_mean.iloc[0], end.theory_mean.iloc[0]
            ax.axvline(np.log10(emp), color="red", ls="--", lw=1.0)
            ax.axvline(np.log10(th), color="blue", ls="--", lw=1.0)
            tag = "abcdefghijkl"[r * len(panels) + i]
            ax.set_title(f"({tag}) {att}, std {_std_label(std)}", loc="left")
            ax.text(0.98, 0.95, f"emp./theory\n= {emp / th:.2f}", transform=ax.transAxes, ha="right", va="top",
                    fontsize=style.font_size - 2, bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 1})
            ax.set_xlabel(r"$\log_{10}\|X^l\|_F^2$" if r == len(alphas) - 1 else "")
            ax.set_ylabel(f"{residual_scale_label(alpha)}\ndensity" if i == 0 else "")
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label="depth l", aspect=30)
    axes[0][0].plot([], [], color="red", ls="--", label=f"empirical mean, depth {last}")
    axes[0][0].plot([], [], color="blue", ls="--", label=f"theoretical mean, depth {last}")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig
