"""A failed job never leaves a result that the next run trusts, and no run deletes another's files.

* temporary files: the ``onstart`` cleanup removes only ``.partial`` files whose writer cannot be alive
  (its pid is gone on this host, or the file is old), so a second run in the same directory never pulls a
  file from under a live job;
* Snakemake (end-to-end, marked slow): a failed plot, aggregate or checks job is rerun by the next run (and
  fails again while the code is broken) instead of being taken as up to date; a failed report leaves no
  temporary file at or near its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
