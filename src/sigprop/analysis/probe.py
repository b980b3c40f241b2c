"""Fig S7 (the model probe, :mod:`sigprop.tasks.probe`): aggregation of its raw tables and its checks.

Checks, fixed before any run (docs/supplementary.md):

* the library's depth scaling: GPT-2's per-block ``c_proj`` weights (attention and MLP) are N(0, sigma^2) with
  sigma = 0.02/sqrt(2L). With the mean known (0), N sigma_hat^2 / sigma^2 ~ chi^2_N for the N entries of a
  block, so each block and seed gets a two-sided chi-square test; the check fails on evidence against the rule
  (Bonferroni over every block, seed and depth). Run on the ``unscaled`` arm (the init of transformers 5.14.1,
  #47458) the same test must reject at every depth: a row that says the check would have caught #47458;
* the probe against the project's model: in the ReLU twin arm (float64) the largest deviation of
  :class:`sigprop.model.Stack` with the same weights from the library's model, over layers and seeds, of the
  token cosine (absolute), the token norm and the q/k/v gradient norms (relative), is at most XCHECK_TOL;
* the paper's prediction on the paired arms (one-sided paired t-tests over seeds, level 0.05): at the largest
  depth the depth-scaled arm's last-layer token cosine lies below the unscaled arm's (GPT-2 as built below
  c_proj unscaled; Llama scaled below default), and the unscaled arm's last-layer cosine rises from the
  smallest depth to the largest (seeds matched by index, as Fig S1; intersection-union over adjacent depths).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from sigprop.analysis.aggregate import summarise
from sigprop.analysis.checkrow import Check
from sigprop.analysis.checkrow import format_p as _p
from sigprop.analysis.stats import SIGNIFICANCE_LEVEL, bonferroni_level, paired_pvalue
from sigprop.tasks.probe import ARM_LABELS, MODEL_LABELS, depth_scaled_std

KEYS = ["model", "arm", "n_layers"]
#: float64 rounding over <= 48 blocks stays below 1e-12; any wrong copy of a weight (transposed, a bias left out,
#: query and key swapped) moves these numbers by 1e-3 or more (tests/test_probe.py)
XCHECK_TOL = 1e-9
#: the paired arms of the claims: model -> (the depth-scaled arm, the unscaled arm)
PAIRED_ARMS = {"gpt2": ("built", "unscaled"), "llama": ("scaled", "default")}


def aggregate(raw: pd.DataFrame) -> pd.DataFrame:
    """Per model, arm, depth, metric and layer: mean over seeds, bootstrap 95% interval and the seed values.

    Adds per seed ``qv_ratio`` = grad_q / grad_v and ``out_std_rel`` = out_rms / (0.02/sqrt(2L)) (1: GPT-2's
    depth-scaled std).
    """
    wide = raw.pivot_table(index=[*KEYS, "seed", "layer"], columns="metric", values="value").reset_index()
    wide["qv_ratio"] = wide.grad_q / wide.grad_v
    wide["out_std_rel"] = wide.out_rms / wide.n_layers.map(lambda n: depth_scaled_std(int(n)))
    long = wide.melt(id_vars=[*KEYS, "seed", "layer"], var_name="metric", value_name="value").dropna(subset="value")
    return summarise(long, [*KEYS, "metric", "layer"], keep_seeds=True)


def _rows(t: pd.DataFrame, model: str, arm: str, metric: str) -> pd.DataFrame:
    return t[(t.model == model) & (t.arm == arm) & (t.metric == metric)]


def std_pvalues(t: pd.DataFrame, model: str, arm: str) -> pd.DataFrame:
    """Per depth, block and seed: the two-sided chi-square p-value of the block's output weights being
    N(0, (0.02/sqrt(2L))^2), and the measured std over that value."""
    rms = _rows(t, model, arm, "out_rms").set_index(["n_layers", "layer"])
    numel = _rows(t, model, arm, "out_numel").set_index(["n_layers", "layer"])
    out = []
    for (n_layers, layer), r in rms.iterrows():
        sigma = depth_scaled_std(int(n_layers))
        n = np.asarray(numel.loc[(n_layers, layer), "seed_values"], float)
        s = np.asarray(r.seed_values, float)
        stat = n * (s / sigma) ** 2
        p = 2 * np.minimum(sps.chi2.cdf(stat, n), sps.chi2.sf(stat, n))
        out += [{"n_layers": int(n_layers), "layer": int(layer), "seed": int(seed), "p": float(min(pv, 1.0)),
                 "rel": float(sv / sigma)} for seed, pv, sv in zip(r.seeds, p, s)]
    return pd.DataFrame(out, columns=["n_layers", "layer", "seed", "p", "rel"])


def _last_layer_cosine(t: pd.DataFrame, model: str, arm: str, n_layers: int) -> pd.Series:
    r = _rows(t, model, arm, "cosine")
    r = r[(r.n_layers == n_layers) & (r.layer == n_layers)].iloc[0]
    return pd.Series(np.asarray(r.seed_values, float), index=np.asarray(r.seeds, int))


def _paired(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    common = a.index.intersection(b.index)
    return a[common].to_numpy(), b[common].to_numpy()


def _missing(name: str, needs: str) -> Check:
    return Check(name, "figS7", "-", np.nan, f"needs {needs} in experiments.model_probe", False, applicable=False)


def std_checks(t: pd.DataFrame) -> list[Check]:
    """GPT-2 as built: c_proj std = 0.02/sqrt(2L) (fails only on evidence against it); unscaled: rejected."""
    out = []
    for arm, name, decide in (
        ("built", "figS7 GPT-2 as built: per-block c_proj std = 0.02/sqrt(2L) (max |std / (0.02/sqrt(2L)) - 1|)",
         _std_built),
        ("unscaled", "figS7 GPT-2 with c_proj unscaled (transformers 5.14.1, #47458): the std check rejects it at "
         "every depth", _std_unscaled),
    ):
        pv = std_pvalues(t, "gpt2", arm)
        out.append(_missing(name, "gpt2") if pv.empty else decide(name, pv, 1 - bonferroni_level(len(pv))))
    return out


def _std_built(name: str, built: pd.DataFrame, alpha: float) -> Check:
    """Passed unless a block's std is rejected (chi-square, Bonferroni over blocks x seeds)."""
    bad = int((built.p < alpha).sum())
    depths = sorted(int(d) for d in built.n_layers.unique())
    return Check(name, "figS7", "0", float((built.rel - 1).abs().max()),
                 f"two-sided chi-square test of N(0, (0.02/sqrt(2L))^2) per block and seed ({len(built)} blocks x "
                 f"seeds over depths {depths}, Bonferroni at {SIGNIFICANCE_LEVEL}); {bad} rejected, smallest p = "
                 f"{_p(built.p.min())}", bad == 0)


