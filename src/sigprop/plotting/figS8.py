"""Supplementary Fig S8: validation loss at the selection update against the learning rate, per method."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import Style

MARKERS = "osD^vP*X"


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """One panel per optimiser (lr on a log axis), one line per method; the selected lr ringed, an edge
    extension hollow, a diverged point marked at the panel's top."""
    t = tables["figS8"]
    opts = list(dict.fromkeys(t.optimizer))
    fig, axes = style.figure(1, len(opts), height_ratio=0.75, squeeze=False)
    methods = list(dict.fromkeys(t.method))
    colors = dict(zip(methods, style.colors(len(methods))))
    for j, opt in enumerate(opts):
        ax = axes[0, j]
        sub = t[t.optimizer == opt]
        finite = sub.valid_loss[np.isfinite(sub.valid_loss.astype(float))]
        top = float(finite.max()) + 0.1 if len(finite) else 1.0
        for method, g in sub.groupby("method", sort=False):
            g = g.sort_values("lr")
            c, m = colors[method], MARKERS[methods.index(method) % len(MARKERS)]
            y = g.valid_loss.astype(float).to_numpy()
            ok = np.isfinite(y)
            ax.plot(g.lr[ok], y[ok], color=c, marker=m, ms=3.5, lw=1.0, label=g.method_label.iloc[0])
            ext = g.extension.astype(bool).to_numpy() & ok
            ax.plot(g.lr[ext], y[ext], ls="none", marker=m, ms=5, mfc="white", color=c)
            if (~ok).any():
                ax.plot(g.lr[~ok], np.full((~ok).sum(), top), ls="none", marker="x", ms=5, color=c)
            win = g[g.winner.astype(bool)]
            ax.plot(win.lr, win.valid_loss.astype(float), ls="none", marker="o", ms=9, mfc="none", mew=1.2,
                    color=c)
        ax.set_xscale("log")
        lrs = sorted(sub.lr.unique())
        ax.set_xticks(lrs, [f"{x:g}" for x in lrs], rotation=45)
        ax.minorticks_off()
        upd = sorted(sub.select_update.unique())
        ax.set_title(f"({chr(97 + j)}) optimizers.{opt}, selected at update {'/'.join(str(int(u)) for u in upd)}",
                     loc="left")
        ax.set_xlabel("learning rate")
        if j == 0:
            ax.set_ylabel("validation loss (seed 0)")
        ax.legend(fontsize="small", frameon=False)
    return fig
