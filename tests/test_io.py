"""sigprop.io: atomic writes and the cleanup of their temporary files.

* a write that raises or is killed mid-way leaves the old file (or none), never a half-written one; its
  ``.partial`` file is never taken for output and is cleaned;
* the ``onstart`` cleanup removes only ``.partial`` files whose writer cannot be alive (its pid is gone on
  this host, or the file is old), so a second run in the same directory never pulls a file from under a live job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sigprop.io import atomic_path, partial_owner, read_meta, remove_partial_files, write_table

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"


def test_killed_write_leaves_a_partial_file_that_is_not_output_and_is_cleaned(tmp_path):
    target = tmp_path / "results" / "raw" / "x" / "seeds~0-3.parquet"
    code = (
        "import os, signal, sys\nfrom sigprop.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'PAR1 half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == -signal.SIGKILL
    left = list(target.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".seeds~0-3.parquet.") and left[0].suffix == ".partial"
    assert not target.exists() and not list(tmp_path.rglob("*.parquet"))  # never taken for a table
    keep = tmp_path / "results" / "notes.partial"  # not written by atomic_path: left alone
    keep.write_text("mine")
    assert remove_partial_files(tmp_path / "results", tmp_path / "figures") == left
    assert not left[0].exists() and keep.exists()
    with atomic_path(target) as tmp:  # and a successful write leaves only the output
        tmp.write_text("ok")
    assert [p.name for p in target.parent.iterdir()] == [target.name]


DAY = 24 * 3600


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


def test_atomic_path_leaves_nothing_when_block_raises(tmp_path):
    target = tmp_path / "sub" / "out.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_bytes(b"half-written")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_keeps_old_file_on_failure_and_replaces_on_success(tmp_path):
    target = tmp_path / "table.parquet"
    write_table(pd.DataFrame({"value": [1.0, 2.0]}), target, {"git_commit": "x"})
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"garbage")
            raise ValueError
    assert pd.read_parquet(target).value.tolist() == [1.0, 2.0]
    assert read_meta(target) == {"git_commit": "x"}
    write_table(pd.DataFrame({"value": [3.0]}), target)
    assert pd.read_parquet(target).value.tolist() == [3.0]
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]
