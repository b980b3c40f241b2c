"""The aggregators of sigprop.analysis.aggregate, one test per figure or table, on small hand-made raw tables.

Each raw table has the columns its experiment writes (sigprop.tasks.init_time, sigprop.tasks.toy_reversal,
sigprop.tasks.translation) and seed-level values chosen so that the usual mistakes (a mean of ratios for a
ratio of means, a layer shifted by one, a residual scale not resolved for the depth, a diverged run counted)
give a different number: the expected values are computed here with plain numpy loops, the theory columns
with sigprop.analysis.theory's formulas. Where another test file already covers an aggregator, this file
adds what it leaves out (named in each test's docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sigprop.analysis import aggregate, theory

REL = 1e-12


def _row(t: pd.DataFrame, **where) -> pd.Series:
    """The one row of ``t`` with the given column values."""
    mask = np.ones(len(t), dtype=bool)
    for k, v in where.items():
        mask &= (t[k] == v).fillna(False).to_numpy(dtype=bool)
    assert mask.sum() == 1, (where, int(mask.sum()))
    return t[mask].iloc[0]


def _ordered(t: pd.DataFrame) -> bool:
    """Every interval ordered and containing its mean."""
    return bool(((t.ci_low <= t["mean"]) & (t["mean"] <= t.ci_high)).all())


# ---------------------------------------------------------------- the helpers: mean_ci, ratio_ci, summarise


def test_mean_ci_is_the_percentile_bootstrap_of_scipy():
    """The interval is scipy.stats.bootstrap's percentile interval with the same generator (the same resamples;
    the quantile interpolation may differ in the last bit), reproducible, and NaN for a single seed."""
    x = np.array([1.0, 4.0, 2.5, 7.0, 3.0])
    m, lo, hi = aggregate.mean_ci(x)
    assert m == pytest.approx(17.5 / 5, rel=REL)
    ref = stats.bootstrap((x,), np.mean, n_resamples=aggregate.N_BOOT, confidence_level=aggregate.LEVEL,
                          method="percentile", rng=np.random.default_rng(0)).confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=REL)
    assert lo < m < hi
    assert aggregate.mean_ci(x) == (m, lo, hi)  # fixed generator: the same numbers on every call
    assert aggregate.mean_ci(x, seed=1)[1:] != (lo, hi)
    one = aggregate.mean_ci(np.array([2.0]))
    assert one[0] == 2.0 and np.isnan(one[1]) and np.isnan(one[2])
    assert aggregate.mean_ci(np.full(4, 3.0)) == (3.0, 3.0, 3.0)


def test_ratio_ci_is_a_ratio_of_means_resampling_seeds_jointly():
    num, den = np.array([1.0, 3.0, 2.0, 10.0]), np.array([1.0, 1.0, 2.0, 8.0])
    r, lo, hi = aggregate.ratio_ci(num, den)
    assert r == pytest.approx(16.0 / 12.0, rel=REL)
    assert r != pytest.approx(np.mean(num / den))  # a mean of per-seed ratios would be 1.1875
    ref = stats.bootstrap((num, den), lambda a, b, axis=-1: a.mean(axis) / b.mean(axis), paired=True,
                          vectorized=True, n_resamples=aggregate.N_BOOT, confidence_level=aggregate.LEVEL,
                          method="percentile", rng=np.random.default_rng(0)).confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=REL)
    assert lo < r < hi


def test_summarise_groups_sorted_with_seed_values_by_seed():
    raw = pd.DataFrame({"g": ["b", "a", "b", "a", "b", "a"], "seed": [2, 1, 0, 0, 1, 2],
                        "value": [6.0, 2.0, 4.0, 1.0, 5.0, 9.0]})
    t = aggregate.summarise(raw.sample(frac=1.0, random_state=3), ["g"], keep_seeds=True)
    assert list(t.g) == ["a", "b"] and list(t.n_seeds) == [3, 3]
    assert list(t["mean"]) == pytest.approx([4.0, 5.0], rel=REL)
    a = _row(t, g="a")
    assert list(a.seeds) == [0, 1, 2] and list(a.seed_values) == [1.0, 2.0, 9.0]
    assert _ordered(t)
    assert "seeds" not in aggregate.summarise(raw, ["g"]).columns


# ---------------------------------------------------------------- Figs 3, 9, S4: cosine and gradient ratios

ENC_SEEDS = 3
ENC_LAYERS = 3


def _enc_value(norm: str, alpha: str, seed: int, layer: int, metric: str, qk_fan: str = "d_model") -> float:
    """A value that differs by norm, alpha, convention, seed, layer and metric."""
    k = {"post": 0.0, "pre": 0.3}[norm] + {"1": 0.0, "1/sqrt(L)": 0.1}[alpha] + {"d_model": 0.0, "d_k": 0.05}[qk_fan]
    if metric == "cosine":
        return 0.2 + 0.1 * layer + k + 0.01 * seed**2
    scale = {"grad_wq": 1.0, "grad_wk": 2.0, "grad_wv": 3.0}[metric]
    return scale * (1 + seed) * (1 + k) * (0.5 + layer) ** (seed + 1)  # ratio to layer 1 depends on the seed


def _encoder_raw(norms=("post", "pre"), qk_fans=("d_model",), with_fig04_rows: bool = True) -> pd.DataFrame:
    rows = []
    for norm in norms:
        for qk in qk_fans:
            for alpha in ("1", "1/sqrt(L)"):
                for seed in range(ENC_SEEDS):
                    for layer in range(ENC_LAYERS + 1):
                        rows.append((norm, "relu", "softmax", qk, alpha, seed, layer, "cosine",
                                     _enc_value(norm, alpha, seed, layer, "cosine", qk)))
                        if layer >= 1:
                            rows += [(norm, "relu", "softmax", qk, alpha, seed, layer, m,
                                      _enc_value(norm, alpha, seed, layer, m, qk)) for m in ("grad_wq", "grad_wk",
                                                                                              "grad_wv")]
    if with_fig04_rows:  # Fig 4's linear, uniform-attention point: not part of Figs 3 and 9
        rows += [(n, "linear", "uniform", "d_model", "1", s, 1, "cosine", 99.0) for n in norms for s in range(2)]
    return pd.DataFrame(rows, columns=["norm", "activation", "attention", "qk_fan", "alpha", "seed", "layer",
                                       "metric", "value"])


@pytest.mark.parametrize("fig, norm", [("fig03", "post"), ("fig09", "pre")])
def test_fig03_fig09_cosine_means_and_gradient_ratios_to_layer_one(fig, norm):
    t = getattr(aggregate, fig)(_encoder_raw())
    assert set(t.norm) == {norm}  # the other norm's rows and Fig 4's linear/uniform rows are left out
    assert set(t.metric) == {"cosine", "grad_ratio_q", "grad_ratio_k", "grad_ratio_v"}
    assert (t.n_seeds == ENC_SEEDS).all() and _ordered(t)
    for alpha in ("1", "1/sqrt(L)"):
        for layer in range(ENC_LAYERS + 1):
            want = np.mean([_enc_value(norm, alpha, s, layer, "cosine") for s in range(ENC_SEEDS)])
            assert _row(t, metric="cosine", alpha=alpha, layer=layer)["mean"] == pytest.approx(want, rel=REL)
        for m, short in (("grad_wq", "q"), ("grad_wk", "k"), ("grad_wv", "v")):
            assert "grad_ratio_" + short in set(t.metric)
            for layer in range(1, ENC_LAYERS + 1):
                per_seed = [_enc_value(norm, alpha, s, layer, m) / _enc_value(norm, alpha, s, 1, m)
                            for s in range(ENC_SEEDS)]
                r = _row(t, metric=f"grad_ratio_{short}", alpha=alpha, layer=layer)
                assert r["mean"] == pytest.approx(np.mean(per_seed), rel=REL)  # mean of per-seed ratios
                assert list(r.seed_values) == pytest.approx(per_seed, rel=REL) and list(r.seeds) == [0, 1, 2]
    # a ratio of seed means would differ at layer 3 (the ratio to layer 1 varies by seed)
    means = [np.mean([_enc_value(norm, "1", s, ly, "grad_wq") for s in range(ENC_SEEDS)]) for ly in (3, 1)]
    assert _row(t, metric="grad_ratio_q", alpha="1", layer=3)["mean"] != pytest.approx(means[0] / means[1])


def test_figS4_keeps_both_conventions_apart():
    """Fig S4 groups by qk_fan (tests/test_checks.py: that Figs 3, 9 keep d_model only, and the error without d_k)."""
    t = aggregate.figS4(_encoder_raw(qk_fans=("d_model", "d_k")))
    assert set(t.qk_fan) == {"d_model", "d_k"} and set(t.norm) == {"post"}
    for qk in ("d_model", "d_k"):
        per_seed = [_enc_value("post", "1", s, 3, "grad_wv", qk) / _enc_value("post", "1", s, 1, "grad_wv", qk)
                    for s in range(ENC_SEEDS)]
        r = _row(t, qk_fan=qk, metric="grad_ratio_v", alpha="1", layer=3)
        assert r["mean"] == pytest.approx(np.mean(per_seed), rel=REL) and r.n_seeds == ENC_SEEDS
        want = np.mean([_enc_value("post", "1", s, 2, "cosine", qk) for s in range(ENC_SEEDS)])
        assert _row(t, qk_fan=qk, metric="cosine", alpha="1", layer=2)["mean"] == pytest.approx(want, rel=REL)


# ---------------------------------------------------------------- Figs 4, 8, S2: correlation and |X|^2 with theory

N_TOK = 5


def _stats_value(key: int, seed: int, layer: int, metric: str) -> float:
    """Seed-level |X^l|^2 and off-diagonal sum: positive, varying with the seed at layer 0 too."""
    if metric == "sq_norm":
        return (10.0 + key + seed) * 1.3**layer * (1 + 0.1 * seed * layer)
    return (2.0 + 0.5 * key + seed**2) * 1.6**layer


def _corr_raw(groups: dict[tuple, dict], n_layers: int = 4, seeds: int = 4) -> pd.DataFrame:
    """Long rows of offdiag and sq_norm per group (a dict of column values), seed and layer 0..n_layers."""
    rows = []
    for key, (_, cols) in enumerate(groups.items()):
        for seed in range(seeds):
            for layer in range(n_layers + 1):
                for metric in ("offdiag", "sq_norm"):
                    rows.append({**cols, "n_tokens": N_TOK, "n_layers": n_layers, "seed": seed, "layer": layer,
                                 "metric": metric, "value": _stats_value(key, seed, layer, metric)})
    return pd.DataFrame(rows)


def _expected_corr(key: int, layer: int, a: float, n_layers: int = 4, seeds: int = 4) -> dict[str, float]:
    """rho^l (ratio of seed means), mean |X^l|^2 and the theory at the mean input statistics, by hand."""
    sq = np.array([_stats_value(key, s, layer, "sq_norm") for s in range(seeds)])
    off = np.array([_stats_value(key, s, layer, "offdiag") for s in range(seeds)])
    sq0 = np.array([_stats_value(key, s, 0, "sq_norm") for s in range(seeds)])
    off0 = np.array([_stats_value(key, s, 0, "offdiag") for s in range(seeds)])
    x_sq, c0 = sq0.mean(), (off0 + sq0).mean()
    sq_seed_th = np.array([float(theory.sq_norm(N_TOK, sq0[s], off0[s] + sq0[s], layer, a, a))
                           for s in range(seeds)])
    return {"rho": off.sum() / ((N_TOK - 1) * sq.sum()), "sq": sq.mean(),
            "rho_th": float(theory.correlation(N_TOK, x_sq, c0, layer, a)),
            "sq_th": float(theory.sq_norm(N_TOK, x_sq, c0, layer, a, a)),
            "sq_dev": sq - sq_seed_th}


FIG08_GROUPS = {("uniform", "1"): {"attention": "uniform", "alpha": "1"},
                ("uniform", "1/sqrt(L)"): {"attention": "uniform", "alpha": "1/sqrt(L)"},
                ("softmax", "1"): {"attention": "softmax", "alpha": "1"}}


def test_fig08_correlation_sq_norm_theory_and_seed_deviations():
    t = aggregate.fig08(_corr_raw(FIG08_GROUPS))
    assert set(t.metric) == {"correlation", "sq_norm"} and len(t) == 3 * 5 * 2
    assert (t.n_seeds == 4).all() and _ordered(t)
    for key, (att, alpha) in enumerate(FIG08_GROUPS):
        a = 0.5 if alpha == "1/sqrt(L)" else 1.0  # 1/sqrt(4)
        for layer in range(5):
            e = _expected_corr(key, layer, a)
            rho = _row(t, attention=att, alpha=alpha, layer=layer, metric="correlation")
            sq = _row(t, attention=att, alpha=alpha, layer=layer, metric="sq_norm")
            assert rho["mean"] == pytest.approx(e["rho"], rel=REL) and sq["mean"] == pytest.approx(e["sq"], rel=REL)
            assert rho.theory == pytest.approx(e["rho_th"], rel=REL) and sq.theory == pytest.approx(e["sq_th"], rel=REL)
            assert list(sq.seed_dev) == pytest.approx(list(e["sq_dev"]), rel=1e-10)
            # the correlation's pseudo-value deviations average to measured minus theory
            assert np.mean(rho.seed_dev) == pytest.approx(e["rho"] - e["rho_th"], rel=1e-9, abs=1e-12)
    # alpha = 1/sqrt(L) resolved for L = 4: with alpha = 1 the theory would differ
    r = _row(t, attention="uniform", alpha="1/sqrt(L)", layer=3, metric="sq_norm")
    assert r.theory != pytest.approx(_expected_corr(1, 3, 1.0)["sq_th"])


def test_fig04_correlation_with_theory_only_in_the_theory_setting():
    groups = {k: {"norm": k[0], "activation": k[1], "attention": k[2], "alpha": k[3], "qk_fan": "d_model"}
              for k in [("none", "linear", "uniform", "1"), ("none", "linear", "uniform", "1/sqrt(L)"),
                        ("post", "relu", "softmax", "1"), ("post", "relu", "softmax", "0.5")]}
    t = aggregate.fig04(_corr_raw(groups))
    assert set(t.metric) == {"correlation"}
    assert set(t.alpha) == {"1", "1/sqrt(L)"}  # alpha = 0.5 is not in Fig 4
    for key, (norm, _, _, alpha) in enumerate(list(groups)[:3]):
        a = 0.5 if alpha == "1/sqrt(L)" else 1.0
        for layer in range(5):
            e = _expected_corr(key, layer, a)
            r = _row(t, norm=norm, alpha=alpha, layer=layer)
            assert r["mean"] == pytest.approx(e["rho"], rel=REL)
            if norm == "none":
                assert r.theory == pytest.approx(e["rho_th"], rel=REL) and len(r.seed_dev) == 4
            else:
                assert np.isnan(r.theory) and r.seed_dev is None


def test_figS2_last_layer_theory_and_limits_from_theory():
    """tests/test_supplementary.py: limits' kinds, seed-value means; here: every column against theory by hand."""
    frames = []
    for depth in (2, 8):
        raw = _corr_raw({("uniform", a): {"attention": "uniform", "alpha": a} for a in ("1", "1/sqrt(L)")},
                        n_layers=depth, seeds=3)
        frames.append(raw)
    t = aggregate.figS2(pd.concat(frames, ignore_index=True))
    assert sorted(set(t.depth)) == [2, 8] and "layer" not in t.columns and len(t) == 2 * 2 * 2
    for key, alpha in enumerate(("1", "1/sqrt(L)")):
        for depth in (2, 8):
            a = 1 / math.sqrt(depth) if key else 1.0
            e = _expected_corr(key, depth, a, n_layers=depth, seeds=3)
            rho = _row(t, alpha=alpha, depth=depth, metric="correlation")
            sq = _row(t, alpha=alpha, depth=depth, metric="sq_norm")
            assert rho["mean"] == pytest.approx(e["rho"], rel=REL) and sq["mean"] == pytest.approx(e["sq"], rel=REL)
            assert rho.theory == pytest.approx(e["rho_th"], rel=REL) and sq.theory == pytest.approx(e["sq_th"], rel=REL)
            sq_last = [_stats_value(key, s, depth, "sq_norm") for s in range(3)]
            assert list(sq.seed_values) == pytest.approx(sq_last, rel=REL)
            sq0 = np.mean([_stats_value(key, s, 0, "sq_norm") for s in range(3)])
            c0 = sq0 + np.mean([_stats_value(key, s, 0, "offdiag") for s in range(3)])
            if key:
                assert rho.scaling == "alpha^2 = 1/L"
                assert rho.limit == pytest.approx(theory.correlation_limit(N_TOK, sq0, c0, 1.0), rel=REL)
                assert sq.limit == pytest.approx(theory.sq_norm_limit(N_TOK, sq0, c0, 1.0, 1.0), rel=REL)
            else:
                assert rho.scaling == "constant alpha" and rho.limit == 1.0 and np.isinf(sq.limit)


