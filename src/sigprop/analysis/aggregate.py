"""From raw seed-level tables to the per-figure tables the plots read: means, 95% intervals, theory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sigprop import depth_rules
from sigprop.analysis import theory
from sigprop.analysis.paper_values import PAPER_TABLE1
from sigprop.analysis.stats import ratio_pseudo_values, t_interval
from sigprop.params import is_depth_scaled, resolve_alpha
from sigprop.patterns import attention_pattern

LEVEL = 0.95
N_BOOT = 1000


def mean_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds with a percentile-bootstrap 95% interval (resampling seeds; positive data stay positive)."""
    values = np.asarray(values, dtype=float)
    return ratio_ci(values, np.ones_like(values), seed)


def ratio_ci(num: np.ndarray, den: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """E[num] / E[den] over seeds, with a percentile-bootstrap 95% interval (resampling seeds)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    point = float(num.mean() / den.mean())
    if len(num) < 2:
        return point, np.nan, np.nan
    idx = np.random.default_rng(seed).integers(0, len(num), size=(N_BOOT, len(num)))
    boot = num[idx].mean(1) / den[idx].mean(1)
    lo, hi = np.quantile(boot, [0.5 - LEVEL / 2, 0.5 + LEVEL / 2])
    return point, float(lo), float(hi)


def summarise(df: pd.DataFrame, by: Sequence[str], value: str = "value", keep_seeds: bool = False) -> pd.DataFrame:
    """Group ``df`` by ``by`` and return mean, ci_low, ci_high and n_seeds of ``value``.

    ``keep_seeds``: also the seed-level values (list columns ``seeds`` and ``seed_values``, by seed), which
    the statistical tests of :mod:`sigprop.analysis.checks` need.
    """
    out = []
    for key, grp in df.groupby(list(by), sort=True):
        m, lo, hi = mean_ci(grp[value].to_numpy())
        row = [*key, m, lo, hi, len(grp)]
        if keep_seeds:
            g = grp.sort_values("seed")
            row += [g.seed.to_numpy(dtype=int), g[value].to_numpy(dtype=float)]
        out.append(tuple(row))
    cols = [*by, "mean", "ci_low", "ci_high", "n_seeds"] + (["seeds", "seed_values"] if keep_seeds else [])
    return pd.DataFrame(out, columns=cols)


def _wide(df: pd.DataFrame, index: Sequence[str]) -> pd.DataFrame:
    """Raw long table to one column per metric."""
    return df.pivot_table(index=list(index), columns="metric", values="value").reset_index()


def correlation_table(raw: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """rho^l and |X^l|^2 per group and layer: mean over seeds, bootstrap interval, theory, seed-level deviations.

    rho^l = E[offdiag] / ((n-1) E|X|^2) over seeds. The theory column is docs/init-time.md for uniform attention,
    linear, no LN, with the mean input statistics (layer 0) and ``a1`` from the ``alpha`` (or ``alpha1``)
    column. ``seed_dev`` holds per seed the measured minus the theoretical value, the theory conditional on
    that seed's own input (the formulas are linear in the input statistics), as delta-method pseudo-values
    for rho: their mean is exactly ``mean - theory``, and a t-interval of it accounts for the sampling error
    of both the measurement and the input statistics the theory uses.
    """
    wide = _wide(raw, [*by, "n_tokens", "n_layers", "seed", "layer"])
    rows = []
    for key, grp in wide.groupby([*by, "n_tokens", "n_layers"], sort=True):
        group = dict(zip([*by, "n_tokens", "n_layers"], key))
        n, n_layers = int(group["n_tokens"]), int(group["n_layers"])
        a1 = resolve_alpha(group.get("alpha", group.get("alpha1", 1.0)), n_layers)
        a2 = resolve_alpha(group.get("alpha", group.get("alpha2", 1.0)), n_layers)
        layer0 = grp[grp.layer == 0].set_index("seed").sort_index()
        x_sq = layer0.sq_norm.mean()
        c0 = (layer0.offdiag + layer0.sq_norm).mean()
        c0_seed = (layer0.offdiag + layer0.sq_norm).to_numpy()
        sq0_seed = layer0.sq_norm.to_numpy()
        for layer, g in grp.groupby("layer"):
            g = g.set_index("seed").loc[layer0.index]
            rho = ratio_ci(g.offdiag.to_numpy(), (n - 1) * g.sq_norm.to_numpy())
            norm = mean_ci(g.sq_norm.to_numpy())
            sq_th = theory.sq_norm(n, sq0_seed, c0_seed, layer, a1, a2)
            off_th = theory.inner_products(c0_seed, layer, a1, a2) - sq_th
            rho_dev = ratio_pseudo_values(g.offdiag.to_numpy(), (n - 1) * g.sq_norm.to_numpy()) - (
                ratio_pseudo_values(off_th, (n - 1) * sq_th)
            )
            rows.append(
                {
                    **group,
                    "layer": layer,
                    "metric": "correlation",
                    "mean": rho[0],
                    "ci_low": rho[1],
                    "ci_high": rho[2],
                    "theory": float(theory.correlation(n, x_sq, c0, layer, a1)),
                    "n_seeds": len(g),
                    "seed_dev": rho_dev,
                }
            )
            rows.append(
                {
                    **group,
                    "layer": layer,
                    "metric": "sq_norm",
                    "mean": norm[0],
                    "ci_low": norm[1],
                    "ci_high": norm[2],
                    "theory": float(theory.sq_norm(n, x_sq, c0, layer, a1, a2)),
                    "n_seeds": len(g),
                    "seed_dev": g.sq_norm.to_numpy() - sq_th,
                }
            )
    return pd.DataFrame(rows)


#: the query/key convention of Figs 3, 4, 9 when the encoder_init experiment ran both (figS4 shows both)
FIGURE_QK_FAN = "d_model"


def _figure_convention(raw: pd.DataFrame) -> pd.DataFrame:
    """The rows of Figs 3, 4, 9: those of FIGURE_QK_FAN if the raw tables hold several query/key conventions."""
    if "qk_fan" not in raw or raw.qk_fan.nunique() <= 1:
        return raw
    return raw[raw.qk_fan == FIGURE_QK_FAN]


def encoder_init_table(raw: pd.DataFrame, norms: Sequence[str], keys: Sequence[str] = ()) -> pd.DataFrame:
    """Figs 3 and 9: token cosine, and Q/K/V gradient norms relative to layer 1, per alpha and layer.

    ``keys``: further grouping columns (figS4: ``qk_fan``). Seed-level values are kept for the checks.
    """
    raw = raw[raw.norm.isin(norms)]
    if "activation" in raw:  # Fig 4's linear, uniform-attention points are not part of Figs 3 and 9
        raw = raw[(raw.activation == "relu") & (raw.attention == "softmax")]
    by = ["norm", *keys, "alpha"]
    cos = summarise(raw[raw.metric == "cosine"], [*by, "layer"], keep_seeds=True).assign(metric="cosine")
    grads = raw[raw.metric.str.startswith("grad_")].copy()
    first = grads[grads.layer == 1].set_index([*by, "seed", "metric"]).value
    index = list(zip(*(grads[k] for k in [*by, "seed", "metric"])))
    grads["value"] = grads.value / first.loc[index].to_numpy()
    ratio = summarise(grads, [*by, "metric", "layer"], keep_seeds=True)
    ratio["metric"] = ratio.metric.str.replace("grad_w", "grad_ratio_")
    return pd.concat([cos, ratio], ignore_index=True)


def fig03(raw: pd.DataFrame) -> pd.DataFrame:
    """POST-LN at init."""
    return encoder_init_table(_figure_convention(raw), ["post"])


def fig09(raw: pd.DataFrame) -> pd.DataFrame:
    """PRE-LN at init."""
    return encoder_init_table(_figure_convention(raw), ["pre"])


def figS4(raw: pd.DataFrame) -> pd.DataFrame:
    """Fig 3 under both query/key init conventions (``qk_fan``: d_model and d_k), POST-LN."""
    if "qk_fan" not in raw or raw[raw.norm == "post"].qk_fan.nunique() < 2:
        raise ValueError(
            "figS4 compares qk_fan: d_model with qk_fan: d_k; add a POST-LN grid point with qk_fan: [d_k] "
            "(and one with [d_model]) to experiments.encoder_init"
        )
    return encoder_init_table(raw, ["post"], keys=["qk_fan"])


def fig04(raw: pd.DataFrame) -> pd.DataFrame:
    """Correlation vs layer for PRE-LN, POST-LN and No-LN, unscaled and 1/sqrt(L).

    The theory column is filled only where it applies: No-LN with linear activation and uniform attention
    (the encoder_init grid point that runs Fig 4's theory setting); elsewhere it is NaN.
    """
    raw = _figure_convention(raw)
    keep = raw[raw.alpha.isin(["1", "1/sqrt(L)"]) & raw.metric.isin(["offdiag", "sq_norm"])]
    table = correlation_table(keep, ["norm", "activation", "attention", "alpha"])
    table = table[table.metric == "correlation"].copy()
    applies = (table.norm == "none") & (table.activation == "linear") & (table.attention == "uniform")
    table.loc[~applies, "theory"] = np.nan  # the theory holds without LN, linear, uniform attention only
    table.loc[~applies, "seed_dev"] = pd.Series([None] * int((~applies).sum()), index=table.index[~applies])
    return table


def fig08(raw: pd.DataFrame) -> pd.DataFrame:
    """|X^l|^2 and rho^l vs layer, uniform and softmax, with and without 1/sqrt(L) scaling."""
    return correlation_table(raw, ["attention", "alpha"])


def fig10(raw: pd.DataFrame) -> pd.DataFrame:
    """Samples of |X^l|_F^2 for each depth and panel, with their empirical and theoretical means."""
    raw = raw[raw.metric.isin(["offdiag", "sq_norm"])]
    wide = _wide(raw, ["attention", "input_std", "n_tokens", "n_layers", "alpha", "seed", "layer"])
    frames = []
    for (att, std, n, n_layers, alpha), grp in wide.groupby(
        ["attention", "input_std", "n_tokens", "n_layers", "alpha"]
    ):
        a = resolve_alpha(alpha, int(n_layers))
        layer0 = grp[grp.layer == 0]
        x_sq, c0 = layer0.sq_norm.mean(), (layer0.offdiag + layer0.sq_norm).mean()
        g = grp[grp.layer > 0][["seed", "layer", "sq_norm"]].copy()
        g["emp_mean"] = g.groupby("layer").sq_norm.transform("mean")
        g["theory_mean"] = theory.sq_norm(int(n), x_sq, c0, g.layer.to_numpy(), a, a)
        frames.append(g.assign(attention=att, input_std=std, alpha=alpha, n_layers=int(n_layers)))
    return pd.concat(frames, ignore_index=True)


def fig07(raw: pd.DataFrame) -> pd.DataFrame:
    """Mean attention concentration vs d_k with 95% intervals (and the seed-level values)."""
    return summarise(raw, ["n_tokens", "d_v", "d_k"], keep_seeds=True)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


JACOBIAN_KEYS = ["n_tokens", "d_model", "s", "rho"]


def fig11(raw: pd.DataFrame) -> pd.DataFrame:
    """Autodiff Jacobian norms vs the formulas, per attention kind and sweep point."""
    # the sweeps share their centre point: count each (point, seed) once
    raw = raw.drop_duplicates(["attention", *JACOBIAN_KEYS, "metric", "seed"])
    table = summarise(raw, ["attention", *JACOBIAN_KEYS, "metric"], keep_seeds=True)
    args = [table[k].to_numpy() for k in JACOBIAN_KEYS]
    table["theory"] = np.where(table.metric == "grad_q_sq", theory.grad_q_sq(*args), theory.grad_v_sq(*args))
    return table


def _log_ratio(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """log10(|grad Q| / |grad V|) from squared norms."""
    return 0.5 * np.log10(np.asarray(q, float) / np.asarray(v, float))


def fig12(raw: pd.DataFrame) -> pd.DataFrame:
    """Empirical log10(|dS/dWq| / |dS/dWv|) over the (rho, s, n, d) grid, from seed means."""
    wide = _wide(raw, [*JACOBIAN_KEYS, "seed"])
    table = wide.groupby(JACOBIAN_KEYS, as_index=False)[["grad_q_sq", "grad_v_sq"]].mean()
    table["log10_ratio"] = _log_ratio(table.grad_q_sq, table.grad_v_sq)
    return table


def fig13(grid: pd.DataFrame) -> pd.DataFrame:
    """The same grid as Fig 12 from the formulas of docs/init-time.md."""
    table = grid[JACOBIAN_KEYS].drop_duplicates().reset_index(drop=True)
    args = [table[k].to_numpy() for k in JACOBIAN_KEYS]
    table["grad_q_sq"], table["grad_v_sq"] = theory.grad_q_sq(*args), theory.grad_v_sq(*args)
    table["log10_ratio"] = _log_ratio(table.grad_q_sq, table.grad_v_sq)
    return table


# ---- Fig 5: Adam's effective learning rates on the toy sequence-reversal task (sigprop.tasks.toy_reversal) ----

EFF_LR_RATIOS = (("wq", "wv"), ("wk", "wv"))


def fig05(raw: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% CI over seeds per step: per layer and matrix (effective lr, gradient norm), global
    metrics (loss, accuracy, validation, lr; ``layer`` and ``matrix`` empty), and per layer the ratios of
    the median effective lr of queries and keys to that of the values (``eff_lr_ratio``, ``wq/wv``, ``wk/wv``;
    the ratio is taken per seed, then averaged).
    """
    raw = raw.copy()
    raw["layer"] = raw.layer.astype("Int64")
    per_layer = raw[raw.layer.notna()]
    table = summarise(per_layer, ["metric", "matrix", "layer", "step"])
    glob = summarise(raw[raw.layer.isna()], ["metric", "step"], keep_seeds=True).assign(matrix="", layer=pd.NA)
    med = (
        per_layer[per_layer.metric == "eff_lr_median"]
        .pivot_table(index=["seed", "layer", "step"], columns="matrix", values="value")
        .reset_index()
    )
    ratios = pd.concat(
        [med[["seed", "layer", "step"]].assign(matrix=f"{a}/{b}", value=med[a] / med[b]) for a, b in EFF_LR_RATIOS]
    )
    ratio = summarise(ratios, ["matrix", "layer", "step"], keep_seeds=True).assign(metric="eff_lr_ratio")
    out = pd.concat([table, ratio, glob], ignore_index=True)
    out["layer"] = out.layer.astype("Int64")
    return out[["metric", "matrix", "layer", "step", "mean", "ci_low", "ci_high", "n_seeds", "seeds", "seed_values"]]


# ---- translation (Figs 1, 6, 14; Table 1): raw = log.parquet / eval.parquet of the training runs ----

RUN_KEYS = ["dataset", "method", "method_label", "layers"]
#: number of update steps Fig 14 shows (about 5 snapshots: docs/assumptions.md)
FIG14_SNAPSHOTS = 5


def _diverged_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """Per (run keys): number of seeds and of diverged seeds."""
    runs = raw.drop_duplicates([*RUN_KEYS, "seed"])
    return runs.groupby(RUN_KEYS, as_index=False).agg(n_runs=("seed", "size"), n_diverged=("diverged", "sum"))


def fig01(raw: pd.DataFrame) -> pd.DataFrame:
    """Token cosine (encoder, every layer) against the update step, mean and 95% CI over seeds.

    ``layer == layers`` is the encoder output. Steps after a run diverged are missing from that run. The
    seed-level values are kept (``seeds``, ``seed_values``) for the claims' tests (:mod:`sigprop.analysis.claims`).
    """
    cos = raw[(raw.metric == "cosine") & (raw.side == "encoder")]
    table = summarise(cos, [*RUN_KEYS, "step", "layer"], keep_seeds=True)
    return table.merge(_diverged_runs(raw), on=RUN_KEYS, how="left")


def fig06(raw: pd.DataFrame) -> pd.DataFrame:
    """Test BLEU and best validation loss per method and depth: mean, 95% CI over the runs that did not diverge.

    ``seeds`` / ``seed_values``: every run's BLEU by seed (NaN where it diverged), for the claims' tests;
    ``updates``: the most updates a run of the row trained (the scale the claims name).
    """
    out = []
    for key, grp in raw.groupby(RUN_KEYS, sort=True):
        by_seed = grp.sort_values("seed")
        g = grp[~grp.diverged.astype(bool)]
        m, lo, hi = mean_ci(g.bleu.to_numpy()) if len(g) else (np.nan, np.nan, np.nan)
        d = mean_ci(g.sacrebleu_detok.to_numpy())[0] if len(g) else np.nan
        v = mean_ci(g.best_valid_loss.to_numpy(dtype=float)) if len(g) else (np.nan, np.nan, np.nan)
        out.append(
            {
                **dict(zip(RUN_KEYS, key)),
                "mean": m,
                "ci_low": lo,
                "ci_high": hi,
                "sacrebleu_detok": d,
                "valid_loss": v[0],
                "valid_loss_ci_low": v[1],
                "valid_loss_ci_high": v[2],
                "n_runs": len(grp),
                "n_diverged": int(grp.diverged.astype(bool).sum()),
                "test_sentences": int(grp.test_sentences.max()),
                "beam": int(grp.beam.max()),
                "updates": int(grp.updates.max()) if "updates" in grp else -1,
                "seeds": by_seed.seed.to_numpy(dtype=int),
                "seed_values": np.where(by_seed.diverged.astype(bool), np.nan, by_seed.bleu.to_numpy(dtype=float)),
            }
        )
    return pd.DataFrame(out)


def fig14(raw: pd.DataFrame) -> pd.DataFrame:
    """Cosine, alpha1, alpha2 and token norm per layer at about 5 update steps of one run (both stacks), and the
    inverse temperature tau at those steps (0 at update 0 under a tau warm-up: exactly uniform attention)."""
    keep = raw[raw.metric.isin(["cosine", "alpha1", "alpha2", "act_norm", "tau"])]
    steps = np.sort(keep[keep.metric == "cosine"].step.unique())
    if len(steps) > FIG14_SNAPSHOTS:
        steps = steps[np.unique(np.round(np.linspace(0, len(steps) - 1, FIG14_SNAPSHOTS)).astype(int))]
    cols = [*RUN_KEYS, "seed", "diverged", "step", "metric", "side", "layer", "value"]
    return keep[keep.step.isin(steps)][cols].sort_values(["metric", "side", "step", "layer"]).reset_index(drop=True)


def table1(raw: pd.DataFrame, paper: dict[str, float] | None = None) -> pd.DataFrame:
    """Table 1: test BLEU per method (mean, 95% CI over non-diverged runs), beside the paper's value."""
    paper = PAPER_TABLE1 if paper is None else paper
    table = fig06(raw)
    # the lr each method trained at (selected, or the config's) and its validation loss at update 0 (mean over runs)
    extra = {c: ("lr", "first") if c == "lr" else (c, "mean") for c in ("lr", "valid_loss_init") if c in raw}
    if extra:
        table = table.merge(raw.groupby(RUN_KEYS).agg(**extra).reset_index(), on=RUN_KEYS, how="left")
    table["paper_bleu"] = table.method.map(paper)
    table["diff"] = table["mean"] - table.paper_bleu
    order = {m: i for i, m in enumerate(paper)}
    table["_order"] = table.method.map(lambda m: order.get(m, len(order)))
    return table.sort_values(["_order", "layers"]).drop(columns="_order").reset_index(drop=True)


# ---- supplementary figures S1-S3 (docs/supplementary.md) ----

#: Fig S1 run keys: one model = a method at one tau (``tau_at``: its final value or update 0) and depth
METHOD_INIT_KEYS = ["dataset", "method", "method_label", "tau_at", "tau", "layers"]


def figS1(raw: pd.DataFrame) -> pd.DataFrame:
    """Translation models at init: per model, side and layer, the token cosine and |grad W^l| / |grad W^1| for
    Wq, Wk, Wv (ratio per seed, then mean), with 95% intervals and the seed-level values; ``loss`` per model.

    A ratio is NaN where the gradient is exactly 0 at layer 1: ReZero (alpha = 0: no attention weight gets a
    gradient at init) and tau = 0 (uniform attention: the queries and keys get none).
    """
    keys = [*METHOD_INIT_KEYS, "side"]
    cos = summarise(raw[raw.metric == "cosine"], [*keys, "layer"], keep_seeds=True).assign(metric="cosine")
    grads = raw[raw.metric.str.startswith("grad_")].copy()
    first = grads[grads.layer == 1].set_index([*keys, "seed", "metric"]).value
    index = list(zip(*(grads[k] for k in [*keys, "seed", "metric"])))
    with np.errstate(divide="ignore", invalid="ignore"):
        grads["value"] = grads.value.to_numpy() / first.loc[index].to_numpy()
    ratio = summarise(grads, [*keys, "metric", "layer"], keep_seeds=True)
    ratio["metric"] = ratio.metric.str.replace("grad_w", "grad_ratio_")
    loss = summarise(raw[raw.metric == "loss"], [*keys, "layer"], keep_seeds=True).assign(metric="loss")
    return pd.concat([cos, ratio, loss], ignore_index=True)


def figS2(raw: pd.DataFrame) -> pd.DataFrame:
    """Last layer (l = L) of stacks of depth L: rho^L and |X^L|^2 with the finite-L closed form (``theory``,
    seed-level deviations ``seed_dev`` as :func:`correlation_table`), the L -> infinity limit (``limit``) and
    the seed-level values (``seed_values``).

    alpha = 1/sqrt(L) is alpha^2 = a/L with a = 1: limits :func:`sigprop.analysis.theory.correlation_limit` and
    :func:`sigprop.analysis.theory.sq_norm_limit` (from the mean input statistics); constant alpha: rho -> 1, the norm
    diverges (``limit`` = inf).
    """
    table = correlation_table(raw[raw.metric.isin(["offdiag", "sq_norm"])], ["attention", "alpha"])
    table = table[table.layer == table.n_layers].copy()
    layer0 = raw[raw.layer == 0].pivot_table(index=["attention", "alpha", "n_tokens", "n_layers", "seed"],
                                             columns="metric", values="value").reset_index()
    stats0 = layer0.groupby(["attention", "alpha", "n_tokens", "n_layers"]).agg(
        x_sq=("sq_norm", "mean"), offdiag=("offdiag", "mean"))
    last = _wide(raw[raw.layer == raw.n_layers], ["attention", "alpha", "n_tokens", "n_layers", "seed"])
    last = last.set_index(["attention", "alpha", "n_tokens", "n_layers"]).sort_index()
    limits, seed_values = [], []
    for _, r in table.iterrows():
        key = (r.attention, r.alpha, r.n_tokens, r.n_layers)
        s0 = stats0.loc[key]
        n, c0 = int(r.n_tokens), float(s0.x_sq + s0.offdiag)
        g = last.loc[[key]].sort_values("seed")
        seed_values.append(ratio_pseudo_values(g.offdiag.to_numpy(), (n - 1) * g.sq_norm.to_numpy())
                           if r.metric == "correlation" else g.sq_norm.to_numpy(dtype=float))
        if is_depth_scaled(r.alpha):
            lim = (theory.correlation_limit(n, s0.x_sq, c0, 1.0) if r.metric == "correlation"
                   else theory.sq_norm_limit(n, s0.x_sq, c0, 1.0, 1.0))
        else:
            lim = 1.0 if r.metric == "correlation" else np.inf
        limits.append(lim)
    table["limit"] = limits
    table["seed_values"] = seed_values  # rho: delta-method pseudo-values (their mean is rho^L)
    table["scaling"] = np.where([is_depth_scaled(a) for a in table.alpha], "alpha^2 = 1/L", "constant alpha")
    return table.rename(columns={"n_layers": "depth"}).drop(columns="layer").reset_index(drop=True)


#: the rank measures of Fig S3, beside the cosine (sigprop.tasks.measure.relative_residual, stable_rank)
RANK_METRICS = ("cosine", "rel_residual", "stable_rank")


def figS3(raw: pd.DataFrame) -> pd.DataFrame:
    """Per norm, alpha and layer: token cosine, relative residual and stable rank (mean, 95% CI, seed values).

    The runs of Figs 3, 4, 9 (ReLU, softmax attention, their query/key convention)."""
    missing = [m for m in RANK_METRICS if m not in set(raw.metric)]
    if missing:
        raise ValueError(f"figS3: the encoder_init raw tables have no {missing[0]!r} rows; rerun the encoder_init "
                         "jobs with this code (sigprop.tasks.init_time.encoder_init writes them)")
    raw = _figure_convention(raw)
    if "activation" in raw:
        raw = raw[(raw.activation == "relu") & (raw.attention == "softmax")]
    keep = raw[raw.metric.isin(RANK_METRICS)]
    return summarise(keep, ["norm", "alpha", "metric", "layer"], keep_seeds=True)


# ---- supplementary Fig S6: any fixed attention matrix (sigprop.patterns), theory sigprop.analysis.theory ----

#: Fig S6's grouping: one curve per attention pattern and residual scale
FIGS6_KEYS = ["pattern", "alpha", "band", "n_tokens", "n_layers"]


def _gram_matrices(grp: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed-level Gram matrices (seeds, layers, n, n) from the ``gram_i_j`` rows (i <= j), with the seeds and layers."""
    wide = grp.pivot_table(index=["seed", "layer"], columns="metric", values="value").sort_index()
    seeds = wide.index.get_level_values("seed").unique().to_numpy()
    layers = wide.index.get_level_values("layer").unique().to_numpy()
    gram = np.full((len(seeds), len(layers), n, n), np.nan)
    for name in wide.columns:
        i, j = (int(v) for v in name.split("_")[1:])
        gram[:, :, i, j] = gram[:, :, j, i] = wide[name].to_numpy().reshape(len(seeds), len(layers))
    if np.isnan(gram).any():
        raise ValueError("figS6: the raw tables miss Gram entries (gram_i_j) for some seed or layer; rerun the "
                         "attention_patterns jobs with this code (sigprop.tasks.init_time.fixed_attention)")
    return gram, seeds, layers


def figS6(raw: pd.DataFrame) -> pd.DataFrame:
    """Per pattern, alpha and layer: the token correlation (cosine of the expected Gram matrix,
    :func:`sigprop.analysis.theory.gram_correlation`) and |X^l|_F^2, measured (mean over seeds and a 95%
    t-interval) beside the closed recursion for that attention matrix (``theory``, from the fixed input's Gram
    matrix). ``seed_values`` / ``seed_dev``: per seed the value (the correlation, a ratio of means: its jackknife
    pseudo-values, whose mean is the jackknife estimate) and the value minus the theory, for the checks.
    """
    rows = []
    for key, grp in raw.groupby(FIGS6_KEYS, sort=True):
        group = dict(zip(FIGS6_KEYS, key))
        n, depth = int(group["n_tokens"]), int(group["n_layers"])
        a = resolve_alpha(group["alpha"], depth)
        gram, seeds, layers = _gram_matrices(grp, n)
        s = len(seeds)
        expected = theory.gram_expectation(gram[:, 0].mean(0), attention_pattern(group["pattern"], n,
                                                                                 int(group["band"])), depth, a, a)
        mean_gram = gram.mean(0)
        leave_one_out = (s * mean_gram[None] - gram) / (s - 1) if s > 1 else gram
        pseudo = s * theory.gram_correlation(mean_gram)[None] - (s - 1) * theory.gram_correlation(leave_one_out)
        values = {"correlation": pseudo, "sq_norm": theory.gram_sq_norm(gram)}
        th = {"correlation": theory.gram_correlation(expected), "sq_norm": theory.gram_sq_norm(expected)}
        for metric, v in values.items():
            for li, layer in enumerate(layers):
                x = v[:, li]
                lo, hi = t_interval(x, LEVEL)
                rows.append({**group, "metric": metric, "layer": int(layer), "mean": float(x.mean()), "ci_low": lo,
                             "ci_high": hi, "theory": float(th[metric][int(layer)]), "n_seeds": s,
                             "seeds": seeds.astype(int), "seed_values": x, "seed_dev": x - th[metric][int(layer)]})
    return pd.DataFrame(rows)


#: Fig S5's builds: one per (residual_rule, norm, alpha)
RULE_KEYS = ["residual_rule", "norm", "alpha"]
#: Fig S5's measures per seed, from the raw residual_rules tables
RULE_METRICS = ("cosine_last", "qk_v_first", "qk_v_last", "grad_in_out")


def figS5(raw: pd.DataFrame) -> pd.DataFrame:
    """Per build (residual_rule, norm, alpha) and depth L, over seeds (mean, 95% CI, seed-level values):

    * ``cosine_last``: the token cosine at the last layer l = L;
    * ``qk_v_first``, ``qk_v_last``: (|grad Wq| + |grad Wk|) / (2 |grad Wv|) at block 1 and block L (NaN where
      no attention weight gets a gradient, as with a zero branch);
    * ``grad_in_out``: |dloss/dX^0|_F / |dloss/dX^L|_F;

    and one ``equiv_dev`` row per build and depth (max relative deviation of the hidden states from the build of
    the paper's alpha it reduces to, :func:`sigprop.tasks.init_time.residual_rules`; no interval). Columns
    ``label`` (the legend's name), ``regime`` (``bounded`` or ``grows``: whether sum over depth of the effective
    branch scale squared stays O(1) over the figure's depths, :func:`sigprop.depth_rules.regime`) and
    ``reference`` (the alpha of that build, NaN for none).
    """
    raw = raw.copy()
    raw["alpha"] = raw["alpha"].astype(str)
    keys = [*RULE_KEYS, "n_layers"]
    wide = raw.pivot_table(index=[*keys, "seed", "layer"], columns="metric", values="value").reset_index()
    rows = []
    for key, g in wide.groupby(keys, sort=True):
        depth = int(key[-1])
        by_layer = g.set_index(["layer", "seed"])
        last, first = by_layer.loc[depth].sort_index(), by_layer.loc[1].sort_index()
        seeds = last.index.to_numpy(dtype=int)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed = {
                "cosine_last": last.cosine.to_numpy(float),
                "qk_v_first": ((first.grad_wq + first.grad_wk) / (2 * first.grad_wv)).to_numpy(float),
                "qk_v_last": ((last.grad_wq + last.grad_wk) / (2 * last.grad_wv)).to_numpy(float),
                "grad_in_out": (last.grad_input / last.grad_output).to_numpy(float),
            }
        for metric, values in per_seed.items():
            finite = values[np.isfinite(values)]
            m, lo, hi = mean_ci(finite) if len(finite) else (np.nan, np.nan, np.nan)
            rows.append({**dict(zip(keys, key)), "metric": metric, "mean": m, "ci_low": lo, "ci_high": hi,
                         "n_seeds": len(finite), "seeds": seeds, "seed_values": values})
        if "equiv_dev" in last and last.equiv_dev.notna().any():
            dev = float(last.equiv_dev.max())
            rows.append({**dict(zip(keys, key)), "metric": "equiv_dev", "mean": dev, "ci_low": np.nan,
                         "ci_high": np.nan, "n_seeds": int(last.equiv_dev.notna().sum()), "seeds": seeds,
                         "seed_values": last.equiv_dev.to_numpy(float)})
    t = pd.DataFrame(rows).rename(columns={"n_layers": "depth"})
    depths = sorted(int(d) for d in t.depth.unique())
    builds = t[RULE_KEYS].drop_duplicates()
    info = {tuple(b): (depth_rules.arm_label(*b), depth_rules.regime(*b, depths)) for b in builds.itertuples(False)}
    t["label"] = [info[k][0] for k in zip(*(t[c] for c in RULE_KEYS))]
    t["regime"] = [info[k][1] for k in zip(*(t[c] for c in RULE_KEYS))]
    refs = [depth_rules.reference(r, n, a, int(d)) if r != "none" else None
            for r, n, a, d in zip(t.residual_rule, t.norm, t.alpha, t.depth)]
    t["reference"] = np.array([np.nan if v is None else v for v in refs], dtype=float)
    return t.reset_index(drop=True)
