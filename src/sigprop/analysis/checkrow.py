"""One row of ``results/checks.csv``, its status, and how a p-value is written in it (shared by
:mod:`sigprop.analysis.checks` and :mod:`sigprop.analysis.claims`).

Every row has one of four statuses (column ``status``):

* ``passed``: the test decided for the claim (or found no evidence against the theory);
* ``failed``: the test decided against it: at this size the claim does not hold;
* ``undecided``: the seeds of the config cannot decide either way (e.g. an equivalence test whose interval
  straddles the margin): neither a failure nor a pass, reported with what it would take to decide;
* ``not applicable``: reported only (e.g. Table 1 on the iwslt14-mini stand-in).

The ``pass`` column (True only for ``passed``; for rows not applicable, the finding's own outcome) and the
``applicable`` column are kept for readers of older tables; :func:`statuses` reads either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PASSED, FAILED, UNDECIDED, NOT_APPLICABLE = "passed", "failed", "undecided", "not applicable"
#: every status, in the order the summaries list them
STATUSES = (PASSED, FAILED, UNDECIDED, NOT_APPLICABLE)


@dataclass
class Check:
    """One row of results/checks.csv.

    ``passed``: the test's outcome; ``undecided``: the test could not decide at this size (then ``passed`` is
    False); ``applicable``: False for rows reported only. ``status`` is derived from the three.
    """

    name: str
    figure: str
    expected: str
    measured: float
    tolerance: str
    passed: bool
    applicable: bool = True  # False: reported only (e.g. Table 1 on the iwslt14-mini stand-in)
    undecided: bool = False  # True: the config's seeds cannot decide (neither passed nor failed)
    status: str = field(init=False)

    def __post_init__(self) -> None:
        if self.undecided:
            self.passed = False
        self.passed = bool(self.passed)
        self.status = (NOT_APPLICABLE if not self.applicable else UNDECIDED if self.undecided
                       else PASSED if self.passed else FAILED)


def statuses(df: pd.DataFrame) -> pd.Series:
    """The status of every row of a checks table: its ``status`` column, or (tables written before it existed)
    from ``pass`` and ``applicable``."""
    if "status" in df:
        bad = sorted(set(df["status"].dropna()) - set(STATUSES))
        if bad:
            raise ValueError(f"checks table: unknown status {bad[0]!r}; a status is one of {', '.join(STATUSES)}")
        return df["status"].astype(str)
    applicable = df["applicable"].astype(bool) if "applicable" in df else pd.Series(True, index=df.index)
    passed = df["pass"].astype(bool)
    return pd.Series(np.where(~applicable, NOT_APPLICABLE, np.where(passed, PASSED, FAILED)), index=df.index)


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    """How many rows have each status (every status named, 0 if none)."""
    counts = statuses(df).value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def format_p(p: float) -> str:
    """A p-value as the checks' text gives it: two significant digits, ``<1e-4`` below that, ``nan``."""
    return "nan" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")
