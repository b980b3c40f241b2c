"""The statistical tests behind the checks: seed-level values in, p-values and intervals out.

Used by :mod:`sigprop.analysis.checks` and :mod:`sigprop.analysis.claims`; the tables they read come from
:mod:`sigprop.analysis.aggregate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Why these tests (docs/checks.md): every check is a test at level SIGNIFICANCE_LEVEL over seeds, with the seeds
# as the independent replicates. Student's t (scipy.stats.ttest_1samp / ttest_rel) is used for means because it is
# exact for normal seed-level values and accounts for few seeds through its degrees of freedom (a percentile
# bootstrap of 4-10 seeds under-covers, and a sign-flip test of 4 seeds cannot reach p < 0.05 at all).
# Ratios of means (the correlation rho^l) enter as delta-method pseudo-values, whose mean is the ratio and whose
# variance is the linearised variance. A family of comparisons (theory at every layer) is tested with a
# Bonferroni-corrected band (level 1 - SIGNIFICANCE_LEVEL/m for each of m points), so a figure fails by chance at
# most SIGNIFICANCE_LEVEL of the time, whatever the correlation between layers. A claim that must hold at every
# point is an intersection-union test: each point at level SIGNIFICANCE_LEVEL, no correction (Berger 1982).

#: the significance level of every check (named apart from the residual scale alpha of the model)
SIGNIFICANCE_LEVEL = 0.05


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def t_interval(x: np.ndarray, level: float) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean of ``x`` at ``level`` (a point if ``x`` is constant)."""
    x = _clean(x)
    if len(x) < 2:
        return np.nan, np.nan
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high)


def t_pvalue(x: np.ndarray, popmean: float, alternative: str) -> float:
    """One-sample t-test p-value of H1: mean(x) ``alternative`` ('greater', 'less') ``popmean``.

    Constant ``x`` gives p = 0 where it lies strictly on the side of H1 and 1 otherwise (no variance to test).
    """
    x = _clean(x)
    if len(x) < 2:
        return np.nan
    if np.ptp(x) == 0:
        side = x[0] > popmean if alternative == "greater" else x[0] < popmean
        return 0.0 if side else 1.0
    return float(stats.ttest_1samp(x, popmean, alternative=alternative).pvalue)


def paired_pvalue(x: np.ndarray, y: np.ndarray, alternative: str = "greater") -> float:
    """Paired t-test p-value of H1: mean(x - y) ``alternative`` 0 (seeds matched by position)."""
    return t_pvalue(np.asarray(x, float) - np.asarray(y, float), 0.0, alternative)


def tost_relative(x: np.ndarray, target: float, margin: float) -> float:
    """Equivalence test (two one-sided t-tests): p-value of H1: (1-margin) target < mean(x) < (1+margin) target."""
    lo, hi = sorted((target * (1 - margin), target * (1 + margin)))
    return max(t_pvalue(x, lo, "greater"), t_pvalue(x, hi, "less"))


def bonferroni_level(m: int, significance: float = SIGNIFICANCE_LEVEL) -> float:
    """Confidence level of each of ``m`` intervals whose union covers with probability >= 1 - significance."""
    return 1.0 - significance / max(int(m), 1)


