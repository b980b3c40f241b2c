"""Fig 6: test BLEU against the number of blocks X for Adam POST-LN, Adam PRE-LN and SGD temperature."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sigprop.plotting._translation import dataset_title
from sigprop.plotting.style import Style

ORDER = ["adam_postln", "adam_preln", "sgd_temperature"]


def _errorbars(ax: Axes, x: pd.Series, mean: pd.Series, lo: pd.Series, hi: pd.Series, **kw: object) -> None:
    yerr = np.vstack([mean - lo, hi - mean])
    ax.errorbar(x, mean, yerr=None if np.isnan(yerr).all() else yerr, marker="o", ms=3.5, capsize=2, **kw)


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """(a) mean test BLEU over runs with a 95% interval, (b) best validation loss; crosses mark diverged runs."""
    t = tables["fig06"]
    fig, axes = style.figure(1, 2, height_ratio=0.8)
    methods = [m for m in ORDER if m in set(t.method)] + sorted(set(t.method) - set(ORDER))
    colors = dict(zip(methods, style.colors(len(methods))))
    offsets = dict(zip(methods, np.linspace(-0.08, 0.08, len(methods))))
    for method in methods:
        s = t[t.method == method].sort_values("layers")
        x = s.layers + offsets[method]
        _errorbars(axes[0], x, s["mean"], s.ci_low, s.ci_high, color=colors[method], label=s.method_label.iloc[0])
        _errorbars(axes[1], x, s.valid_loss, s.valid_loss_ci_low, s.valid_loss_ci_high, color=colors[method])
        for _, r in s[s.n_diverged > 0].iterrows():
            axes[0].plot(r.layers + offsets[method], 0, "x", color=colors[method], ms=7, clip_on=False)
            axes[0].annotate(
                f"{int(r.n_diverged)}/{int(r.n_runs)} diverged",
                (r.layers + offsets[method], 0),
                textcoords="offset points",
                xytext=(3, 4),
                fontsize=style.font_size - 2,
                color=colors[method],
            )
    for ax in axes:
        ax.set_xticks(sorted(t.layers.unique()))
        ax.set_xlabel("blocks X (X encoder + X decoder)")
    axes[0].set_ylabel("test BLEU (tokenised)")
    axes[0].set_ylim(bottom=0, top=max(1.0, float(np.nanmax(t.ci_high.fillna(t["mean"]))) * 1.1))
    axes[1].set_ylabel("validation loss (nats/token)")
    axes[0].set_title("(a) test BLEU", loc="left")
    axes[1].set_title("(b) best validation loss", loc="left")
    axes[0].legend(loc="best")
    runs = int(t.n_runs.max())
    sents, beam = int(t.test_sentences.max()), int(t.beam.max())
    fig.suptitle(
        f"{dataset_title(t)}\nmean of {runs} run(s) per point, 95% CI; beam {beam}, {sents} test sentences",
        fontsize=style.font_size,
    )
    return fig
