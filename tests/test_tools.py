"""The tools: compare two runs, record a run's outcome, draw the rule graph (tools/*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import load_tool

from sigprop.io import write_table


def _run(root: Path, value: float, wall: float) -> Path:
    table = pd.DataFrame({"seed": [0, 1], "value": [1.0, value], "train_wall_s": [wall, wall]})
    write_table(table, root / "results" / "aggregated" / "figX.parquet", {})
    log = pd.DataFrame({"step": [1, 1], "metric": ["loss", "wall_s"], "value": [2.0, wall]})
    write_table(log, root / "results" / "raw" / "x" / "log.parquet", {})
    return root


def test_compare_runs_tells_a_changed_value_from_a_changed_wall_time(tmp_path, capsys):
    compare = load_tool("compare_runs")
    a = _run(tmp_path / "a", 2.0, wall=10.0)
    assert compare.main([str(a), str(_run(tmp_path / "same", 2.0, wall=99.0))]) == 0  # only wall-clock differs
    assert "identical" in capsys.readouterr().out
    assert compare.main([str(a), str(_run(tmp_path / "changed", 2.0 + 1e-15, wall=10.0))]) == 1
    assert "aggregated/figX.parquet: differs in value" in capsys.readouterr().out
    (tmp_path / "changed" / "results" / "raw" / "x" / "log.parquet").unlink()
    assert compare.main([str(a), str(tmp_path / "changed")]) == 1
    assert f"only in {a}: raw/x/log.parquet" in capsys.readouterr().out


def test_record_results_rewrites_only_its_part_of_the_page(tmp_path):
    record = load_tool("record_results")
    run = tmp_path / "run"
    (run / "results" / "benchmarks" / "translation" / "m").mkdir(parents=True)
    (run / "results" / "benchmarks" / "translation" / "m" / "seed~0.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")
    (run / "figures").mkdir()
    (run / "figures" / "fig06_bleu_depth.png").write_bytes(b"png")
    (run / "figures" / "fig07_other.png").write_bytes(b"png")  # not a translation figure: not copied
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text(f"# Mine\n\nhand-written\n\n{record.BEGIN}\nold\n{record.END}\n\nafter\n")
    record.main(["--run", str(run), "--page", str(page)])
    text = page.read_text()
    assert text.startswith("# Mine\n\nhand-written\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert "| train | 1 | 12.5 |" in text and "![fig06_bleu_depth](results/fig06_bleu_depth.png)" in text
    assert sorted(p.name for p in (tmp_path / "docs" / "results").iterdir()) == ["fig06_bleu_depth.png"]


@pytest.mark.slow
def test_rulegraph_is_the_same_whatever_results_holds_and_whether_the_data_is_there(workflow_copy, monkeypatch):
    """`make test` after `make quick`: the graph does not follow this checkout's results/ or $SIGPROP_IWSLT_DIR."""
    rulegraph = load_tool("rulegraph")
    fresh = workflow_copy()  # a fresh clone: no results/, no data
    monkeypatch.delenv("SIGPROP_IWSLT_DIR", raising=False)
    drawn_fresh = rulegraph.rulegraph(fresh)
    after_run = workflow_copy()  # after `make quick` with the data: a status saying "available", other outputs
    data = rulegraph.stand_in_data(after_run / "my-iwslt")
    status = after_run / "results" / "data" / "iwslt14-mini" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"dataset": "iwslt14-mini", "available": True, "source": str(data)}))
    (after_run / "results" / "checks.csv").write_text("name,pass\nx,True\n")
    monkeypatch.setenv("SIGPROP_IWSLT_DIR", str(data))
    assert rulegraph.rulegraph(after_run) == drawn_fresh
    # the state drawn is the most informative one: the data present, so the translation rules are in it
    for rule in ("iwslt_status", "prepare_iwslt", "train_translation", "evaluate_translation", "simulate", "report"):
        assert f"[{rule}]" in drawn_fresh