# ---------------------------------------------------------------- Fig 10: samples of |X^l|^2 with their means


def test_fig10_samples_empirical_and_theoretical_means():
    groups = {k: {"attention": k[0], "input_std": k[1], "alpha": k[2]}
              for k in [("uniform", "1/sqrt(d)", "1"), ("softmax", "1", "1/sqrt(L)")]}
    t = aggregate.fig10(_corr_raw(groups))
    assert sorted(set(t.layer)) == [1, 2, 3, 4]  # layer 0 is the input
    assert len(t) == 2 * 4 * 4 and set(t.n_layers) == {4}
    for key, (att, std, alpha) in enumerate(groups):
        a = 0.5 if alpha == "1/sqrt(L)" else 1.0
        for layer in range(1, 5):
            g = t[(t.attention == att) & (t.input_std == std) & (t.layer == layer)].sort_values("seed")
            e = _expected_corr(key, layer, a)
            assert list(g.sq_norm) == pytest.approx([_stats_value(key, s, layer, "sq_norm") for s in range(4)])
            assert list(g.emp_mean) == pytest.approx([e["sq"]] * 4, rel=REL)
            assert list(g.theory_mean) == pytest.approx([e["sq_th"]] * 4, rel=REL)


# ---------------------------------------------------------------- Fig 7: concentration vs d_k


