"""Text files as the shell tools see them: lines split on ``\\n`` only, UTF-8, written atomically; sha256."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sigprop.io import BadInput, atomic_path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """Read UTF-8 lines split on ``\\n`` only (like grep/sed/perl; no universal newlines).

    A byte sequence that is not UTF-8 raises ``ValueError`` naming the file, the line and the byte."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        byte = err.start - data.rfind(b"\n", 0, err.start)
        raise BadInput(
            f"{path}, line {line}, byte {byte}: not UTF-8 text ({err.reason}: {data[err.start:err.end]!r}); "
            "the file is damaged or in another encoding: restore it, or convert it to UTF-8 (iconv -t UTF-8)"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Atomically write lines (each terminated by ``\\n``) as UTF-8."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (keys in insertion order) and a final newline."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
