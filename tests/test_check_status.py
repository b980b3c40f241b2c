"""A check's four statuses (passed, failed, undecided at this size, not applicable) and the three-outcome tests
behind them (sigprop.analysis.stats.equivalence, one_sided): hand-computed cases, and Fig S2's checks passing
on a right table, failing on a wrong one and undecided with too few seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sigprop.analysis import checks
from sigprop.analysis.checkrow import Check, status_counts, statuses
from sigprop.analysis.stats import equivalence, one_sided

# ---------------------------------------------------------------- the tests, against hand computation


def test_equivalence_three_outcomes_hand_computed():
    x = np.array([0.98, 1.00, 1.02])  # mean 1, sd 0.02
    half = sps.t.ppf(0.95, 2) * 0.02 / np.sqrt(3)  # the 90% interval of the TOST
    eq = equivalence(x, 0.9, 1.1)
    assert eq.status == "passed" and eq.interval == pytest.approx((1 - half, 1 + half))
    assert eq.p_inside == pytest.approx(sps.t.sf(0.1 / (0.02 / np.sqrt(3)), 2))
    assert equivalence(x + 0.5, 0.9, 1.1).status == "failed"  # shown outside
    wide = np.array([0.8, 1.0, 1.2])  # mean inside, interval over both bounds
    eq = equivalence(wide, 0.9, 1.1)
    assert eq.status == "undecided" and "undecided at this size" in eq.describe()
    # the seeds to decide: the smallest n whose t half-width fits the gap to the nearer bound (0.1)
    n, sd = eq.seeds_to_decide, wide.std(ddof=1)
    assert sps.t.ppf(0.95, n - 1) * sd / np.sqrt(n) < 0.1 <= sps.t.ppf(0.95, n - 2) * sd / np.sqrt(n - 1)
    assert equivalence([1.0], 0.9, 1.1).status == "undecided"  # one seed: no test


def test_one_sided_three_outcomes():
    assert one_sided(np.array([1.0, 1.1, 1.2]), 0.5, "greater")[0] == "passed"
    assert one_sided(np.array([1.0, 1.1, 1.2]), 2.0, "greater")[0] == "failed"
    assert one_sided(np.array([0.0, 1.0, 2.0]), 1.1, "greater")[0] == "undecided"


def test_status_of_a_row_and_the_summary_counts():
    rows = [Check("a", "x", "e", 1.0, "t", True), Check("b", "x", "e", 1.0, "t", False),
            Check("c", "x", "e", 1.0, "t", True, undecided=True), Check("d", "x", "e", 1.0, "t", True, False)]
    assert [r.status for r in rows] == ["passed", "failed", "undecided", "not applicable"]
    assert not rows[2].passed  # undecided is not a pass
    df = pd.DataFrame([vars(r) for r in rows]).drop(columns="undecided").rename(columns={"passed": "pass"})
    assert status_counts(df) == {"passed": 1, "failed": 1, "undecided": 1, "not applicable": 1}
    line = checks.summary(df)
    assert line.startswith("checks: 1 passed, 1 failed, 1 undecided at this size, 1 not applicable")
    assert "(failed: b)" in line and "(undecided: c)" in line
    old = df.drop(columns="status")  # a table written before the status column: from pass and applicable
    assert list(statuses(old)) == ["passed", "failed", "failed", "not applicable"]
    with pytest.raises(ValueError, match="unknown status 'maybe'"):
        statuses(df.assign(status="maybe"))


# ---------------------------------------------------------------- Fig S2's checks: pass, fail, undecided

LIMIT = {"correlation": 0.08, "sq_norm": 1500.0}
DEPTHS = (3, 24, 192)


def _figS2_table(seeds: int, noise: float, limit_factor: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Uniform, alpha^2 = 1/L and constant alpha: seed values scattered by ``noise`` (relative) around a theory
    that reaches the limit at the largest depth; ``limit_factor``: a wrong limit."""
    rng = np.random.default_rng(seed)
    rows = []
    for scaling, alpha in (("alpha^2 = 1/L", "1/sqrt(L)"), ("constant alpha", "1")):
        for metric, lim in LIMIT.items():
            for depth in DEPTHS:
                if scaling == "constant alpha":
                    th = (1 - 0.5 / depth) if metric == "correlation" else lim * 2.0**depth
                else:
                    th = lim * (1 - 0.5 / depth) if depth < max(DEPTHS) else lim
                vals = th * (1 + noise * rng.standard_normal(seeds))
                rows.append({"attention": "uniform", "alpha": alpha, "scaling": scaling, "metric": metric,
                             "depth": depth, "n_tokens": 16, "mean": vals.mean(), "theory": th,
                             "n_seeds": seeds, "seed_values": vals, "seed_dev": vals - th,
                             "limit": lim * limit_factor if scaling != "constant alpha" else np.inf})
    return pd.DataFrame(rows)


