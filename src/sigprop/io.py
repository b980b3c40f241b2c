"""Atomic writes and provenance: nothing half-written is ever left at an output path.

A write goes to a hidden ``.<name>.<host>-<pid>.<random>.partial`` file beside the output and is renamed onto it
when complete. A process killed mid-write (SIGKILL, power loss) can leave such a file behind: its name ends in
``.partial``, never in the output's suffix, so no ``*.parquet`` glob picks it up, and
:func:`remove_partial_files` (the workflow's ``onstart``) deletes it at a later run once its writer cannot be
alive (its pid is gone on this host, or the file is older than a day), so a run never removes the file of a
job that another run in the same directory is writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"sigprop"
PARTIAL_SUFFIX = ".partial"
#: .<name>.<host>-<pid>.<8 random characters>.partial (atomic_path's, and the report rule's mktemp)
_PARTIAL = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>[0-9]+)\.[A-Za-z0-9_]{8}\.partial$")
_LEGACY = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")  # .<name>.<random>.partial: writers of older versions
#: a temporary file of another host (or an older version) is removed once it is this old (seconds)
STALE_AFTER_S = 24 * 3600


def host_tag() -> str:
    """This machine's short host name, as it appears in temporary file names (bash: ``${HOSTNAME%%.*}``)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def partial_prefix(path: str | os.PathLike) -> str:
    """The start of the name of a temporary file for ``path``: ``.<name>.<host>-<pid>.``."""
    return f".{Path(path).name}.{host_tag()}-{os.getpid()}."


def partial_owner(path: str | os.PathLike) -> tuple[str, int] | None:
    """(host, pid) of the process that wrote a temporary file, from its name; None if the name has none."""
    m = _PARTIAL.match(Path(path).name)
    return (m["host"], int(m["pid"])) if m else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
PACKAGES = ("sigprop", "torch", "numpy", "pandas", "pyarrow", "snakemake")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file is ``.<name>.<host>-<pid>.<random>.partial`` (give writers that go by the suffix an
    explicit format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=partial_prefix(path), suffix=PARTIAL_SUFFIX)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _orphaned(path: Path, now: float, stale_after_s: float) -> bool:
    """Whether the writer of temporary file ``path`` cannot be alive."""
    owner = partial_owner(path)
    if owner is not None and owner[0] == host_tag():
        return not _alive(owner[1])
    if owner is None and not _LEGACY.match(path.name):
        return False  # not a name this package makes
    try:  # another host's writer (its pids are not visible here), or an older version's name: by age
        return now - path.stat().st_mtime > stale_after_s
    except FileNotFoundError:
        return False


def remove_partial_files(*roots: str | os.PathLike, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` under ``roots`` whose writer cannot be alive; return them.

    Safe while other runs' jobs write there (Snakemake locks only each run's own outputs): a file is removed
    only if its writer's pid is gone on this host, or, written on another host (or by an older version),
    if it has not changed for ``stale_after_s`` seconds.
    """
    now = time.time()
    found = [
        p for root in roots if Path(root).is_dir() for p in Path(root).rglob(f".*{PARTIAL_SUFFIX}")
        if p.is_file() and _orphaned(p, now, stale_after_s)
    ]
    for p in found:
        p.unlink(missing_ok=True)
    return found


class BadInput(ValueError):
    """A file or value the pipeline refuses; the message names it (file and line, or key) and the fix. The
    command line prints the message and exits 1 (no traceback)."""


class UnreadableTable(ValueError):
    """A parquet file that cannot be read (truncated, overwritten, not parquet)."""

    def __init__(self, path: str | os.PathLike, error: Exception) -> None:
        self.path = str(path)
        super().__init__(f"{path} cannot be read as a parquet table ({type(error).__name__}: {error})")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """``pd.read_parquet``, raising :class:`UnreadableTable` (naming the file) for a corrupt or truncated file."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as err:
        raise UnreadableTable(path, err) from err


def config_hash(obj: Any) -> str:
    """Short sha256 of a JSON-serialisable object (key order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@cache
def _git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode == 0:
            return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git_commit": "unknown", "git_dirty": None}


def versions(packages: Iterable[str]) -> dict[str, str]:
    """The Python version (key ``python``) and each distribution's installed version (``not installed`` if absent)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(**fields: Any) -> dict[str, Any]:
    """Where a result came from: the given fields plus git state, package versions, host and device."""
    torch = sys.modules.get("torch")  # jobs that never imported torch (plots, tables) ran on the CPU
    if torch is None:
        device = f"cpu ({platform.processor() or platform.machine()})"
    elif torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f"cpu ({platform.processor() or platform.machine()})"
    packages = versions(PACKAGES)
    return {
        **fields,
        **_git_state(),
        "packages": {p: packages[p] for p in PACKAGES},
        "python": packages["python"],
        "host": platform.node(),
        "device": device,
    }


def write_table(df: pd.DataFrame, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
    """Write ``df`` as parquet atomically, with ``meta`` as JSON in the file's schema metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), PROVENANCE_KEY: json.dumps(meta, default=str).encode()}
        )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance stored by :func:`write_table`."""
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw[PROVENANCE_KEY]) if PROVENANCE_KEY in raw else {}


def read_tables(paths: list[str]) -> pd.DataFrame:
    """Concatenate parquet tables; a column holding both text and numbers becomes text."""
    df = pd.concat([read_table(p) for p in paths], ignore_index=True)
    for col in df.columns[df.dtypes.map(lambda t: t == object)]:  # noqa: E721
        kinds = {type(v) for v in df[col].dropna()}
        if len(kinds) > 1:
            df[col] = df[col].map(lambda v: v if pd.isna(v) else str(v))
    return df