def _std_unscaled(name: str, unscaled: pd.DataFrame, alpha: float) -> Check:
    """Passed if the same test rejects the unscaled arm at every depth."""
    per_depth = unscaled.groupby("n_layers").p.min()
    return Check(name + " (median std / (0.02/sqrt(2L)) at the largest depth)", "figS7", "rejected",
                 float(unscaled[unscaled.n_layers == unscaled.n_layers.max()].rel.median()),
                 f"the same test (Bonferroni over {len(unscaled)}); smallest p per depth: "
                 + ", ".join(f"L={int(d)}: {_p(p)}" for d, p in per_depth.items()), bool((per_depth < alpha).all()))


def xcheck_checks(t: pd.DataFrame) -> list[Check]:
    """The twin arm: the project's stack with the library's weights reproduces its measurements."""
    out = []
    for model, block in (("gpt2", "PRE-LN"), ("bert", "POST-LN")):
        x = t[(t.model == model) & (t.arm == "twin") & t.metric.str.startswith("xcheck_")]
        name = (f"figS7 {MODEL_LABELS[model]} (ReLU, float64) vs sigprop.model {block} Stack with its weights: largest "
                "deviation of token cosine, norm, |grad Wq|, |grad Wk|, |grad Wv| over layers and seeds")
        if x.empty:
            out.append(_missing(name, f"the twin arm of {model} (twin_layers)"))
            continue
        dev = float(np.nanmax(np.concatenate([np.abs(np.asarray(v, float)) for v in x.seed_values])))
        depths = sorted(int(d) for d in x.n_layers.unique())
        out.append(Check(name, "figS7", "0", dev, f"<= {XCHECK_TOL:g} (float64 rounding; depth {depths}, "
                         f"{int(x.n_seeds.min())} seeds, cosine absolute, the rest relative)", dev <= XCHECK_TOL))
    return out