def _limit_rows(t: pd.DataFrame) -> list[Check]:
    return [c for c in checks.figS2(t) if "vs the L -> infinity limit" in c.name]


def test_figS2_limit_check_passes_fails_and_is_undecided_with_too_few_seeds():
    assert [c.status for c in _limit_rows(_figS2_table(200, 0.01))] == ["passed", "passed"]
    assert [c.status for c in _limit_rows(_figS2_table(200, 0.01, limit_factor=1.3))] == ["failed", "failed"]
    few = _limit_rows(_figS2_table(3, 0.2))  # the right limit, too few seeds to show "within 5%"
    assert [c.status for c in few] == ["undecided", "undecided"]
    assert all("undecided at this size" in c.tolerance and not c.passed for c in few)


def test_figS2_theory_check_is_undecided_where_the_band_is_wider_than_the_resolution():
    good = {c.name: c for c in checks.figS2(_figS2_table(200, 0.01)) if "closed form" in c.name and c.applicable}
    assert good and all(c.status == "passed" and c.measured <= 1 for c in good.values())
    noisy = [c for c in checks.figS2(_figS2_table(4, 0.3)) if "alpha^2 = 1/L sq_norm" in c.name
             and "closed form" in c.name]
    assert [c.status for c in noisy] == ["undecided"] and "would resolve it" in noisy[0].tolerance
    wrong = _figS2_table(200, 0.01)
    wrong["theory"] = wrong.theory * 1.2
    wrong["seed_dev"] = [v - th for v, th in zip(wrong.seed_values, wrong.theory)]
    bad = [c for c in checks.figS2(wrong) if "alpha^2 = 1/L sq_norm at the last layer" in c.name]
    assert [c.status for c in bad] == ["failed"] and bad[0].measured > 1


def test_checks_csv_has_status_and_the_backward_compatible_pass_column():
    df = checks.run_checks({"figS2": _figS2_table(3, 0.2)})
    assert {"status", "pass", "applicable"} <= set(df.columns) and "undecided" not in df.columns
    und = df[df.status == "undecided"]
    assert len(und) and not und["pass"].any()
    assert (df["pass"] == (df.status == "passed"))[df.applicable].all()


def _fig10_table(factor: float, n_seeds: int, spread: float = 0.2) -> pd.DataFrame:
    """Fig 10's softmax panel at input std 1/sqrt(d), alpha 0.5: |X^l|^2 with mean ``factor`` x the theory."""
    rng = np.random.default_rng(5)
    rows = []
    for layer in range(1, 6):
        th = 10.0 * 1.2**layer
        x = factor * th * np.exp(spread * rng.standard_normal(n_seeds) - spread**2 / 2)
        rows.append(pd.DataFrame({"seed": range(n_seeds), "layer": layer, "sq_norm": x, "theory_mean": th,
                                  "attention": "softmax", "input_std": "1/sqrt(d)", "alpha": "0.5", "n_layers": 5}))
    return pd.concat(rows, ignore_index=True)


def test_fig10_equivalence_passes_fails_and_is_undecided_with_too_few_seeds():
    assert checks.fig10(_fig10_table(1.0, 400))[0].status == "passed"
    assert checks.fig10(_fig10_table(1.5, 400))[0].status == "failed"  # 50% off at every depth
    assert checks.fig10(_fig10_table(1.0, 4))[0].status == "undecided"  # right, but 4 seeds cannot show 10%
