"""Supplementary Fig S5: published residual and init rules at initialisation, against the depth L."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from sigprop.plotting.style import Style

PANELS = {
    "cosine_last": "last-layer token cosine",
    "qk_v_first": r"Q/K-to-V gradient ratio, block 1",
    "qk_v_last": r"Q/K-to-V gradient ratio, block $L$",
    "grad_in_out": r"$|\partial\ell/\partial X^0|\,/\,|\partial\ell/\partial X^L|$",
}
#: line style by the paper's regime: sum over depth of the effective branch scale squared
REGIMES = {"grows": "-", "bounded": "--"}


def _marker(rule: str) -> str:
    """Baselines (the paper's family) squares, rules equal to a paper alpha at init circles, others triangles."""
    return "s" if rule == "none" else "^" if rule == "shaped" else "o"


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Four panels against L (log): last-layer cosine, the Q/K-to-V gradient ratio at the first and last block,
    the input-to-output gradient norm ratio; one line per build (mean, 95% CI error bars), solid where sum alpha^2
    grows with L, dashed where it stays O(1); the legend says which alpha each rule equals at init."""
    t = tables["figS5"]
    fig, axes = style.figure(2, 2, height_ratio=0.72, squeeze=False, sharex=True)
    builds = t.drop_duplicates("label")[["label", "residual_rule", "norm", "alpha", "regime"]]
    baseline = {("post", "1"): 0, ("pre", "1"): 1}  # then the paper's 1/sqrt(L), then the rules
    builds = builds.assign(order=[baseline.get((n, a), 2) if r == "none" else 3
                                  for r, n, a in zip(builds.residual_rule, builds.norm, builds.alpha)])
    builds = builds.sort_values(["order", "residual_rule"], kind="stable")
    colors = dict(zip(builds.label, style.colors(len(builds))))
    depths = sorted(int(d) for d in t.depth.unique())
    for ax, (metric, ylabel) in zip(axes.flat, PANELS.items()):
        for b in builds.itertuples():
            s = t[(t.label == b.label) & (t.metric == metric)].sort_values("depth")
            s = s[np.isfinite(s["mean"].to_numpy(float))]
            if s.empty:
                continue
            err = np.vstack([s["mean"] - s.ci_low, s.ci_high - s["mean"]])
            ax.errorbar(s.depth, s["mean"], yerr=np.where(np.isfinite(err), err, 0), color=colors[b.label],
                        marker=_marker(b.residual_rule), ms=3, ls=REGIMES[b.regime], lw=0.9, capsize=1.5,
                        label=b.label)
        ax.set_title(f"({chr(97 + list(PANELS).index(metric))}) {ylabel}", loc="left")
        if metric == "cosine_last":
            ax.set_ylim(0, 1.03)
        else:
            ax.set_yscale("log")
            lo, hi = ax.get_ylim()
            if np.log10(hi / lo) < 1.5:  # less than about a decade: label 2 and 5 times the powers of ten too
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.xaxis.set_minor_locator(NullLocator())
    for ax in axes[-1]:
        ax.set_xlabel("depth $L$ (blocks)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(r"solid: $\sum_l \alpha_l^2$ grows with $L$; dashed: $\sum_l \alpha_l^2=O(1)$ (effective $\alpha$ at "
                 "init); circles: equal at init to the paper's block\nwith the $\\alpha$ named (squares: the paper's "
                 "builds; zero branch: no Q/K/V gradient at init)", fontsize=style.font_size - 1)
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    return fig
