"""Fig S8 (the lr selection, docs/translation.md): the aggregated table and its checks.

The raw tables are the ``selection.parquet`` of every selected method
(:func:`sigprop.tasks.translation.selection.selection_rows`): one row per grid point with its validation loss at
the selection update, whether it won and whether it was the one edge extension.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sigprop.analysis.checkrow import Check

#: the columns of Fig S8's table, in order
COLUMNS = ["dataset", "method", "method_label", "optimizer", "layers", "select_update", "updates", "lr",
           "valid_loss", "diverged", "extension", "winner", "selected_lr", "reason"]


def aggregate(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, grid point), sorted by optimiser, method and lr; the rule's keys kept (``rule_*``)."""
    missing = [c for c in COLUMNS if c not in raw]
    if missing:
        raise ValueError(f"figS8 reads selection.parquet tables (rule select_lr); these lack {missing}")
    one = raw.groupby("method").selected_lr.nunique()
    if (one > 1).any():
        raise ValueError(f"figS8: method {one[one > 1].index[0]} has two selections (two datasets or depths?)")
    rules = sorted(c for c in raw if c.startswith("rule_"))
    out = raw[COLUMNS + rules].copy()
    out["valid_loss"] = out.valid_loss.astype(float)
    return out.sort_values(["optimizer", "method", "lr"]).reset_index(drop=True)


def checks(t: pd.DataFrame) -> list[Check]:
    """Per method: the selected lr is the grid's best point and lies inside the grid (extension included).

    A winner at an edge after the one extension means the optimum may lie beyond the grid: the method may be
    under-tuned relative to the others, and the comparison of Table 1 is then not at equal tuning. Reported as
    findings (``applicable`` False): they test the protocol's coverage, not a claim of the paper.
    """
    out = []
    for _, g in t.groupby("method", sort=True):
        g = g.sort_values("lr")
        lrs, chosen = g.lr.to_numpy(float), float(g.selected_lr.iloc[0])
        finite = g[np.isfinite(g.valid_loss.to_numpy(float))]
        inside = bool(lrs[0] < chosen < lrs[-1])
        best = float(finite.valid_loss.min()) if len(finite) else np.nan
        at = float(g.loc[g.lr == chosen, "valid_loss"].iloc[0])
        ext = g[g.extension.astype(bool)]
        note = f"; edge extension lr {ext.lr.iloc[0]:g} tried" if len(ext) else ""
        points = ", ".join(f"lr {lr:g}: {v:.4f}{' (selected)' if lr == chosen else ''}"
                           for lr, v in zip(g.lr, g.valid_loss.astype(float), strict=True))
        out.append(Check(
            f"figS8 {g.method_label.iloc[0]}: selected lr {chosen:g} inside the grid {lrs[0]:g}..{lrs[-1]:g} "
            f"[{g.dataset.iloc[0]}; {int(g.layers.iloc[0])}+{int(g.layers.iloc[0])} blocks, seed 0, validation loss "
            f"at update {int(g.select_update.iloc[0])} of {int(g.updates.iloc[0])}]",
            "figS8", "an interior point (the optimum is bracketed)", at - best,
            f"measured: selected point's loss minus the grid's best (ties: {g.rule_ties.iloc[0]} within "
            f"{g.rule_tie_tolerance.iloc[0]:g}){note}; validation losses {points}; {g.reason.iloc[0]}",
            inside, applicable=False))
    return out