def test_fig07_means_per_d_k_with_seed_values():
    rows = [{"n_tokens": 8, "d_v": 4, "d_k": d_k, "seed": s, "metric": "concentration",
             "value": 1.0 / d_k + 0.01 * s**2} for d_k in (16, 1, 256) for s in (2, 0, 1)]
    t = aggregate.fig07(pd.DataFrame(rows))
    assert list(t.d_k) == [1, 16, 256] and (t.n_seeds == 3).all() and _ordered(t)
    for d_k in (1, 16, 256):
        r = _row(t, d_k=d_k)
        assert r["mean"] == pytest.approx(1.0 / d_k + 0.05 / 3, rel=REL)
        assert list(r.seeds) == [0, 1, 2] and list(r.seed_values) == pytest.approx([1 / d_k, 1 / d_k + 0.01,
                                                                                    1 / d_k + 0.04])


# ---------------------------------------------------------------- Figs 11-13: attention Jacobians


def _jac_raw() -> pd.DataFrame:
    """Two sweeps (s, rho) sharing their centre point (s = 1, rho = 0.3): the centre's rows appear twice."""
    rows = []
    points = [(1.0, 0.3), (0.5, 0.3), (1.0, 0.3), (1.0, 0.0)]
    for att in ("uniform", "softmax"):
        for s_, rho in points:
            for seed in range(3):
                q = (1 + seed) * s_ * (1 - rho) * (2.0 if att == "softmax" else 1.0)
                v = (2 + seed**2) * s_ * (1 + rho)
                rows += [{"attention": att, "n_tokens": 6, "d_model": 4, "s": s_, "rho": rho, "dtype": "float64",
                          "seed": seed, "metric": m, "value": val} for m, val in (("grad_q_sq", q), ("grad_v_sq", v))]
    return pd.DataFrame(rows)


