"""Snakemake reruns on a workspace of stand-in outputs (dry runs and short real runs; marked slow).

* editing a module lists exactly the jobs that import it and what is made from them; a figure target
  rebuilds deleted tables; both figure spellings; ``--config`` overrides;
* a failed plot, aggregate or checks job is rerun by the next run (and fails again while the code is broken)
  instead of being taken as up to date; a failed report leaves no temporary file at or near its path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import quick_config

FIGURES_HERE = ["fig03", "fig04", "fig05", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12", "fig13"]


def _planned(output: str) -> list[tuple[str, list[str], str]]:
    """(rule, outputs, reason) of every job in a dry run."""
    jobs, cur = [], None
    for line in output.splitlines():
        s = line.strip()
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\S+):$", s)
        if head:
            cur = [head.group(1), [], ""]
            jobs.append(cur)
        elif cur is not None and s.startswith("output:"):
            cur[1] = [f.strip().split(" (")[0] for f in s[len("output:"):].split(",")]
        elif cur is not None and s.startswith("reason:"):
            cur[2] = s[len("reason:"):].strip()
    return [tuple(j) for j in jobs]


def _counts(jobs) -> dict[str, int]:
    out: dict[str, int] = {}
    for rule, _, _ in jobs:
        out[rule] = out.get(rule, 0) + 1
    return out


@pytest.fixture(scope="module")
def standins(tmp_path_factory, copy_workflow_to, snakemake) -> tuple[Path, list]:
    """A workflow copy (sources copied) whose every output exists as a stand-in, older than nothing it reads.

    Built from a dry run of the quick config without the translation part (no IWSLT data needed): one
    tiny parquet or empty file per output, all with one mtime, the sources an hour older.
    """
    wd = copy_workflow_to(tmp_path_factory.mktemp("standins") / "wf", src="copy")
    cfg = quick_config()
    cfg["figures"] = [f for f in cfg["figures"] if f in FIGURES_HERE]
    cfg["tables"] = []
    for key in ("translation", "methods"):
        cfg.pop(key, None)
    cfg["experiments"].pop("method_init", None)  # Fig S1's init-time jobs build translation models
    (wd / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs = _planned(proc.stdout)
    now = time.time()
    for _, outputs, _ in jobs:
        for rel in outputs:
            path = wd / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".parquet":
                pd.DataFrame({"x": [0]}).to_parquet(path)
            else:
                path.write_bytes(b"")
            os.utime(path, (now, now))
    for path in (wd / "src").rglob("*.py"):
        os.utime(path, (now - 3600, now - 3600))
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")
    assert "Nothing to be done" in proc.stdout, proc.stdout[-4000:]
    return wd, jobs


def _work_copy(standins, tmp_path) -> Path:
    wd = tmp_path / "wf"
    shutil.copytree(standins[0], wd, symlinks=True)  # keeps the mtimes
    return wd


# edited module -> the jobs `snakemake -n` must list, by rule ("*": as many as a run from scratch has; for
# plot, the figures); read off the import statements, with what is made downstream of those jobs
LISTED = {
    "plotting/_heatmaps.py": {"plot": ["fig12", "fig13"], "report": 1, "all": 1},
    "plotting/style.py": {"plot": "*", "report": 1, "all": 1},
    "tasks/toy_reversal.py": {"train_toy": "*", "aggregate": 1, "plot": ["fig05"], "checks": 1, "report": 1, "all": 1},
    "analysis/report.py": {"report": 1, "all": 1},
    "analysis/theory.py": {"aggregate": "*", "plot": "*", "checks": 1, "report": 1, "all": 1},
    "grid.py": {"simulate": "*", "aggregate": "*", "plot": "*", "checks": 1, "report": 1, "all": 1},
    "params.py": {"simulate": "*", "train_toy": "*", "aggregate": "*", "plot": "*", "checks": 1, "report": 1,
                  "all": 1},
}


@pytest.mark.slow
@pytest.mark.parametrize("module", list(LISTED))
def test_editing_a_module_reruns_exactly_the_jobs_that_import_it(module, standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    with (wd / "src" / "sigprop" / module).open("a") as fh:
        fh.write("\n# edited\n")
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs = _planned(proc.stdout)
    full = _counts(standins[1])
    expect = {}
    for rule, n in LISTED[module].items():
        expect[rule] = full[rule] if n == "*" else (len(n) if isinstance(n, list) else n)
    assert _counts(jobs) == expect, proc.stdout[-3000:]
    for rule, n in LISTED[module].items():
        if isinstance(n, list):
            stems = sorted(Path(o).stem.split("_")[0] for r, outs, _ in jobs if r == rule for o in outs[:1])
            assert stems == n
    # a job that reruns for a changed file of its own names the edited module (nothing else changed)
    direct = [reason for _, _, reason in jobs if reason.startswith("Updated input files")]
    assert direct and all(reason == f"Updated input files: src/sigprop/{module}" for reason in direct), direct


@pytest.mark.slow
def test_figure_target_rebuilds_deleted_tables_in_both_spellings(standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    (wd / "results" / "aggregated" / "fig07.parquet").unlink()
    raw = next(o for r, outs, _ in standins[1] if r == "simulate" for o in outs if "signal_propagation/" in o)
    (wd / raw).unlink()
    for target in ("fig7", "fig07"):
        proc = snakemake(wd, "-n", target, "--configfile", "run.yaml")
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert _counts(_planned(proc.stdout)) == {"aggregate": 1, "plot": 1, target: 1}, proc.stdout[-3000:]
    proc = snakemake(wd, "-n", "fig08", "--configfile", "run.yaml")
    jobs = _planned(proc.stdout)
    assert [outs for r, outs, _ in jobs if r == "simulate"] == [[raw]] and _counts(jobs)["aggregate"] == 1
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")  # the default target too
    counts = _counts(_planned(proc.stdout))
    assert counts["simulate"] == 1 and counts["aggregate"] == 2 and counts["checks"] == 1, counts
    proc = snakemake(wd, "-n", "fig2", "--configfile", "run.yaml")  # no such figure: refused with the list
    assert proc.returncode != 0 and "fig07 (fig07_uniform_attention)" in proc.stdout


@pytest.mark.slow
def test_config_override_on_the_command_line(standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    proc = snakemake(wd, "-n", "fig10", "--configfile", "run.yaml", "--config",
                     "experiments={norm_density: {seeds: 5}}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    outs = [o for r, outs, _ in _planned(proc.stdout) if r == "simulate" for o in outs]
    assert outs and all(o.startswith("results/raw/norm_density/") and o.endswith("seeds~0-4.parquet") for o in outs)


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
         "outputs": [], "source": ["config_file = ''\n", "results_dir = 'results'\n", "figures_dir = 'figures'"]},
        {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
         "source": ["print('REPORT VERSION 1')"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def _run(snakemake, wd: Path, *args: str):
    return snakemake(wd, *args, "--cores", "1", "--configfile", "run.yaml")


def _rules(proc) -> list[str]:
    return [rule for rule, _, _ in _planned(proc.stdout)]


@pytest.mark.slow
def test_a_failed_plot_job_is_rerun_and_the_last_good_figure_kept_beside(standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    fig07 = wd / "src" / "sigprop" / "plotting" / "fig07.py"
    fig07.write_text(fig07.read_text() + (
        "\n\ndef plot(tables, style):  # a figure that needs nothing from the stand-in tables\n"
        "    fig, ax = style.figure(1, 1)\n    ax.set_title('version 1')\n    return fig\n"))
    proc = _run(snakemake, wd, "fig7")
    assert proc.returncode == 0, proc.stdout[-3000:]
    pngs = sorted((wd / "figures").glob("fig07*.png"))
    assert len(pngs) == 1
    good = pngs[0].read_bytes()
    fig07.write_text(fig07.read_text() + "\nraise RuntimeError('broken plot code')\n")
    proc = _run(snakemake, wd, "fig7")
    assert proc.returncode != 0 and "broken plot code" in proc.stdout
    assert not pngs[0].exists() and not list((wd / "figures").glob("fig07*"))  # no stale figure at its path
    assert (wd / "figures" / ".previous" / pngs[0].name).read_bytes() == good  # the last good one, beside
    for target in ("fig7", None):  # the next run reruns the job (and fails again), by name or by default
        proc = _run(snakemake, wd, "-n", *([target] if target else []))
        assert proc.returncode == 0 and "plot" in _rules(proc), proc.stdout[-3000:]
    proc = _run(snakemake, wd, "fig7")
    assert proc.returncode != 0 and "broken plot code" in proc.stdout


@pytest.mark.slow
def test_a_failed_aggregate_or_checks_job_is_rerun(standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    raw = next(o for r, outs, _ in standins[1] if r == "simulate" for o in outs if "attention_concentration/" in o)
    (wd / raw).write_bytes(b"PAR1 truncated")
    proc = _run(snakemake, wd, "fig7")
    assert proc.returncode != 0 and not (wd / "results" / "aggregated" / "fig07.parquet").exists()
    proc = _run(snakemake, wd, "-n", "fig7")
    assert "aggregate" in _rules(proc), proc.stdout[-3000:]

    wd = _work_copy(standins, tmp_path / "checks")
    checks = wd / "src" / "sigprop" / "analysis" / "checks.py"
    checks.write_text(checks.read_text() + "\nraise RuntimeError('broken checks code')\n")
    proc = _run(snakemake, wd, "results/checks.csv", "--allowed-rules", "checks")
    assert proc.returncode != 0 and not (wd / "results" / "checks.csv").exists(), proc.stdout[-3000:]
    proc = _run(snakemake, wd, "-n", "results/checks.csv")
    assert "checks" in _rules(proc), proc.stdout[-3000:]


@pytest.mark.slow
def test_a_failed_report_leaves_no_temporary_file_and_keeps_the_last_good_one_beside(
    standins, tmp_path, snakemake
):
    wd = _work_copy(standins, tmp_path)
    notebook = wd / "workflow" / "notebooks" / "report.ipynb"
    notebook.write_text(json.dumps(NOTEBOOK))
    proc = _run(snakemake, wd, "results/report/report.html", "--allowed-rules", "report")
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = wd / "results" / "report"
    assert "REPORT VERSION 1" in (report / "report.html").read_text()
    broken = json.loads(json.dumps(NOTEBOOK))
    broken["cells"][1]["source"] = ["raise RuntimeError('broken report')"]
    notebook.write_text(json.dumps(broken))
    proc = _run(snakemake, wd, "results/report/report.html", "--allowed-rules", "report")
    assert proc.returncode != 0
    left = sorted(p.name for p in report.iterdir() if p.is_file())
    assert left == [], left  # nothing half-written at or near the report's path
    assert "REPORT VERSION 1" in (report / ".previous" / "report.html").read_text()
    proc = _run(snakemake, wd, "-n", "results/report/report.html")
    assert "report" in _rules(proc), proc.stdout[-3000:]
