"""Building blocks of the reproduction report (workflow/notebooks/report.ipynb): tables, not prose."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from sigprop.analysis.checkrow import FAILED, NOT_APPLICABLE, PASSED, UNDECIDED, status_counts
from sigprop.analysis.registry import FIGURES, FigureSpec
from sigprop.config import layer_files
from sigprop.depth_rules import plain_label
from sigprop.io import read_meta


def figure_sections(
    figures_dir: str | Path, checks_csv: str | Path, supplementary: bool | None = None
) -> list[tuple[str, FigureSpec, Path, pd.DataFrame]]:
    """For every figure whose PNG exists: its key, spec, PNG path and the checks that concern it.

    ``supplementary``: only the paper's figures (False), only the supplementary ``figS*`` ones (True), or all.
    """
    checks = pd.read_csv(checks_csv) if Path(checks_csv).exists() else pd.DataFrame(columns=["figure"])
    out = []
    for key, spec in FIGURES.items():
        if supplementary is not None and key.startswith("figS") != supplementary:
            continue
        png = Path(figures_dir) / f"{spec.stem}.png"
        if png.exists():
            out.append((key, spec, png, checks[checks.figure == key].drop(columns="figure")))
    return out


def checks_overview(checks: pd.DataFrame) -> str:
    """One Markdown line: how many checks passed, failed, were undecided at this size and not applicable
    (:func:`sigprop.analysis.checkrow.statuses`; an undecided check is neither a pass nor a failure)."""
    counts = status_counts(checks)
    return (f"**{counts[PASSED]} of {len(checks)} checks pass, {counts[FAILED]} fail, {counts[UNDECIDED]} are "
            f"undecided at this size** (the config's seeds cannot decide them: each row says what would), "
            f"{counts[NOT_APPLICABLE]} are reported only (not applicable).")


def config_summary(config_file: str | Path) -> dict[str, str]:
    """The config file's path, sha256 and text; a scale file's base files (``base:``) are named in the path
    ("quick.yaml over base.yaml") and their text comes first, each file under a header line."""
    files = layer_files(config_file)
    if len(files) == 1:
        text = files[0].read_text()
    else:
        text = "".join(f"# ---- {f}\n{f.read_text()}" for f in files)
    path = " over ".join(str(f) for f in reversed(files))
    return {"path": path, "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}


def provenance_table(results_dir: str | Path) -> pd.DataFrame:
    """One row per distinct provenance (git commit, dirty flag, device, package versions) over the raw tables."""
    rows = []
    for path in sorted(Path(results_dir, "raw").rglob("*.parquet")):
        meta = read_meta(path)
        if not meta:
            continue
        packages = meta.get("packages", {})
        rows.append(
            {
                "git_commit": str(meta.get("git_commit", ""))[:12],
                "git_dirty": meta.get("git_dirty"),
                "device": meta.get("device"),
                "python": meta.get("python"),
                **{f"{k} version": v for k, v in packages.items()},
                "config": meta.get("config"),
            }
        )
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    return df.groupby(list(df.columns), dropna=False).size().rename("raw tables").reset_index()


def benchmarks_table(results_dir: str | Path) -> pd.DataFrame:
    """Wall time and peak memory of every job, from Snakemake's ``benchmark:`` files, summed per rule."""
    rows = []
    for path in sorted(Path(results_dir, "benchmarks").rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        rule = path.relative_to(Path(results_dir, "benchmarks")).parts[0]
        rows.append({"rule": rule, "job": str(path), "wall_s": bench.s.iloc[0], "max_rss_mb": bench.max_rss.iloc[0]})
    if not rows:
        return pd.DataFrame(columns=["rule", "jobs", "wall_s_total", "wall_s_max", "max_rss_mb"])
    df = pd.DataFrame(rows)
    return (
        df.groupby("rule")
        .agg(
            jobs=("job", "size"),
            wall_s_total=("wall_s", "sum"),
            wall_s_max=("wall_s", "max"),
            max_rss_mb=("max_rss_mb", "max"),
        )
        .round(2)
        .reset_index()
    )


def doc_body(page: str | Path) -> str:
    """The Markdown of a docs page without its ``# title`` line (docs/assumptions.md, the single source)."""
    return re.sub(r"\A# [^\n]*\n+", "", Path(page).read_text()).strip()


def methods_init_table(aggregated: str | Path) -> pd.DataFrame:
    """Fig S1 in numbers: the last layer's token cosine at init (mean over seeds) per model, stack and depth."""
    t = pd.read_parquet(aggregated)
    last = t[(t.metric == "cosine") & (t.layer == t.layers)].copy()
    last["model"] = last.method_label + last.tau_at.map({"final": "", "init": " (tau at update 0)"}).fillna("")
    wide = last.pivot_table(index=["side", "model"], columns="layers", values="mean")
    wide.columns = [f"{c} blocks" for c in wide.columns]
    return wide.round(3).reset_index()


def residual_rules_table(aggregated: str | Path) -> pd.DataFrame:
    """Fig S5 in numbers: per build, its regime (sum alpha^2 over depth O(1): bounded; else grows) and the last
    layer's token cosine at init (mean over seeds) per depth."""
    t = pd.read_parquet(aggregated)
    last = t[t.metric == "cosine_last"].copy()
    last["build"] = [plain_label(label) for label in last.label]
    wide = last.pivot_table(index=["regime", "build"], columns="depth", values="mean")
    wide.columns = [f"L = {c}" for c in wide.columns]
    return wide.round(3).reset_index()
