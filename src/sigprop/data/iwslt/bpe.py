"""Joint byte-pair encoding with subword-nmt, as fairseq's script runs it (``@@`` continuation markers)."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sigprop.data.iwslt.corpus import BPE_MERGES
from sigprop.io import PARTIAL_SUFFIX, BadInput, atomic_path, partial_prefix


def learn_bpe(
    lines: Iterable[str], codes_path: str | os.PathLike[str], merges: int = BPE_MERGES
) -> Path:
    """subword-nmt ``learn_bpe.py -s MERGES`` on ``lines``; writes the codes file atomically."""
    from subword_nmt.learn_bpe import learn_bpe as _learn

    codes_path = Path(codes_path)
    codes_path.parent.mkdir(parents=True, exist_ok=True)
    # subword-nmt reads a text file (opened as its command line does: universal newlines); this one is named
    # like atomic_path's temporary files, so a killed run's copy is removed with theirs
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="", dir=codes_path.parent, prefix=partial_prefix(f"{codes_path}.input"),
        suffix=PARTIAL_SUFFIX,
    ) as corpus:
        for line in lines:
            corpus.write(line)
            corpus.write("\n")
        corpus.flush()
        with (
            atomic_path(codes_path) as tmp,
            open(corpus.name, encoding="utf-8") as fin,
            open(tmp, "w", encoding="utf-8") as fout,
        ):
            _learn(fin, fout, merges)
    return codes_path


def check_bpe_codes(codes_path: str | os.PathLike[str], merges: int | None = None) -> int:
    """Raise :class:`~sigprop.io.BadInput` naming the file (and line) unless ``codes_path`` is a whole
    subword-nmt codes file: UTF-8, an optional ``#version:`` line, then one merge (two symbols) per line,
    ending with a newline, and ``merges`` merges when given (fairseq's ``code`` has
    :data:`~sigprop.data.iwslt.corpus.BPE_MERGES`). Returns the number of merges."""
    from sigprop.data.iwslt.textio import read_lines

    path = Path(codes_path)
    fix = "delete it to have the codes learned again, or restore the file (e.g. from fairseq's archive)"
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        raise BadInput(f"{path}: BPE codes file truncated (the last line ends without a newline); {fix}")
    lines = read_lines(path)
    start = 1 if lines and lines[0].startswith("#version:") else 0
    for n, line in enumerate(lines[start:], start + 1):
        if len(line.split(" ")) != 2 or "" in line.split(" "):
            raise BadInput(f"{path}, line {n}: {line[:60]!r} is not a BPE merge (two symbols); {fix}")
    count = len(lines) - start
    if count == 0 or (merges is not None and count != merges):
        raise BadInput(
            f"{path}: BPE codes file truncated or not fairseq's: {count} merges, expected "
            f"{merges if merges is not None else 'at least 1'}; {fix}"
        )
    return count


@functools.lru_cache(maxsize=4)
def _bpe(codes_path: str, mtime_ns: int) -> Any:
    from subword_nmt.apply_bpe import BPE

    check_bpe_codes(codes_path)
    with open(codes_path, encoding="utf-8") as f:
        return BPE(f)


def apply_bpe(lines: Iterable[str], codes_path: str | os.PathLike[str]) -> list[str]:
    """subword-nmt ``apply_bpe.py -c CODES`` (separator ``@@``) on each line."""
    p = Path(codes_path).resolve()
    bpe = _bpe(str(p), p.stat().st_mtime_ns)
    return [bpe.process_line(line) for line in lines]


def detok_bpe(line: str) -> str:
    """Undo subword-nmt BPE: remove the ``@@ `` continuation markers (fairseq's post-processing)."""
    return (line + " ").replace("@@ ", "").rstrip()