def test_fig11_seed_means_counted_once_and_the_formulas():
    """tests/test_checks.py: n_seeds with the shared centre; here: means, and the formula matched to the metric."""
    t = aggregate.fig11(_jac_raw())
    assert len(t) == 2 * 3 * 2 and (t.n_seeds == 3).all()
    for att, f in (("uniform", 1.0), ("softmax", 2.0)):
        r = _row(t, attention=att, s=0.5, rho=0.3, metric="grad_q_sq")
        assert r["mean"] == pytest.approx(np.mean([(1 + k) * 0.5 * 0.7 * f for k in range(3)]), rel=REL)
        assert r.theory == pytest.approx(float(theory.grad_q_sq(6, 4, 0.5, 0.3)), rel=REL)
        r = _row(t, attention=att, s=1.0, rho=0.0, metric="grad_v_sq")
        assert r["mean"] == pytest.approx(np.mean([2 + k**2 for k in range(3)]), rel=REL)
        assert r.theory == pytest.approx(float(theory.grad_v_sq(6, 4, 1.0, 0.0)), rel=REL)
    assert theory.grad_q_sq(6, 4, 0.5, 0.3) != pytest.approx(theory.grad_v_sq(6, 4, 0.5, 0.3))  # a swap would show


def test_fig12_log_ratio_of_seed_means_and_fig13_from_the_formulas():
    raw = _jac_raw()
    raw = raw[raw.attention == "uniform"].drop(columns=["attention", "dtype"])
    t = aggregate.fig12(raw)
    assert len(t) == 3
    for s_, rho in ((1.0, 0.3), (0.5, 0.3), (1.0, 0.0)):
        q = np.mean([(1 + k) * s_ * (1 - rho) for k in range(3)])
        v = np.mean([(2 + k**2) * s_ * (1 + rho) for k in range(3)])
        r = _row(t, s=s_, rho=rho)
        assert r.grad_q_sq == pytest.approx(q, rel=REL) and r.grad_v_sq == pytest.approx(v, rel=REL)
        assert r.log10_ratio == pytest.approx(0.5 * math.log10(q / v), rel=REL)
        # a mean of the per-seed log ratios would differ
        per_seed = np.mean([0.5 * math.log10((1 + k) * (1 - rho) / ((2 + k**2) * (1 + rho))) for k in range(3)])
        assert r.log10_ratio != pytest.approx(per_seed)
    th = aggregate.fig13(raw)
    assert len(th) == 3 and set(th.columns) == {"n_tokens", "d_model", "s", "rho", "grad_q_sq", "grad_v_sq",
                                                "log10_ratio"}
    r = _row(th, s=0.5, rho=0.3)
    q, v = float(theory.grad_q_sq(6, 4, 0.5, 0.3)), float(theory.grad_v_sq(6, 4, 0.5, 0.3))
    assert (r.grad_q_sq, r.grad_v_sq) == pytest.approx((q, v), rel=REL)
    assert r.log10_ratio == pytest.approx(0.5 * math.log10(q / v), rel=REL)


