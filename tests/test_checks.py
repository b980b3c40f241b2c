"""The checks of sigprop.analysis.checks and the statistics behind them (sigprop.analysis.stats).

Every check is shown to FAIL on a deliberately wrong input (a wrong theory, a shuffled alpha order, a
collapsing seed, ...) and to pass on a right one; the tests themselves are checked against hand-computed
values and, for the simultaneous band, for their false-failure rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sigprop.analysis import aggregate, checks, theory
from sigprop.analysis import stats as stats_tests
from sigprop.tasks.init_time import run_point


def _by_name(rows: list[checks.Check], *words: str) -> checks.Check:
    found = [c for c in rows if all(w in c.name for w in words)]
    assert len(found) == 1, [c.name for c in rows]
    return found[0]


def _all_pass(rows: list[checks.Check]) -> bool:
    return all(c.passed for c in rows if c.applicable)


# ---------------------------------------------------------------- the statistics, against hand computation


def test_t_interval_and_pvalues_hand_computed():
    x = np.array([1.0, 2.0, 3.0])  # mean 2, s.e. 1/sqrt(3)
    half = stats.t.ppf(0.975, 2) / np.sqrt(3)  # 4.303 / sqrt(3)
    assert stats_tests.t_interval(x, 0.95) == pytest.approx((2 - half, 2 + half))
    assert stats_tests.t_pvalue(x, 0.0, "greater") == pytest.approx(stats.t.sf(2 * np.sqrt(3), 2))
    assert stats_tests.t_pvalue(np.full(4, 3.0), 2.0, "greater") == 0.0  # constant: on the side of H1
    assert stats_tests.t_pvalue(np.full(4, 3.0), 2.0, "less") == 1.0
    assert stats_tests.t_interval(np.full(4, 3.0), 0.95) == (3.0, 3.0)
    assert stats_tests.paired_pvalue([2, 3, 5], [1, 1, 2], "greater") == pytest.approx(
        stats_tests.t_pvalue(np.array([1.0, 2.0, 3.0]), 0.0, "greater"))
    assert stats_tests.bonferroni_level(10) == pytest.approx(0.995)


def test_tost_relative():
    rng = np.random.default_rng(0)
    near = 100 * (1 + 0.01 * rng.standard_normal(50))
    assert stats_tests.tost_relative(near, 100.0, 0.10) < 1e-6
    assert stats_tests.tost_relative(near * 1.2, 100.0, 0.10) > 0.5  # 20% off: not equivalent within 10%
    assert stats_tests.tost_relative(near[:2] * [0.5, 1.5], 100.0, 0.10) > 0.05  # too noisy to show it


def test_ratio_pseudo_values_give_the_delta_method():
    rng = np.random.default_rng(1)
    num, den = rng.gamma(2.0, size=40), rng.gamma(5.0, size=40)
    ps = stats_tests.ratio_pseudo_values(num, den)
    r = num.mean() / den.mean()
    assert ps.mean() == pytest.approx(r)
    # delta method: Var(num - r den) / (n mean(den)^2)
    var = np.var(num - r * den, ddof=1) / (len(num) * den.mean() ** 2)
    assert np.var(ps, ddof=1) / len(ps) == pytest.approx(var)


@pytest.mark.slow
def test_simultaneous_band_fails_by_chance_at_most_alpha():
    """33 layers x 5 seeds of N(0, 1) deviations (the theory right): the Bonferroni band fails <= 5% of the time,
    the pointwise 95% intervals (the old check) most of the time."""
    rng = np.random.default_rng(2)
    reps, layers, seeds = 400, 33, 5
    band_fail = pointwise_fail = 0
    for _ in range(reps):
        devs = list(rng.standard_normal((layers, seeds)))
        band_fail += not checks.theory_band(devs)[0]
        pointwise_fail += not checks.theory_band(devs, m=1)[0]
    assert band_fail / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps)
    assert pointwise_fail / reps > 0.5
    shifted = list(rng.standard_normal((layers, 20)) + np.r_[np.zeros(layers - 1), 3.0][:, None])
    assert not checks.theory_band(shifted)[0]  # one layer 3 sd off with 20 seeds: found


# ---------------------------------------------------------------- theory checks: Figs 4, 8, 10 (left), 11

BARE = {"d_model": 8, "n_heads": 1, "d_ff": 8, "n_layers": 4, "n_tokens": 6, "norm": "none", "activation": "linear",
        "out_proj": False, "dtype": "float64", "input_seed": 0, "input_std": 1.0}


@pytest.fixture(scope="module")
def fig08_raw() -> pd.DataFrame:
    points = [{"attention": "uniform", "alpha": a} for a in ("1", "1/sqrt(L)")]
    return pd.concat([run_point("signal_propagation", BARE, p, None, list(range(200))) for p in points],
                     ignore_index=True)


def _wrong_theory(monkeypatch, factor: float = 1.3) -> None:
    """A theory whose depth dependence is off: (1 + a^2) replaced by (1 + factor a^2)."""
    right_sq, right_ip = theory.sq_norm, theory.inner_products
    k = factor**0.5
    monkeypatch.setattr(theory, "sq_norm", lambda n, x, c, depth, a1, a2: right_sq(n, x, c, depth, k * a1, a2))
    monkeypatch.setattr(theory, "inner_products", lambda c, depth, a1, a2: right_ip(c, depth, k * a1, a2))
    right_rho = theory.correlation
    monkeypatch.setattr(theory, "correlation", lambda n, x, c, depth, a1: right_rho(n, x, c, depth, k * a1))


def test_fig08_passes_with_the_theory_and_fails_with_a_wrong_one(fig08_raw, monkeypatch):
    rows = checks.fig08(aggregate.fig08(fig08_raw))
    assert len(rows) == 4 and _all_pass(rows), rows
    _wrong_theory(monkeypatch, 2.0)
    wrong = checks.fig08(aggregate.fig08(fig08_raw))
    assert not any(c.passed for c in wrong if "alpha=1 " in c.name), wrong


def test_fig10_uniform_panel_passes_and_fails_with_a_wrong_theory(monkeypatch):
    fixed = {**BARE, "n_tokens": 5}
    raw = pd.concat([run_point("signal_propagation", fixed, {"attention": "uniform", "input_std": "1/sqrt(d)",
                                                              "alpha": a}, None, list(range(200)))
                     for a in ("1", "0.5")], ignore_index=True)
    rows = checks.fig10(aggregate.fig10(raw))
    assert len(rows) == 2 and _all_pass(rows), rows
    _wrong_theory(monkeypatch, 1.5)
    assert not any(c.passed for c in checks.fig10(aggregate.fig10(raw)))


def _fig10_softmax_table(factor: float, alpha: str, std: object, n_seeds: int = 400) -> pd.DataFrame:
    """Synthetic Fig 10 rows: |X^l|^2 samples with mean ``factor`` x the theory at every depth."""
    rng = np.random.default_rng(3)
    rows = []
    for layer in range(1, 6):
        th = 10.0 * 1.2**layer
        x = factor * th * rng.lognormal(-0.02, 0.2, n_seeds)
        rows.append(pd.DataFrame({"seed": range(n_seeds), "layer": layer, "sq_norm": x, "emp_mean": x.mean(),
                                  "theory_mean": th, "attention": "softmax", "input_std": std, "alpha": alpha,
                                  "n_layers": 5}))
    return pd.concat(rows, ignore_index=True)


def test_fig10_softmax_panels_equivalence_and_deviation():
    ok = checks.fig10(_fig10_softmax_table(1.0, "0.5", "1/sqrt(d)"))[0]
    assert ok.passed and "within 10%" in ok.expected
    assert not checks.fig10(_fig10_softmax_table(1.3, "0.5", "1/sqrt(d)"))[0].passed  # 30% off: not equivalent
    # alpha = 1 and input std 1: the claim is a deviation
    assert checks.fig10(_fig10_softmax_table(2.0, "1", "1/sqrt(d)"))[0].passed
    assert not checks.fig10(_fig10_softmax_table(1.0, "1", "1/sqrt(d)"))[0].passed
    assert checks.fig10(_fig10_softmax_table(2.0, "1/sqrt(L)", 1.0))[0].passed
    assert not checks.fig10(_fig10_softmax_table(1.0, "1/sqrt(L)", 1.0))[0].passed


def test_fig04_theory_setting_passes_and_fails_with_a_wrong_theory(monkeypatch):
    fixed = {"d_model": 16, "n_heads": 2, "d_ff": 16, "n_layers": 4, "n_tokens": 8, "vocab": 50, "qk_fan": "d_model",
             "norm": "none", "activation": "linear", "attention": "uniform", "dtype": "float64"}
    raw = pd.concat([run_point("encoder_init", fixed, {"alpha": a}, None, list(range(40))) for a in ("1", "1/sqrt(L)")],
                    ignore_index=True)
    rows = checks.fig04(aggregate.fig04(raw))
    assert len(rows) == 2 and _all_pass(rows), rows
    _wrong_theory(monkeypatch, 2.0)
    assert not all(c.passed for c in checks.fig04(aggregate.fig04(raw)))


def test_fig11_uniform_passes_and_fails_with_a_wrong_formula(monkeypatch):
    fixed = {"n_tokens": 8, "d_model": 8, "s": 1.0, "rho": 0.3, "dtype": "float64"}
    raw = run_point("attention_jacobians", fixed, {"attention": "uniform"}, [{"s": [0.5, 1.0]}, {"rho": [0.0, 0.3]}],
                    list(range(60)))
    table = aggregate.fig11(raw)
    assert (table.n_seeds == 60).all()  # the shared centre point is counted once per seed
    rows = checks.fig11(table)
    assert _all_pass(rows), rows
    right = theory.grad_v_sq
    monkeypatch.setattr(theory, "grad_v_sq", lambda *a: 1.2 * right(*a))
    assert not _by_name(checks.fig11(aggregate.fig11(raw)), "grad_v_sq").passed


# ---------------------------------------------------------------- Fig 7


def _fig07_table(power: float) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    d_k = np.array([256, 512, 1024, 2048, 4096])
    rows = [{"n_tokens": 32, "d_v": 100, "d_k": int(k), "seed": s, "metric": "concentration",
             "value": float(k ** -power * rng.lognormal(0, 0.3))} for s in range(100) for k in d_k]
    return aggregate.fig07(pd.DataFrame(rows))


def test_fig07_slope_equivalence():
    assert checks.fig07(_fig07_table(2.0))[0].passed
    assert not checks.fig07(_fig07_table(1.0))[0].passed


# ---------------------------------------------------------------- Figs 3, 9, S4 (orderings and thresholds)

ALPHAS = {"1": 1.0, "0.5": 0.5, "0.25": 0.25, "1/sqrt(L)": 0.2}  # L = 25


def _encoder_raw(n_seeds: int = 8, v_last: float = 1.5, relabel: dict | None = None, norm: str = "post",
                 qk_fan: str = "d_model") -> pd.DataFrame:
    """Synthetic encoder_init rows: cosine rises and the Q/K ratio falls with alpha, as the paper says."""
    rng = np.random.default_rng(5)
    rows = []
    for alpha, a in ALPHAS.items():
        label = (relabel or {}).get(alpha, alpha)
        for seed in range(n_seeds):
            for layer in range(0, 26):
                cos = 1 - (1 - 0.3) * np.exp(-layer * a**2 * 0.8) + 0.005 * rng.standard_normal()
                if a < 0.3:
                    cos = 0.3 + 0.5 * a * layer / 25 + 0.005 * rng.standard_normal()
                rows.append((norm, qk_fan, label, seed, layer, "cosine", min(cos, 1.0)))
                if layer >= 1:
                    q = np.exp(-6 * a * (layer - 1) / 5) * rng.lognormal(0, 0.1)
                    v = (1 + (v_last - 1) * (layer - 1) / 24 * a) * rng.lognormal(0, 0.02)
                    rows += [(norm, qk_fan, label, seed, layer, "grad_wq", q), (norm, qk_fan, label, seed, layer,
                                                                                "grad_wk", q),
                             (norm, qk_fan, label, seed, layer, "grad_wv", v)]
    return pd.DataFrame(rows, columns=["norm", "qk_fan", "alpha", "seed", "layer", "metric", "value"])


def test_encoder_checks_pass_on_the_papers_picture():
    rows = checks.CHECKS["fig03"](aggregate.fig03(_encoder_raw()))
    assert len(rows) == 8 and _all_pass(rows), [c for c in rows if not c.passed]


def test_encoder_checks_fail_on_a_shuffled_alpha_order():
    rows = checks.CHECKS["fig03"](aggregate.fig03(_encoder_raw(relabel={"1": "0.25", "0.25": "1"})))
    assert not _by_name(rows, "cosine rises").passed
    assert not _by_name(rows, "grad_ratio_q falls").passed
    assert not _by_name(rows, "cosine significantly reversed").passed


def test_encoder_value_ratio_check_fails_when_value_gradients_do_not_grow():
    rows = checks.CHECKS["fig03"](aggregate.fig03(_encoder_raw(v_last=0.7)))
    assert not _by_name(rows, "V gradient ratio").passed
    assert _by_name(rows, "cosine at layer 12").passed


def test_encoder_checks_with_few_seeds_do_not_pass_on_noise():
    """2 seeds: a t-test with 1 degree of freedom; a weak ordering in pure noise must not pass."""
    raw = _encoder_raw(n_seeds=2)
    raw["value"] = np.random.default_rng(6).permutation(raw.value.to_numpy())  # no structure left
    rows = checks.CHECKS["fig03"](aggregate.fig03(raw))
    assert not _by_name(rows, "cosine rises").passed


def test_figures_use_the_d_model_convention_and_figS4_compares_both():
    raw = pd.concat([_encoder_raw(v_last=1.6), _encoder_raw(v_last=1.0, qk_fan="d_k")], ignore_index=True)
    assert set(aggregate.fig03(raw).seed_values.map(len)) == {8}
    one = aggregate.fig03(raw)
    assert np.allclose(one.sort_values(["metric", "alpha", "layer"])["mean"],
                       aggregate.fig03(_encoder_raw(v_last=1.6)).sort_values(["metric", "alpha", "layer"])["mean"])
    s4 = aggregate.figS4(raw)
    assert set(s4.qk_fan) == {"d_model", "d_k"}
    assert checks.figS4(s4)[0].passed
    swapped = raw.assign(qk_fan=raw.qk_fan.map({"d_model": "d_k", "d_k": "d_model"}))
    assert not checks.figS4(aggregate.figS4(swapped))[0].passed
    with pytest.raises(ValueError, match="qk_fan"):
        aggregate.figS4(_encoder_raw())


# ---------------------------------------------------------------- Fig 5


def _toy_raw(collapse_seed: int | None = None, ratio: float = 3.0, updates: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for seed in range(3):
        for step in range(100, updates + 1, 100):
            acc = min(1.0, 0.1 + step / 400)
            if seed == collapse_seed and step >= 700:
                acc = 0.1
            rows.append((seed, step, pd.NA, None, "val_accuracy", acc))
            rows.append((seed, step, pd.NA, None, "diverged", 0.0))
        for step in range(20, updates + 1, 20):
            for layer in (1, 2):
                v = 1e-3 * rng.lognormal(0, 0.1)
                for m, f in (("wq", ratio), ("wk", ratio), ("wv", 1.0)):
                    rows.append((seed, step, layer, m, "eff_lr_median", v * f * rng.lognormal(0, 0.05)))
    raw = pd.DataFrame(rows, columns=["seed", "step", "layer", "matrix", "metric", "value"])
    raw["layer"] = raw.layer.astype("Int64")
    return raw


def test_fig05_checks():
    good = checks.fig05(aggregate.fig05(_toy_raw()))
    assert _all_pass(good), [c for c in good if not c.passed]
    collapsed = checks.fig05(aggregate.fig05(_toy_raw(collapse_seed=1)))
    assert not _by_name(collapsed, "collapse").passed
    assert not _by_name(collapsed, "final validation").passed
    small = checks.fig05(aggregate.fig05(_toy_raw(ratio=0.5)))
    assert not _by_name(small, "Q/V", "geometric").passed and not _by_name(small, "K/V", "geometric").passed
    short = checks.fig05(aggregate.fig05(_toy_raw(updates=500)))
    assert not _by_name(short, "final validation").applicable  # shorter than FIG05_UPDATES: reported only


def test_fig05_diverged_seed_fails_the_divergence_check():
    raw = _toy_raw()
    last = (raw.metric == "diverged") & (raw.seed == 1) & (raw["step"] == raw["step"].max())
    raw.loc[last, "value"] = 1.0
    assert _by_name(checks.fig05(aggregate.fig05(_toy_raw())), "diverged").passed
    div = _by_name(checks.fig05(aggregate.fig05(raw)), "diverged")
    assert not div.passed and div.measured == pytest.approx(1 / 3)


# ---------------------------------------------------------------- Fig 9 (PRE-LN: the orderings, no POST-LN thresholds)


def test_fig09_checks_pass_on_the_papers_picture_and_fail_on_a_swapped_alpha():
    rows = checks._encoder_checks(aggregate.fig09(_encoder_raw(norm="pre")), "fig09", "pre")
    assert len(rows) == 5 and _all_pass(rows), [c for c in rows if not c.passed]
    assert not any("POST-LN" in c.name for c in rows)
    assert _by_name(rows, "1/sqrt(L): cosine at the last layer (25)").measured < 0.9
    swapped = checks._encoder_checks(
        aggregate.fig09(_encoder_raw(norm="pre", relabel={"1": "1/sqrt(L)", "1/sqrt(L)": "1"})), "fig09", "pre")
    assert not _by_name(swapped, "cosine rises").passed
    assert not _by_name(swapped, "grad_ratio_q falls").passed
    assert not _by_name(swapped, "1/sqrt(L): cosine at the last layer").passed  # the alpha = 1 curve: near 1


# ---------------------------------------------------------------- Fig 7 with too few points, Table 1 against the paper


def test_fig07_fails_without_two_points_at_large_d_k():
    t = _fig07_table(2.0)
    row = checks.fig07(t[t.d_k < 2048])[0]
    assert not row.passed and np.isnan(row.measured)


def _table1_eval(shift: float, dataset: str = "iwslt14") -> pd.DataFrame:
    """Three runs per method at the paper's BLEU (+-0.2), SGD res-scale moved by ``shift``."""
    from sigprop.analysis.paper_values import PAPER_TABLE1

    rows = []
    for method in ("sgd_postln", "sgd_resscale", "sgd_temperature"):
        for seed, noise in enumerate((-0.2, 0.0, 0.2)):
            bleu = PAPER_TABLE1[method] + noise + (shift if method == "sgd_resscale" else 0.0)
            rows.append({"dataset": dataset, "method": method, "method_label": method, "layers": 6, "seed": seed,
                         "diverged": False, "bleu": bleu, "sacrebleu_detok": bleu, "best_valid_loss": 4.0,
                         "test_sentences": 6750, "beam": 5, "updates": 50000})
    return pd.DataFrame(rows)


def test_table1_bleu_within_one_of_the_paper():
    right = [c for c in checks.table1(aggregate.table1(_table1_eval(0.0))) if "vs paper" in c.name]
    assert len(right) == 3 and all(c.passed and c.applicable for c in right)
    off = [c for c in checks.table1(aggregate.table1(_table1_eval(1.2))) if "vs paper" in c.name]
    assert [c.passed for c in off] == [True, False, True]  # res-scale 1.2 BLEU above the paper
    assert off[1].measured == pytest.approx(32.79 + 1.2)
    mini = [c for c in checks.table1(aggregate.table1(_table1_eval(1.2, "iwslt14-mini"))) if "vs paper" in c.name]
    assert not any(c.applicable for c in mini) and "not applicable" in mini[1].name
