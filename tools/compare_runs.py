"""Compare the tables of two workflow runs: is every raw and aggregated table the same, value for value?

    python tools/compare_runs.py RUN_A RUN_B

RUN_A and RUN_B are directories the workflow ran in (each holds results/). Every ``.parquet`` under
results/raw and results/aggregated and every ``.csv`` under results/ is read and compared exactly (same columns,
same rows in the same order, equal values, NaN equal to NaN). Columns that record wall-clock time (``--ignore``,
by default the log metrics and columns named like seconds or timestamps) are left out and listed. Exits 1 on any
difference, naming the file and the columns that differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIME_COLUMNS = ("wall_s", "train_wall_s", "eval_wall_s", "elapsed_s", "seconds", "timestamp", "date")
TIME_METRICS = ("wall_s", "elapsed_s", "updates_per_s", "tokens_per_s", "s_per_update")


def tables(run: Path) -> dict[str, Path]:
    """The run's tables by path under results/ (raw and aggregated parquet, every csv but benchmarks)."""
    res = run / "results"
    found = {}
    for sub in ("raw", "aggregated"):
        for p in sorted((res / sub).rglob("*.parquet")):
            found[str(p.relative_to(res))] = p
    for p in sorted(res.rglob("*.csv")):
        if "benchmarks" not in p.parts:
            found[str(p.relative_to(res))] = p
    return found


def read(path: Path) -> pd.DataFrame:
    """One table, without the wall-clock metrics of the tidy training logs."""
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "metric" in df.columns:  # tidy logs: drop the wall-clock metrics
        df = df[~df.metric.astype(str).isin(TIME_METRICS)].reset_index(drop=True)
    return df


def differing_columns(a: pd.DataFrame, b: pd.DataFrame, ignore: set[str]) -> list[str]:
    """The columns whose values differ (or why the tables cannot be compared column by column)."""
    if list(a.columns) != list(b.columns):
        return [f"columns {sorted(set(a.columns) ^ set(b.columns))} (or their order)"]
    if len(a) != len(b):
        return [f"rows {len(a)} vs {len(b)}"]
    out = []
    for c in a.columns:
        if c in ignore:
            continue
        x, y = a[c].to_numpy(), b[c].to_numpy()
        try:
            same = bool(np.array_equal(x, y, equal_nan=True))
        except TypeError:  # objects (lists, strings): compare as Python values
            same = all(str(u) == str(v) for u, v in zip(x, y, strict=True))
        if not same:
            out.append(c)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--ignore", nargs="*", default=list(TIME_COLUMNS), help="columns left out (wall-clock)")
    args = ap.parse_args(argv)
    ta, tb = tables(args.run_a), tables(args.run_b)
    if not ta:
        ap.error(f"{args.run_a} has no results/ tables")
    bad = [f"only in {args.run_a}: {k}" for k in sorted(set(ta) - set(tb))]
    bad += [f"only in {args.run_b}: {k}" for k in sorted(set(tb) - set(ta))]
    ignored = set()
    for key in sorted(set(ta) & set(tb)):
        a, b = read(ta[key]), read(tb[key])
        ignored |= set(args.ignore) & set(a.columns)
        diff = differing_columns(a, b, set(args.ignore))
        if diff:
            bad.append(f"{key}: differs in {', '.join(diff)}")
    print(f"compared {len(set(ta) & set(tb))} tables; wall-clock columns left out: {sorted(ignored) or 'none'}")
    for line in bad:
        print(line)
    print("identical" if not bad else f"{len(bad)} difference(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