def ratio_pseudo_values(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Delta-method pseudo-values of mean(num) / mean(den): mean = the ratio, variance = the linearised one."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    r = num.mean() / den.mean()
    return r + (num - r * den) / den.mean()


def bootstrap_ci(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], level: float,
                 seed: int = 0) -> tuple[float, float]:
    """BCa bootstrap interval (scipy.stats.bootstrap) of a statistic of paired samples (seeds resampled jointly)."""
    res = stats.bootstrap(tuple(np.asarray(s, float) for s in samples), statistic, paired=True, vectorized=True,
                          confidence_level=level, n_resamples=4000, method="BCa", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# ---- equivalence with three outcomes: shown, refuted, or undecided at this number of seeds ----


@dataclass(frozen=True)
class Equivalence:
    """Outcome of :func:`equivalence`: ``status`` is ``passed`` (the mean is shown inside [lo, hi]),
    ``failed`` (shown outside) or ``undecided`` (neither, at this number of seeds)."""

    status: str
    p_inside: float  # TOST: the larger of the two one-sided p-values of H1 lo < mean < hi
    p_outside: float  # the smaller one-sided p-value of H1 mean < lo or mean > hi
    interval: tuple[float, float]  # the (1 - 2 significance) t-interval of the mean (the TOST's interval)
    n_seeds: int
    seeds_to_decide: float  # seeds at which the same mean and spread would pass (nan where the mean is outside)

    def describe(self, scale: float = 1.0, unit: str = "") -> str:
        """The interval and the decision in words (``scale``: multiply the interval by it, e.g. 1/target)."""
        if self.n_seeds < 2:
            return f"{self.n_seeds} seed(s): too few for a t-test, undecided at this size"
        lo, hi = (v * scale for v in self.interval)
        level = round(100 * (1 - 2 * SIGNIFICANCE_LEVEL))
        text = f"{level}% t-interval [{lo:.4g}, {hi:.4g}]{unit} over {self.n_seeds} seeds"
        if self.status == "passed":
            return f"{text}: inside the bounds (TOST p = {self.p_inside:.2g} < {SIGNIFICANCE_LEVEL})"
        if self.status == "failed":
            return f"{text}: outside the bounds (one-sided p = {self.p_outside:.2g} < {SIGNIFICANCE_LEVEL})"
        need = (f"about {self.seeds_to_decide:.0f} seeds would decide if the mean and spread stayed"
                if np.isfinite(self.seeds_to_decide) else "the mean lies outside the bounds, not significantly")
        return (f"{text} straddles a bound: undecided at this size (TOST p = {self.p_inside:.2g}, "
                f"outside p = {self.p_outside:.2g}, both >= {SIGNIFICANCE_LEVEL}); {need}")


def equivalence(x: np.ndarray, lo: float, hi: float, significance: float = SIGNIFICANCE_LEVEL) -> Equivalence:
    """Whether the mean of ``x`` lies in [lo, hi]: two one-sided t-tests for (TOST, Schuirmann 1987) and the
    two for the mean outside, each at ``significance``.

    passed: both TOST p-values < significance (the (1 - 2 significance) interval lies inside [lo, hi]);
    failed: the mean is shown below lo or above hi (the interval lies wholly outside); otherwise undecided.
    ``seeds_to_decide``: the smallest n with t_{1-significance, n-1} s / sqrt(n) < the distance from the mean to
    the nearer bound (the seeds an equivalence test would need if the mean and standard deviation s stayed).
    """
    x = _clean(x)
    lo, hi = sorted((float(lo), float(hi)))
    p_in = max(t_pvalue(x, lo, "greater"), t_pvalue(x, hi, "less"))
    p_out = min(t_pvalue(x, lo, "less"), t_pvalue(x, hi, "greater"))
    interval = t_interval(x, 1 - 2 * significance)
    need = np.nan
    if len(x) >= 2:
        gap, sd = min(x.mean() - lo, hi - x.mean()), float(x.std(ddof=1))
        if gap > 0:
            need = 2.0 if sd == 0 else float(max(2, np.ceil((stats.norm.ppf(1 - significance) * sd / gap) ** 2)))
            while stats.t.ppf(1 - significance, need - 1) * sd / np.sqrt(need) >= gap:
                need += 1
    status = ("undecided" if not (np.isfinite(p_in) and np.isfinite(p_out)) else "passed" if p_in < significance
              else "failed" if p_out < significance else "undecided")
    return Equivalence(status, float(p_in), float(p_out), interval, len(x), need)


def one_sided(x: np.ndarray, bound: float, alternative: str, significance: float = SIGNIFICANCE_LEVEL
              ) -> tuple[str, float, float]:
    """A one-sided claim about the mean of ``x`` (``alternative``: 'greater' or 'less' than ``bound``) with three
    outcomes: ``passed`` (shown at ``significance``), ``failed`` (the opposite shown at ``significance``) or
    ``undecided`` (neither). Returns (status, p for the claim, p against it)."""
    against = {"greater": "less", "less": "greater"}[alternative]
    p_for, p_against = t_pvalue(x, bound, alternative), t_pvalue(x, bound, against)
    status = ("passed" if p_for < significance else "failed" if p_against < significance else "undecided")
    return status, float(p_for), float(p_against)