def claim_checks(t: pd.DataFrame) -> list[Check]:
    """The paper's prediction on the paired arms (one-sided paired t-tests over seeds)."""
    out = []
    for model, (scaled, unscaled) in PAIRED_ARMS.items():
        label = MODEL_LABELS[model]
        have = set(t[t.model == model].arm)
        depths = sorted(int(d) for d in t[(t.model == model) & (t.arm == unscaled)].n_layers.unique())
        name = (f"figS7 {label}: last-layer cosine, {ARM_LABELS[scaled]} below {ARM_LABELS[unscaled]} at the "
                "largest depth")
        if not {scaled, unscaled} <= have or not depths:
            out.append(_missing(name, f"the arms {scaled} and {unscaled} of {model}"))
            continue
        lmax = depths[-1]
        a, b = _paired(_last_layer_cosine(t, model, scaled, lmax), _last_layer_cosine(t, model, unscaled, lmax))
        p = paired_pvalue(b, a, "greater")
        out.append(Check(f"{name} (L = {lmax}: {a.mean():.3f} vs {b.mean():.3f})", "figS7", f"p < {SIGNIFICANCE_LEVEL}",
                         p, f"paired one-sided t-test over {len(a)} seeds", bool(p < SIGNIFICANCE_LEVEL)))
        name = f"figS7 {label} {ARM_LABELS[unscaled]}: last-layer cosine rises with depth"
        if len(depths) < 2:
            out.append(_missing(name, "two depths"))
            continue
        cos = {d: _last_layer_cosine(t, model, unscaled, d) for d in depths}
        ps = [paired_pvalue(*_paired(cos[hi], cos[lo]), "greater") for lo, hi in zip(depths[:-1], depths[1:])]
        p = float(np.nanmax(ps))
        means = ", ".join(f"{cos[d].mean():.3f}" for d in depths)
        out.append(Check(f"{name} (L = {'/'.join(map(str, depths))}: {means})", "figS7", f"p < {SIGNIFICANCE_LEVEL}",
                         p, f"paired one-sided t-tests over {len(cos[depths[0]])} seeds, each adjacent depth pair "
                         "(intersection-union: largest p)", bool(p < SIGNIFICANCE_LEVEL)))
    return out


def checks(t: pd.DataFrame) -> list[Check]:
    """Fig S7's checks (this module's docstring)."""
    return std_checks(t) + xcheck_checks(t) + claim_checks(t)


def report_table(t: pd.DataFrame) -> pd.DataFrame:
    """Fig S7 in numbers (the report): per model, arm and depth, means over seeds of the last layer's token cosine,
    |grad Wq| / |grad Wv| at the first and the last block, and the output-weight std over 0.02/sqrt(2L)."""
    t = t[t.arm != "twin"]
    rows = []
    for (model, arm, n_layers), g in t.groupby(KEYS, sort=False):
        def at(metric: str, layer: int, g: pd.DataFrame = g) -> float:
            r = g[(g.metric == metric) & (g.layer == layer)]
            return float(r["mean"].iloc[0]) if len(r) else np.nan

        std = g[g.metric == "out_std_rel"]["mean"]
        rows.append({"model": MODEL_LABELS.get(model, model), "arm": ARM_LABELS.get(arm, arm), "L": int(n_layers),
                     "cosine at L": at("cosine", n_layers), "|gQ|/|gV| block 1": at("qv_ratio", 1),
                     "|gQ|/|gV| block L": at("qv_ratio", n_layers), "out std / (0.02/sqrt(2L))": float(std.mean())})
    return pd.DataFrame(rows).round(4)
