"""Keep the rule graph in docs/running.md current: `python tools/rulegraph.py` rewrites it, `--check` fails if stale.

The graph is drawn in a fresh copy of the workflow (no `results/`), with the IWSLT'14 data present: the
tool points `$SIGPROP_IWSLT_DIR` at a stand-in directory that holds the raw files' names (empty files, enough
for the `iwslt_status` checkpoint to say "available" for both datasets) and runs that checkpoint first, so the
graph shows the translation rules too. It is the same whatever this checkout's `results/` holds and whether
the real data is there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = "docs/running.md"
START, END = "<!-- rulegraph:start -->", "<!-- rulegraph:end -->"
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "envs", "docs/assumptions.md")  # what the rules read
DATASETS = ("iwslt14", "iwslt14-mini")


def stand_in_data(dest: Path) -> Path:
    """A directory laid out like fairseq's de-en/ (every raw file either dataset needs, all empty)."""
    from sigprop.data.iwslt.corpus import FULL_TEST_SETS, LANGS, MINI_TEST_SETS, MINI_VALID_SETS

    dest.mkdir(parents=True)
    for lang in LANGS:
        (dest / f"train.tags.de-en.{lang}").touch()
        for name in {*FULL_TEST_SETS, *MINI_VALID_SETS, *MINI_TEST_SETS}:
            (dest / f"{name}.de-en.{lang}.xml").touch()
    return dest


def rulegraph(root: Path = ROOT) -> str:
    """The rule graph of the default target of the workflow in ``root``, as a mermaid block."""
    with tempfile.TemporaryDirectory(prefix="rulegraph-") as tmp:
        wd = Path(tmp) / "workflow"
        wd.mkdir()
        for name in WORKFLOW_ITEMS:
            item = root / name
            if item.is_dir():
                shutil.copytree(item, wd / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (wd / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, wd / name)
        (wd / "src").symlink_to((root / "src").resolve(), target_is_directory=True)
        env = {
            **os.environ,
            "SIGPROP_IWSLT_DIR": str(stand_in_data(Path(tmp) / "de-en")),
            "PYTHONHASHSEED": "0",  # Snakemake's edge order follows string hashing
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
        base = [exe, "--workflow-profile", "none", "--quiet"]
        statuses = [f"results/data/{d}/status.json" for d in DATASETS]
        for args in ([*base, "--cores", "1", *statuses], [*base, "--rulegraph", "mermaid-js", "all"]):
            proc = subprocess.run(args, cwd=wd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{' '.join(args[1:])} failed in a copy of the workflow:\n{proc.stdout}{proc.stderr}")
        out = proc.stdout
    graph = out[out.index("---") :].strip()
    return f"{START}\n```mermaid\n{graph}\n```\n{END}"


def main() -> None:
    """Rewrite or check the block in TARGET."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {TARGET}'s graph is not current")
    args = parser.parse_args()
    page = ROOT / TARGET
    text = page.read_text()
    if START not in text or END not in text:
        sys.exit(f"{TARGET} has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = head + rulegraph() + tail
    if args.check:
        if new != text:
            sys.exit(f"{TARGET}'s rule graph is out of date: run `python tools/rulegraph.py` (or `make rulegraph`)")
        print(f"{TARGET}'s rule graph is current")
    else:
        page.write_text(new)


if __name__ == "__main__":
    main()
