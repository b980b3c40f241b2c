"""Measure the pipeline's wall times: a full run of a config from scratch, a no-op rerun, a dry run.

Runs in a fresh copy of the workflow (src/ linked) so it never touches this checkout's results/:

    python bench/pipeline_times.py --config config/quick.yaml --cores 2
    python bench/pipeline_times.py --config config/paper.yaml --cores 2 --targets fig3 fig4 ...

Prints a table and appends a JSON record to bench/results/pipeline_times.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of one command (raises if it fails)."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/quick.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--targets", nargs="*", default=[])
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sigprop-bench-"))
    for name in ("Snakefile", "workflow", "config", "profiles", "envs", "docs/assumptions.md"):  # the report reads it
        src = ROOT / name
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    os.symlink(ROOT / "src", work / "src")
    base = ["snakemake", *args.targets, "--cores", str(args.cores), "--configfile", args.config]
    record = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "command": " ".join(base),
        "full_run_s": round(timed(base, work), 1),
        "noop_s": round(timed(base, work), 2),
        "dry_run_s": round(timed([*base, "-n", "--forceall"], work), 2),
    }
    out = ROOT / "bench" / "results" / "pipeline_times.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    for key, value in record.items():
        print(f"{key:>12}: {value}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