# ---------------------------------------------------------------- Fig 5: the toy reversal task


def test_fig05_per_layer_and_global_rows():
    """tests/test_train.py: the Q/V ratio on a real run; here: per-layer means, the global rows, the K/V ratio."""
    rows = []
    for seed in range(3):
        for step in (10, 20):
            rows += [(seed, step, pd.NA, None, "loss", 2.0 - 0.01 * step + 0.1 * seed),
                     (seed, step, pd.NA, None, "val_accuracy", 0.5 + 0.01 * step)]
            for layer in (1, 2):
                for m, f in (("wq", 3.0), ("wk", 2.0), ("wv", 1.0)):
                    med = f * (1 + seed) ** layer * step
                    rows += [(seed, step, layer, m, "eff_lr_median", med), (seed, step, layer, m, "grad_norm", med + 1)]
    raw = pd.DataFrame(rows, columns=["seed", "step", "layer", "matrix", "metric", "value"])
    raw["layer"] = raw.layer.astype("Int64")
    t = aggregate.fig05(raw)
    assert str(t.layer.dtype) == "Int64"
    loss = _row(t, metric="loss", step=20)
    assert pd.isna(loss.layer) and loss.matrix == "" and loss["mean"] == pytest.approx(1.8 + 0.1, rel=REL)
    assert list(loss.seed_values) == pytest.approx([1.8, 1.9, 2.0])
    g = _row(t, metric="grad_norm", matrix="wk", layer=2, step=10)
    assert g["mean"] == pytest.approx(np.mean([2.0 * (1 + s) ** 2 * 10 + 1 for s in range(3)]), rel=REL)
    kv = _row(t, metric="eff_lr_ratio", matrix="wk/wv", layer=1, step=20)
    assert kv["mean"] == pytest.approx(2.0, rel=REL) and kv.n_seeds == 3
    assert _ordered(t[t.n_seeds > 1])


