"""Atomic writes and provenance: nothing half-written is ever left at an output path.

A write goes to a hidden ``.<name>.<random>.partial`` file beside the output and is renamed onto it when
complete. A process killed mid-write (SIGKILL, power loss) can leave such a file behind: its name ends in
``.partial``, never in the output's suffix, so no ``*.parquet`` glob picks it up, and
:func:`remove_partial_files` (the workflow's ``onstart``) deletes them at the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
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
_PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")  # .<name>.<mkstemp's 8 characters>.partial
PACKAGES = ("sigprop", "torch", "numpy", "pandas", "pyarrow", "snakemake")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file is ``.<name>.<random>.partial`` (give writers that go by the suffix an explicit format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
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


def remove_partial_files(*roots: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` under ``roots`` (left by a killed run); return them.

    Only for a moment when no job writes there (the workflow calls it before its first job, holding the lock).
    """
    found = [
        p for root in roots if Path(root).is_dir() for p in Path(root).rglob(f".*{PARTIAL_SUFFIX}")
        if _PARTIAL.match(p.name) and p.is_file()
    ]
    for p in found:
        p.unlink(missing_ok=True)
    return found


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
