"""Fig 6: test BLEU against the number of blocks X for Adam POST-LN, Adam PRE-LN and SGD temperature."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sigprop.plotting._translation import dataset_title
from sigprop.plotting.style import Style

ORDER = ["adam_postln", "adam_preln", "sgd_temperature"]


def plot(tables: dict[str, pd.DataFrame], style: Style) -> Figure:
    """Mean BLEU over runs with a 95% interval; a cross at the bottom marks depths where runs diverged."""
    t = tables["fig06"]
    fig, ax = style.figure(1, 1, height_ratio=0.55)
    methods = [m for m in ORDER if m in set(t.method)] + sorted(set(t.method) - set(ORDER))
    colors = dict(zip(methods, style.colors(len(methods))))
    offsets = dict(zip(methods, np.linspace(-0.08, 0.08, len(methods))))
    for method in methods:
        s = t[t.method == method].sort_values("layers")
        x = s.layers + offsets[method]
        yerr = np.vstack([s["mean"] - s.ci_low, s.ci_high - s["mean"]])
        ax.errorbar(x, s["mean"], yerr=None if np.isnan(yerr).all() else yerr, color=colors[method], marker="o",
                    ms=3.5, capsize=2, label=s.method_label.iloc[0])
        bad = s[s.n_diverged > 0]
        for _, r in bad.iterrows():
            ax.plot(r.layers + offsets[method], 0, "x", color=colors[method], ms=7, clip_on=False)
            ax.annotate(f"{int(r.n_diverged)}/{int(r.n_runs)} diverged", (r.layers + offsets[method], 0),
                        textcoords="offset points", xytext=(3, 4), fontsize=style.font_size - 2,
                        color=colors[method])
    ax.set_xticks(sorted(t.layers.unique()))
    ax.set_xlabel("number of blocks X (X encoder + X decoder)")
    ax.set_ylabel("test BLEU")
    ax.set_ylim(bottom=0)
    runs = int(t.n_runs.max())
    sents, beam = int(t.test_sentences.max()), int(t.beam.max())
    ax.set_title(f"{dataset_title(t)}; mean of {runs} run(s), beam {beam}, {sents} test sentences",
                 loc="left", fontsize=style.font_size - 1)
    ax.legend(loc="best")
    return fig