# ---------------------------------------------------------------- translation: Figs 1, 6, 14, Table 1, S1

LABELS = {"adam_postln": "Adam POST-LN", "sgd_postln": "SGD POST-LN", "sgd_temperature": "SGD temperature"}


def _log_rows() -> pd.DataFrame:
    rows = []
    for method, layers in (("adam_postln", 2), ("sgd_postln", 2)):
        for seed in range(3):
            diverged = method == "sgd_postln" and seed == 1
            for step in range(0, 1001, 100):
                for side in ("encoder", "decoder"):
                    for layer in range(layers + 1):
                        base = 0.1 * layer + 0.01 * seed + step / 1e4 + (0.5 if side == "decoder" else 0.0)
                        for metric, val in (("cosine", base), ("act_norm", 10 + base), ("grad_wq", 5 + base)):
                            rows.append((method, layers, seed, diverged, step, metric, side, layer, val))
                    for layer in range(1, layers + 1):
                        rows += [(method, layers, seed, diverged, step, "alpha1", side, layer, 0.5 + step / 1e3),
                                 (method, layers, seed, diverged, step, "alpha2", side, layer, 0.4 + step / 1e3)]
                rows.append((method, layers, seed, diverged, step, "tau", "", -1, min(1.0, step / 500)))
    df = pd.DataFrame(rows, columns=["method", "layers", "seed", "diverged", "step", "metric", "side", "layer",
                                     "value"])
    df.insert(0, "method_label", df.method.map(LABELS))
    df.insert(0, "dataset", "iwslt14-mini")
    return df


