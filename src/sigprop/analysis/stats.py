"""The statistical tests behind the checks: seed-level values in, p-values and intervals out.

Used by :mod:`sigprop.analysis.checks` and :mod:`sigprop.analysis.claims`; the tables they read come from
:mod:`sigprop.analysis.aggregate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

# Why these tests (README "Checks"): every check is a test at level SIGNIFICANCE_LEVEL over seeds, with the seeds
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
