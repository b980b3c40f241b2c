"""Fig 1: token cosine of the encoder during training, POST-LN with Adam, increasing depth, +- 1/sqrt(L)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.params import residual_scale_label
from sigprop.plotting._translation import dataset_title
from sigprop.plotting.style import Style, band

SCALED = "adam_postln_scaled"


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """(a) cosine of the encoder output against the update step; (b) cosine per layer at init and at the end.

    Colour = number of blocks; solid = alpha 1 (POST-LN), dashed = alpha 1/sqrt(L); a cross marks a
    run that diverged (its curve stops there).
    """
    t = tables["fig01"]
    fig, axes = style.figure(1, 2, height_ratio=0.8)
    depths = sorted(t.layers.unique())
    colors = dict(zip(depths, style.colors(len(depths))))
    methods = sorted(t.method.unique(), key=lambda m: m == SCALED)
    for method in methods:
        ls = "--" if method == SCALED else "-"
        for depth in depths:
            run = t[(t.method == method) & (t.layers == depth)]
            if run.empty:
                continue
            out = run[run.layer == depth].sort_values("step")
            band(axes[0], out.step, out["mean"], out.ci_low, out.ci_high, colors[depth], ls=ls)
            if run.n_diverged.max() > 0:
                axes[0].plot(out.step.iloc[-1], out["mean"].iloc[-1], "x", color=colors[depth], ms=6)
            steps = np.sort(run.step.unique())
            for step, alpha in ((steps[0], 0.45), (steps[-1], 1.0)):
                per = run[run.step == step].sort_values("layer")
                axes[1].plot(
                    per.layer / depth,
                    per["mean"],
                    color=colors[depth],
                    ls=ls,
                    alpha=alpha,
                    marker="o" if step == steps[-1] else None,
                    ms=2.5,
                )
    axes[0].set_xlabel("update step")
    axes[0].set_ylabel("token cosine, encoder output")
    axes[0].set_title("(a) during training", loc="left")
    axes[1].set_xlabel("layer / number of blocks (0 = embedding)")
    axes[1].set_ylabel("token cosine")
    axes[1].set_title("(b) per layer: init (faint), end of training", loc="left")
    for ax in axes:
        ax.set_ylim(-0.05, 1.02)
    for depth in depths:
        axes[0].plot([], [], color=colors[depth], label=f"{depth}+{depth} blocks")
    axes[0].plot([], [], color="grey", ls="-", label=f"POST-LN, {residual_scale_label('1')}")
    axes[0].plot([], [], color="grey", ls="--", label=f"POST-LN, {residual_scale_label('1/sqrt(L)')}")
    if (t.n_diverged > 0).any():
        axes[0].plot([], [], "x", color="grey", label="diverged")
    axes[0].legend(loc="best")
    fig.suptitle(f"Adam, POST-LN - {dataset_title(t)}", fontsize=style.font_size)
    return fig