def test_fig01_encoder_cosine_per_step_and_layer_with_divergence_counts():
    """tests/test_claims.py: the claims on aggregated rows; here: the values and the run counts."""
    t = aggregate.fig01(_log_rows())
    assert len(t) == 2 * 11 * 3  # methods x steps x layers: encoder cosine only
    r = _row(t, method="adam_postln", step=300, layer=2)
    assert r["mean"] == pytest.approx(0.2 + 0.01 + 0.03, rel=REL)  # the decoder's (+0.5) is not mixed in
    assert list(r.seeds) == [0, 1, 2] and list(r.seed_values) == pytest.approx([0.23, 0.24, 0.25])
    assert (r.n_runs, r.n_diverged) == (3, 0)
    s = _row(t, method="sgd_postln", step=0, layer=0)
    assert (s.n_runs, s.n_diverged) == (3, 1) and _ordered(t)


def test_fig14_five_snapshots_of_the_logged_metrics():
    t = aggregate.fig14(_log_rows())
    assert sorted(set(t.step)) == [0, 200, 500, 800, 1000]  # 5 of the 11 logged steps, first and last kept
    assert set(t.metric) == {"cosine", "alpha1", "alpha2", "act_norm", "tau"}  # no gradient rows
    r = t[(t.method == "adam_postln") & (t.seed == 2) & (t.metric == "alpha2") & (t.step == 800) & (t.layer == 1)
          & (t.side == "encoder")]
    assert list(r.value) == pytest.approx([0.4 + 0.8])  # raw values, not averaged
    assert list(t[(t.metric == "tau") & (t.seed == 0) & (t.method == "adam_postln")].value) == [0.0, 0.4, 1.0, 1.0,
                                                                                                  1.0]
    few = _log_rows()
    few = few[few.step <= 300]
    assert sorted(set(aggregate.fig14(few).step)) == [0, 100, 200, 300]  # <= 5 steps: all of them


def _eval_rows() -> pd.DataFrame:
    rows = []
    for method, layers, bleus in (("adam_postln", 6, [30.0, 31.0, 33.0]), ("adam_postln", 2, [20.0, 22.0, 21.0]),
                                  ("sgd_postln", 6, [10.0, math.nan, 14.0])):
        for seed, bleu in enumerate(bleus):
            diverged = math.isnan(bleu)
            rows.append({"dataset": "iwslt14", "method": method, "method_label": LABELS[method], "layers": layers,
                         "seed": seed, "diverged": diverged, "bleu": bleu,
                         "sacrebleu_detok": math.nan if diverged else bleu - 1.0,
                         "best_valid_loss": 99.0 if diverged else 4.0 + seed, "test_sentences": 0 if diverged else 700,
                         "beam": 5, "updates": 40 if diverged else 100 + seed})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1)


def test_fig06_means_over_runs_that_did_not_diverge():
    t = aggregate.fig06(_eval_rows())
    assert len(t) == 3 and list(zip(t.method, t.layers)) == [("adam_postln", 2), ("adam_postln", 6),
                                                             ("sgd_postln", 6)]
    a = _row(t, method="adam_postln", layers=6)
    assert a["mean"] == pytest.approx(94.0 / 3, rel=REL) and a.sacrebleu_detok == pytest.approx(91.0 / 3, rel=REL)
    assert a.valid_loss == pytest.approx(5.0, rel=REL) and a.ci_low < a["mean"] < a.ci_high
    assert (a.n_runs, a.n_diverged, a.test_sentences, a.beam, a.updates) == (3, 0, 700, 5, 102)
    s = _row(t, method="sgd_postln", layers=6)
    assert s["mean"] == pytest.approx(12.0, rel=REL)  # the diverged run is left out of the mean ...
    assert s.valid_loss == pytest.approx(5.0, rel=REL) and (s.n_runs, s.n_diverged) == (3, 1)  # ... and counted
    assert list(s.seeds) == [0, 1, 2]
    np.testing.assert_array_equal(s.seed_values, [10.0, np.nan, 14.0])
    assert (s.valid_loss_ci_low <= s.valid_loss <= s.valid_loss_ci_high)


