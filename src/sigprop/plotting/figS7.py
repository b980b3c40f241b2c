"""Supplementary Fig S7: real architectures (transformers) at initialisation, per block against l/L."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from sigprop.plotting.style import Style
from sigprop.tasks.probe import ARM_LABELS, ARMS, MODEL_LABELS

ROWS = {
    "cosine": "token cosine",
    "norm": "mean token norm",
    "qv_ratio": r"$|\nabla W_Q| / |\nabla W_V|$",
    "out_std_rel": "out-proj. std\n" + r"/ $(0.02/\sqrt{2L})$",
}
LOG_ROWS = {"qv_ratio", "out_std_rel"}
MIN_SPAN = 5.0  # smallest ratio of a log axis's limits
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
STYLES = ("-", "--")  # the model's first (as built) and second arm; the twin arm is a cross-check, not drawn


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Columns: the models; rows: cosine, norm, query/value gradient ratio, output-weight std; x: l / L; colour:
    depth L; line style: arm."""
    t = tables["figS7"]
    models = [m for m in ARMS if m in set(t.model)]
    depths = sorted(int(d) for d in t.n_layers.unique())
    colors = dict(zip(depths, style.colors(len(depths))))
    fig, axes = style.figure(len(ROWS), len(models), height_ratio=0.85, squeeze=False, sharex=True)
    for j, model in enumerate(models):
        arms = [a for a in ARMS[model] if a != "twin" and a in set(t[t.model == model].arm)]
        for i, (metric, ylabel) in enumerate(ROWS.items()):
            ax = axes[i, j]
            for arm, ls in zip(arms, STYLES):
                for depth in depths:
                    s = t[(t.model == model) & (t.arm == arm) & (t.n_layers == depth) & (t.metric == metric)]
                    s = s.sort_values("layer")
                    if s.empty:
                        continue
                    x = s.layer / depth
                    ax.plot(x, s["mean"], color=colors[depth], ls=ls, lw=1.0)
                    ax.fill_between(x, s.ci_low, s.ci_high, color=colors[depth], alpha=0.2, lw=0)
            if metric in LOG_ROWS:
                ax.set_yscale("log")
                lo, hi = ax.get_ylim()
                if hi / lo < MIN_SPAN:  # at least MIN_SPAN, so that the 1-2-5 ticks fall inside
                    pad = (MIN_SPAN * lo / hi) ** 0.5
                    ax.set_ylim(lo / pad, hi * pad)
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_minor_locator(LogLocator(subs="auto"))
                ax.yaxis.set_major_formatter(PLAIN)
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            elif metric == "cosine":
                ax.set_ylim(-0.02, 1.02)
            else:
                ax.set_ylim(bottom=0)
            if i == 0:
                second = f"\n- - {ARM_LABELS[arms[1]]}" if len(arms) > 1 else ""
                ax.set_title(f"{MODEL_LABELS[model]}{second}", fontsize=style.font_size - 1)
            if j == 0:
                ax.set_ylabel(ylabel)
            if i == len(ROWS) - 1:
                ax.set_xlabel("block $l / L$")
    handles = [Line2D([], [], color=colors[d], label=f"L = {d}") for d in depths]
    handles += [Line2D([], [], color="grey", ls="-", label="as the library builds it")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return fig
