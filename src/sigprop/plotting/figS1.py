"""Supplementary Fig S1: Table 1's translation models at initialisation on real IWSLT'14 batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from sigprop.analysis.paper_values import PAPER_TABLE1
from sigprop.plotting.style import Style, band

#: legend order: Table 1's
ORDER = list(PAPER_TABLE1)


def variant_label(method: str, label: str, tau_at: str, tau: float) -> str:
    """Legend entry: the method, its tau where it has one, and its Table 1 BLEU in the paper."""
    text = label
    if method == "sgd_temperature" or tau_at == "init" or tau != 1.0:
        text += rf", $\tau={tau:g}$" + (" (update 0)" if tau_at == "init" else "")
    bleu = PAPER_TABLE1.get(method)
    return text + (f" [{bleu:.1f}]" if bleu is not None else "")


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Rows: encoder, decoder. Columns: (a) cosine per layer, deepest models; (b) last-layer cosine against the
    blocks per stack; (c) |grad W_Q^l| / |grad W_Q^1| (keys dotted), deepest; (d) the same for W_V."""
    t = tables["figS1"]
    variants = (t[["method", "method_label", "tau_at", "tau"]].drop_duplicates()
                .assign(_o=lambda d: d.method.map(lambda m: ORDER.index(m) if m in ORDER else len(ORDER)))
                .sort_values(["_o", "tau_at"], ascending=[True, False]))
    keys = list(zip(variants.method, variants.tau_at))
    labels = {(m, a): variant_label(m, lab, a, tau) for m, lab, a, tau in
              zip(variants.method, variants.method_label, variants.tau_at, variants.tau)}
    colors = dict(zip(keys, style.colors(len(keys))))
    deepest = int(t.layers.max())
    depths = sorted(int(x) for x in t.layers.unique())
    fig, axes = style.figure(2, 4, height_ratio=0.95, squeeze=False)
    for i, side in enumerate(("encoder", "decoder")):
        s = t[t.side == side]
        for key in keys:
            v = s[(s.method == key[0]) & (s.tau_at == key[1])]
            c = colors[key]
            cos = v[(v.metric == "cosine") & (v.layers == deepest)].sort_values("layer")
            band(axes[i, 0], cos.layer, cos["mean"], cos.ci_low, cos.ci_high, c, labels[key])
            last = v[(v.metric == "cosine") & (v.layer == v.layers)].sort_values("layers")
            err = np.vstack([last["mean"] - last.ci_low, last.ci_high - last["mean"]])
            axes[i, 1].errorbar(last.layers, last["mean"], yerr=np.where(np.isfinite(err), err, 0), color=c,
                                marker="o", ms=2.5, lw=1.0, capsize=1.5)
            for j, metric in ((2, "grad_ratio_q"), (3, "grad_ratio_v")):
                g = v[(v.metric == metric) & (v.layers == deepest)].sort_values("layer")
                g = g[np.isfinite(g["mean"]) & (g["mean"] > 0)]
                if len(g):
                    band(axes[i, j], g.layer, g["mean"], g.ci_low, g.ci_high, c)
                if metric == "grad_ratio_q":
                    k = v[(v.metric == "grad_ratio_k") & (v.layers == deepest)].sort_values("layer")
                    k = k[np.isfinite(k["mean"]) & (k["mean"] > 0)]
                    axes[i, j].plot(k.layer, k["mean"], color=c, ls=":", lw=0.9)
        name = side.capitalize()
        axes[i, 0].set(ylabel=f"{name}\ntoken cosine", ylim=(0, 1.02))
        axes[i, 1].set(ylim=(0, 1.02), xscale="log")
        axes[i, 1].set_xticks(depths, [str(d) for d in depths])
        axes[i, 1].minorticks_off()
        axes[i, 2].set_yscale("log")
        axes[i, 3].set_yscale("log")
        for ax in axes[i, 2:]:
            ax.yaxis.set_minor_formatter(NullFormatter())
        for j, title in enumerate((f"cosine, $L={deepest}$", "last layer", r"$|\nabla W_Q^l|/|\nabla W_Q^1|$",
                                   r"$|\nabla W_V^l|/|\nabla W_V^1|$")):
            axes[i, j].set_title(f"({chr(97 + 4 * i + j)}) {title}", loc="left")
    for j in (0, 2, 3):
        axes[1, j].set_xlabel("layer")
    axes[1, 1].set_xlabel("blocks per stack $L$")
    axes[0, 2].plot([], [], color="grey", ls=":", lw=0.9, label=r"keys $W_K$ (dotted)")
    handles, labels_ = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[0, 2].get_legend_handles_labels()
    dataset = ", ".join(sorted(set(t.dataset)))
    fig.suptitle(f"At initialisation on {dataset} training batches; legend: the paper's Table 1 BLEU",
                 fontsize=style.font_size)
    fig.legend(handles + h2, labels_ + l2, loc="outside lower center", ncols=3)
    return fig
