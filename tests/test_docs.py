"""The documentation: the config table is current and complete, links resolve, the report finds its page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import load_tool

from sigprop.analysis import report
from sigprop.config import load_layered

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "config" / "README.md", ROOT / "bench" / "RESULTS.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_config_table_is_current():
    assert load_tool("config_table").main(["--check"]) == 0, "run `python tools/config_table.py`"


def _keys(data: dict) -> set[str]:
    """Every key of a nested mapping, at any depth."""
    out = set()
    for key, value in data.items():
        out.add(key)
        if isinstance(value, dict):
            out |= _keys(value)
    return out


@pytest.mark.parametrize("scale", ["quick", "paper", "cpu", "gpu-check"])
def test_config_table_names_every_key_a_shipped_config_sets(scale):
    """Every key the shipped configs set (outside the names one chooses: methods, optimizers, experiments'
    parameters, which the table describes as `<name>`) has a row in config/README.md."""
    config, _ = load_layered(ROOT / "config" / f"{scale}.yaml")
    table = (ROOT / "config" / "README.md").read_text()
    named = set(table.split("| key |", 1)[1].split("`"))  # every back-quoted cell
    rows = {cell.rsplit(".", 1)[-1] for cell in re.findall(r"^\| `([^`]+)`", table, flags=re.M)}
    config = {k: v for k, v in config.items() if k not in ("base",)}
    chosen = set(config.get("methods", {})) | set(config.get("translation", {}).get("optimizers", {}))
    for exp in config.get("experiments", {}).values():
        for part in ("fixed", "grid", "inner"):
            grids = exp.get(part) or {}
            for grid in grids if isinstance(grids, list) else [grids]:
                chosen |= set(grid)
    missing = sorted(k for k in _keys(config) - chosen if k not in rows)
    assert not missing, f"keys of {scale}.yaml without a row in config/README.md: {missing}"
    assert {"fig07", "adam", "iwslt14-mini"} <= named  # the enums are spelled out


def test_every_relative_link_of_the_docs_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif frag and dest.suffix == ".md":
                anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)}
                if frag not in anchors:
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 12_000
    assert "make quick" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_report_shows_the_assumptions_page_without_its_title(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Assumptions\n\nWhere the paper is silent.\n\n- **Fig 7**: n = 32.\n")
    assert report.doc_body(page) == "Where the paper is silent.\n\n- **Fig 7**: n = 32."
    body = report.doc_body(ROOT / "docs" / "assumptions.md")
    assert not body.startswith("#") and "**Figs 3, 4, 9**" in body
