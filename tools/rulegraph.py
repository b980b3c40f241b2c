"""Keep the README's rule graph current: `python tools/rulegraph.py` rewrites it, `--check` fails if stale."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- rulegraph:start -->", "<!-- rulegraph:end -->"


def rulegraph() -> str:
    """The rule graph of the default target as a mermaid block (Snakemake's `--rulegraph mermaid-js`)."""
    out = subprocess.run(
        ["snakemake", "--rulegraph", "mermaid-js", "--quiet", "all"],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # Snakemake's edge order follows string hashing
    ).stdout
    graph = out[out.index("---") :].strip()
    return f"{START}\n```mermaid\n{graph}\n```\n{END}"


def main() -> None:
    """Rewrite or check the README block."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's graph is not current")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"README.md has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = head + rulegraph() + tail
    if args.check:
        if new != text:
            sys.exit("README.md's rule graph is out of date: run `python tools/rulegraph.py`")
        print("README rule graph is current")
    else:
        readme.write_text(new)


if __name__ == "__main__":
    main()
