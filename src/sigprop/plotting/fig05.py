"""Fig 5: Adam's effective learning rates of Wq, Wk, Wv per layer on the toy sequence-reversal task."""

from __future__ import annotations

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting.style import Style, band

MATRICES = {"wq": r"queries $W_Q$", "wk": r"keys $W_K$", "wv": r"values $W_V$"}
CHANCE = 0.1  # ten digits
FOCUS = 0.05  # the y axis of the effective-lr panels covers the steps after this fraction of training


def _warmup_end(glob: pd.DataFrame) -> float | None:
    """First logged update at the peak learning rate, if the run had a warm-up."""
    lr = glob[glob.metric == "lr"].sort_values("step")
    if lr.empty or lr["mean"].iloc[0] >= lr["mean"].max():
        return None
    return float(lr[lr["mean"] >= lr["mean"].max() * (1 - 1e-9)]["step"].iloc[0])


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """One panel per layer (median effective lr over entries, log scale, 95% CI over seeds) and one of accuracy."""
    t = tables["fig05"]
    glob = t[t.layer.isna()]
    layers = sorted(int(v) for v in t.layer.dropna().unique())
    ncols = 3
    nrows = int(np.ceil((len(layers) + 1) / ncols))
    fig, axes = style.figure(nrows, ncols, height_ratio=0.75, sharex=True)
    axes = np.atleast_1d(axes).ravel()
    colors = dict(zip(MATRICES, style.colors(len(MATRICES))))
    warm = _warmup_end(glob)
    eff = t[t.metric == "eff_lr_median"]
    shown = eff[eff["step"] >= FOCUS * eff["step"].max()]  # y range: past the first steps of the warm-up
    lo = np.nanmin(shown[["mean", "ci_low"]].to_numpy(dtype=float))
    hi = np.nanmax(shown[["mean", "ci_high"]].to_numpy(dtype=float))
    for ax, layer in zip(axes, layers):
        for name, label in MATRICES.items():
            s = eff[(eff.layer == layer) & (eff.matrix == name)].sort_values("step")
            band(ax, s["step"], s["mean"], s.ci_low, s.ci_high, colors[name], label)
        ax.set_yscale("log")
        ax.set_ylim(lo / 1.5, hi * 1.5)
        ax.yaxis.set_major_locator(mticker.LogLocator(base=10.0, numticks=12))
        ax.set_title(f"layer {layer}", loc="left")
        if warm is not None:
            ax.axvline(warm, color="grey", lw=0.6, ls=":")
    for ax in axes[: len(layers)][::ncols]:
        ax.set_ylabel("effective lr")
    ax = axes[len(layers)]
    for metric, label, ls in (("val_accuracy", "accuracy, validation batch", "-"),
                              ("accuracy", "accuracy, training batches", ":")):
        s = glob[glob.metric == metric].sort_values("step")
        band(ax, s["step"], s["mean"], s.ci_low, s.ci_high, "black", label, ls=ls)
    ax.axhline(CHANCE, color="grey", lw=0.6, ls="--", label="chance (0.1)")
    ax.set_ylim(0, 1.03)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_ylabel("token accuracy")
    ax.set_title("reversal accuracy", loc="left")
    if warm is not None:
        ax.axvline(warm, color="grey", lw=0.6, ls=":")
    hidden = axes[len(layers) + 1:]
    for extra in hidden:
        extra.set_visible(False)
    for i, ax in enumerate(axes[: len(layers) + 1]):
        below = i + ncols
        if below >= len(layers) + 1:  # nothing visible below this panel
            ax.set_xlabel("update step")
            ax.xaxis.set_tick_params(labelbottom=True)
    handles, labels = axes[0].get_legend_handles_labels()
    acc_handles, acc_labels = axes[len(layers)].get_legend_handles_labels()
    if warm is not None:
        handles.append(axes[0].axvline(np.nan, color="grey", lw=0.6, ls=":"))
        labels.append(f"end of lr warm-up ({int(warm)})")
    n = int(glob[glob.metric == "loss"].n_seeds.max())
    fig.legend(handles + acc_handles, labels + acc_labels, loc="outside lower center", ncols=4)
    fig.suptitle(r"Adam's effective learning rate $\eta_t/(\sqrt{\hat v_t}+\epsilon)$, median over matrix entries "
                 f"({n} seeds, 95% CI)", fontsize=style.font_size)
    return fig
