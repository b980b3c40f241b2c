"""Write a finished translation run's outcome into a results page of docs/ (Table 1, claims, figures, times).

    python tools/record_results.py --run DIR --page docs/results-cpu.md [--times bench/results/pipeline_times.jsonl]
        [--snakemake-log LOG --load TEXT]

DIR is the directory the workflow ran in (it holds results/ and figures/). The page keeps its hand-written
text; only the part between the two markers below is rewritten, and the figures are copied next to the page
(docs/results-cpu/ for docs/results-cpu.md). Nothing here computes a number: every value is read from the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd

from sigprop.analysis.checkrow import statuses
from sigprop.io import atomic_path, read_table
from sigprop.plotting.tables import table1_display

BEGIN = "<!-- begin: written by tools/record_results.py from the run; do not edit by hand -->"
END = "<!-- end: written by tools/record_results.py -->"
FIGURE_PREFIXES = ("fig01", "fig06", "fig14", "figS8")  # the translation figures
CLAIM_FIGURES = ("table1", "fig01", "fig06", "fig14", "figS8")
#: a Snakemake log's timestamp lines: [Fri Dec  4 04:03:28 2026]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (strings as they are)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = ("" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def job_times(run: Path) -> pd.DataFrame:
    """Seconds per translation job, from Snakemake's benchmark files, by kind (train / evaluate; the lr
    selection's grid points and its select jobs, which train an edge point when the rule adds one)."""
    rows = []
    bench = run / "results" / "benchmarks"
    for sub in ("translation", "translation_select"):
        for tsv in sorted((bench / sub).rglob("*.tsv")):
            with tsv.open() as fh:
                rec = next(csv.DictReader(fh, delimiter="\t"))
            if sub == "translation":
                kind = "evaluate" if tsv.name.endswith(".eval.tsv") else "train"
            else:
                kind = "select (edge point)" if tsv.name == "select.tsv" else "lr grid point"
            rows.append({"job": str(tsv.relative_to(bench)), "kind": kind, "s": float(rec["s"])})
    return pd.DataFrame(rows, columns=["job", "kind", "s"])


def snakemake_wall(log: Path) -> tuple[str, str, float, bool]:
    """First and last timestamps of a Snakemake log, the seconds between them and whether it finished cleanly."""
    stamps = [m.group(1) for ln in log.read_text().splitlines() if (m := STAMP.match(ln.strip()))]
    if not stamps:
        raise SystemExit(f"{log}: no Snakemake timestamps found (is it a Snakemake log?)")
    t0, t1 = (datetime.strptime(x, "%a %b %d %H:%M:%S %Y") for x in (stamps[0], stamps[-1]))
    done = "steps (100%) done" in log.read_text()
    return stamps[0], stamps[-1], (t1 - t0).total_seconds(), done


def selection_section(run: Path) -> list[str]:
    """The lr selection (Fig S8's table): every grid point's validation loss, the winner and the rule's reason."""
    path = run / "results" / "aggregated" / "figS8.parquet"
    if not path.exists():
        return []
    t = read_table(path)
    show = pd.DataFrame({
        "method": t.method_label, "optimizer": t.optimizer,
        "update": [f"{int(u)} of {int(n)}" for u, n in zip(t.select_update, t.updates, strict=True)],
        "lr": [f"{x:g}" for x in t.lr], "valid. loss": t.valid_loss.astype(float),
        "": ["selected" if w else ("edge point" if e else "") for w, e in zip(t.winner, t.extension, strict=True)]})
    rule = {k.removeprefix("rule_"): t[k].iloc[0] for k in t if k.startswith("rule_")}
    out = ["### The lr selection (Fig S8; results/aggregated/figS8.parquet)", "",
           "Rule: " + ", ".join(f"{k} {v}" for k, v in rule.items()) + " (seed 0, Table 1's depth, validation "
           "loss only).", "", markdown(show), ""]
    for method, g in t.groupby("method_label", sort=False):
        out.append(f"- {method}: {g.reason.iloc[0]}.")
    return out + [""]


