"""A failed job never leaves a result that the next run trusts, and no run deletes another's files.

* temporary files: the ``onstart`` cleanup removes only ``.partial`` files whose writer cannot be alive
  (its pid is gone on this host, or the file is old), so a second run in the same directory never pulls a
  file from under a live job;
* Snakemake (end-to-end, marked slow): a failed plot, aggregate or checks job is rerun by the next run (and
  fails again while the code is broken) instead of being taken as up to date; a failed report leaves no
  temporary file at or near its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reliability import _planned, _work_copy, standins  # noqa: F401 (standins is a fixture)

from sigprop.io import atomic_path, partial_owner, remove_partial_files

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
DAY = 24 * 3600


# ---------------------------------------------------------------- temporary files of live and dead writers


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_cleanup_removes_only_partial_files_whose_writer_cannot_be_alive(tmp_path):
    d = tmp_path / "results" / "x"
    d.mkdir(parents=True)
    with atomic_path(d / "mine.parquet") as tmp:  # the name atomic_path gives carries this host and pid
        assert partial_owner(tmp) is not None
        host, pid = partial_owner(tmp)
        assert pid == os.getpid()
        live = tmp
        dead = d / tmp.name.replace(f"-{pid}.", f"-{_dead_pid()}.")
        dead.write_text("killed writer")
        elsewhere_new = d / f".a.parquet.otherhost-{os.getpid()}.abcdefgh.partial"
        elsewhere_old = d / f".b.parquet.otherhost-{os.getpid()}.abcdefgh.partial"
        legacy_new, legacy_old = d / ".c.parquet.abcdefgh.partial", d / ".d.parquet.abcdefgh.partial"
        for p in (elsewhere_new, elsewhere_old, legacy_new, legacy_old):
            p.write_text("x")
        old = time.time() - 2 * DAY
        for p in (elsewhere_old, legacy_old):
            os.utime(p, (old, old))
        mine = d / "notes.partial"  # not a name atomic_path makes: never touched
        mine.write_text("the user's")
        os.utime(mine, (old, old))
        removed = remove_partial_files(tmp_path / "results", tmp_path / "figures")
        assert sorted(removed) == sorted([dead, elsewhere_old, legacy_old])
        assert live.exists() and elsewhere_new.exists() and legacy_new.exists() and mine.exists()
        tmp.write_text("done")
    assert (d / "mine.parquet").read_text() == "done"  # the live write completed


def test_a_second_runs_cleanup_leaves_a_live_jobs_checkpoint_write_alone(tmp_path):
    """The race of two runs in one directory, made deterministic: a job is inside atomic_path (writing
    state/.last.pt...partial) while another run's onstart cleanup runs; the job's write still completes."""
    target = tmp_path / "results" / "state" / "last.pt"
    ready, go = tmp_path / "ready", tmp_path / "go"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom sigprop.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'checkpoint')\n"
        "    Path(sys.argv[2]).touch()\n"
        "    while not Path(sys.argv[3]).exists():\n        time.sleep(0.02)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(target), str(ready), str(go)],
                              env={**os.environ, "PYTHONPATH": str(SRC)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not ready.exists():
            assert writer.poll() is None and time.time() < deadline, writer.stderr.read() if writer.stderr else ""
            time.sleep(0.02)
        assert remove_partial_files(tmp_path / "results") == []
    finally:
        go.touch()
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert target.read_bytes() == b"checkpoint"


# ---------------------------------------------------------------- Snakemake: failed jobs, the report

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
def test_a_failed_plot_job_is_rerun_and_the_last_good_figure_kept_beside(standins, tmp_path, snakemake):  # noqa: F811
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
def test_a_failed_aggregate_or_checks_job_is_rerun(standins, tmp_path, snakemake):  # noqa: F811
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
    standins, tmp_path, snakemake  # noqa: F811
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