def test_table1_beside_the_papers_values_in_the_papers_order():
    """tests/test_translation_results.py: means, diverged counts, the default order; here: paper column, diff, order."""
    paper = {"sgd_postln": 11.0, "adam_postln": 30.0}
    t = aggregate.table1(_eval_rows(), paper)
    assert list(zip(t.method, t.layers)) == [("sgd_postln", 6), ("adam_postln", 2), ("adam_postln", 6)]
    assert list(t.paper_bleu) == [11.0, 30.0, 30.0]
    assert list(t["diff"]) == pytest.approx([12.0 - 11.0, 21.0 - 30.0, 94.0 / 3 - 30.0], rel=REL)
    t = aggregate.table1(_eval_rows(), {"adam_postln": 30.0})
    assert list(t.method) == ["adam_postln", "adam_postln", "sgd_postln"]  # a method the paper lacks goes last
    assert np.isnan(t.paper_bleu.iloc[-1]) and np.isnan(t["diff"].iloc[-1])


def test_figS1_cosine_gradient_ratios_and_loss_per_model():
    """tests/test_supplementary.py: ratio 1 at layer 1 and NaN for 0/0 on a real probe; here: values by hand."""
    rows = []
    for tau_at, tau in (("final", 8.5), ("init", 0.0)):
        for seed in range(3):
            for side in ("encoder", "decoder"):
                for layer in range(3):
                    rows.append((tau_at, tau, seed, side, layer, "cosine", 0.1 * layer + 0.01 * seed + tau / 100))
                for layer in (1, 2):
                    for m, f in (("grad_wq", 1.0), ("grad_wk", 2.0), ("grad_wv", 3.0)):
                        rows.append((tau_at, tau, seed, side, layer, m, f * (1 + seed) ** layer))
            rows.append((tau_at, tau, seed, "batch", 0, "loss", 5.0 + seed))
    raw = pd.DataFrame(rows, columns=["tau_at", "tau", "seed", "side", "layer", "metric", "value"])
    raw = raw.assign(dataset="iwslt14-mini", method="sgd_temperature", method_label="SGD temperature", layers=2)
    t = aggregate.figS1(raw)
    assert set(t.metric) == {"cosine", "grad_ratio_q", "grad_ratio_k", "grad_ratio_v", "loss"}
    r = _row(t, tau_at="init", side="decoder", metric="grad_ratio_k", layer=2)
    assert r.tau == 0.0 and r["mean"] == pytest.approx(np.mean([1.0, 2.0, 3.0]), rel=REL)  # (1+s)^2 / (1+s)
    assert list(r.seed_values) == pytest.approx([1.0, 2.0, 3.0])
    c = _row(t, tau_at="final", side="encoder", metric="cosine", layer=1)
    assert c["mean"] == pytest.approx(0.1 + 0.01 + 0.085, rel=REL)
    loss = _row(t, tau_at="final", metric="loss")
    assert loss.side == "batch" and loss["mean"] == pytest.approx(6.0, rel=REL) and loss.n_seeds == 3


# ---------------------------------------------------------------- Fig S3: rank measures


def test_figS3_rank_measures_per_norm_alpha_layer():
    rows = []
    for norm in ("post", "pre"):
        for act, att in (("relu", "softmax"), ("linear", "uniform")):
            for seed in range(3):
                for layer in range(3):
                    for k, m in enumerate(("cosine", "rel_residual", "stable_rank", "offdiag")):
                        val = k + 0.1 * layer + 0.01 * seed + (0.5 if norm == "pre" else 0) + (9 if act == "linear"
                                                                                                  else 0)
                        rows.append((norm, act, att, "d_model", "1", seed, layer, m, val))
    raw = pd.DataFrame(rows, columns=["norm", "activation", "attention", "qk_fan", "alpha", "seed", "layer", "metric",
                                      "value"])
    t = aggregate.figS3(raw)
    assert set(t.metric) == {"cosine", "rel_residual", "stable_rank"} and len(t) == 2 * 3 * 3
    r = _row(t, norm="pre", metric="stable_rank", layer=2)
    assert r["mean"] == pytest.approx(2 + 0.2 + 0.01 + 0.5, rel=REL)  # the linear/uniform rows (+9) left out
    assert list(r.seed_values) == pytest.approx([2.7, 2.71, 2.72]) and _ordered(t)
    with pytest.raises(ValueError, match="'stable_rank'.*rerun the encoder_init"):
        aggregate.figS3(raw[raw.metric != "stable_rank"])