def generated(run: Path, images: Path, page_dir: Path, times: dict | None,
              wall: tuple[str, str, float, bool] | None = None, load: str | None = None) -> str:
    """The generated part of the page: run time, Table 1, the claims, the figures (copied into ``images``)."""
    out = []
    if times:
        out += ["### Run time", "",
                f"`{times['command']}` from scratch on {times['cpus']} CPUs ({times['date']}): "
                f"**{times['full_run_s'] / 60:.1f} min** wall; no-op rerun {times['noop_s']} s.", ""]
    if wall:
        start, end, seconds, done = wall
        out += ["### Run time", "",
                f"Snakemake log: {start} to {end}, **{seconds / 60:.1f} min** wall"
                f"{'' if done else ' (the log does not say the run finished)'}"
                f"{f'; load: {load}' if load else ''}.", ""]
    jobs = job_times(run)
    if len(jobs):
        by = jobs.groupby("kind").s.agg(["count", "sum", "mean", "max"]).reset_index()
        by.columns = ["jobs", "count", "sum (s)", "mean (s)", "max (s)"]
        out += ["Per-job seconds (Snakemake benchmark files; jobs ran two at a time):", "",
                markdown(by.round(1)), ""]
    t1 = run / "results" / "aggregated" / "table1.parquet"
    if t1.exists():
        table = read_table(t1)
        out += ["### Table 1", "", markdown(table1_display(table)), ""]
        out += ["lr: the lr each method trained at (selected by the rule below, or the config's); valid. loss: per "
                "token, label-smoothed, on the validation split, at update 0 and at the best checkpoint.", ""]
        cols = [c for c in ("test_sentences", "beam", "dataset") if c in table]
        if cols:
            first = table.iloc[0]
            out += [", ".join(f"{c}: {first[c]}" for c in cols), ""]
    out += selection_section(run)
    checks = run / "results" / "checks.csv"
    if checks.exists():
        rows = pd.read_csv(checks)
        rows = rows[rows.figure.astype(str).isin(CLAIM_FIGURES)]
        if len(rows):
            show = rows[["name", "measured", "expected"]].assign(status=statuses(rows))  # undecided: neither
            out += ["### The paper's translation claims at this scale (results/checks.csv)", "", markdown(show), ""]
    images.mkdir(parents=True, exist_ok=True)
    pngs = sorted(p for p in (run / "figures").glob("*.png") if p.name.startswith(FIGURE_PREFIXES))
    pngs += sorted((run / "results" / "tables").glob("*.png"))
    if pngs:
        out += ["### Figures", ""]
    for png in pngs:
        shutil.copy2(png, images / png.name)
        out += [f"![{png.stem}]({(images / png.name).relative_to(page_dir)})", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path, help="the directory the workflow ran in")
    ap.add_argument("--page", required=True, type=Path, help="the Markdown page to update (created if missing)")
    ap.add_argument("--times", type=Path, help="a pipeline_times.jsonl: its last record is the run's wall time")
    ap.add_argument("--snakemake-log", type=Path, help="the run's Snakemake log: its wall time, first to last stamp")
    ap.add_argument("--load", help="the load the run shared the machine with, in words (written beside the time)")
    args = ap.parse_args(argv)
    if not (args.run / "results").is_dir():
        ap.error(f"{args.run} holds no results/: pass the directory the workflow ran in")
    times = None
    if args.times:
        lines = [ln for ln in args.times.read_text().splitlines() if ln.strip()]
        times = json.loads(lines[-1]) if lines else None
    images = args.page.with_suffix("")
    wall = snakemake_wall(args.snakemake_log) if args.snakemake_log else None
    body = generated(args.run, images, args.page.parent, times, wall, args.load)
    text = args.page.read_text() if args.page.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.page}: the markers are missing; add these two lines where the results go:\n"
                         f"{BEGIN}\n{END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with atomic_path(args.page) as tmp:
        tmp.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")
    print(f"wrote {args.page} and {len(list(images.glob('*.png')))} images in {images}")


if __name__ == "__main__":
    main()
