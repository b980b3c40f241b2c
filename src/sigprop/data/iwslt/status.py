"""Is the IWSLT'14 raw data for a dataset available here? (the workflow's ``iwslt_status`` checkpoint).

``write_status`` tries, in order, ``data.local_dir``, ``$SIGPROP_IWSLT_DIR``, an earlier download
and a fresh download (:func:`sigprop.data.iwslt.fetch.locate_source`), and writes a small JSON file:
``{"dataset", "available", "source" | "message"}``. It never fails for missing data: the workflow
then builds everything that needs no IWSLT data and prints the message once at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sigprop.data.iwslt.corpus import CONFIG_KEY, ENV_VAR
from sigprop.data.iwslt.fetch import DataUnavailableError, help_text, inspect_source, locate_source


def locate(
    dataset: str, local_dir: str | None, url: str | None, sha256: str | None, cache_dir: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Where the raw data for ``dataset`` is, or why it is not available."""
    try:
        src = locate_source(local_dir, url, sha256, cache_dir, dataset=dataset, timeout=timeout)
    except DataUnavailableError as exc:
        return {"dataset": dataset, "available": False, "message": unavailable_message(dataset, str(exc))}
    except (OSError, ValueError) as exc:  # e.g. a cache_dir that cannot be written: a status too, named
        reason = f"{type(exc).__name__}: {exc}"
        return {"dataset": dataset, "available": False, "message": unavailable_message(dataset, reason)}
    layout = inspect_source(src)
    return {"dataset": dataset, "available": True, "source": str(Path(src).resolve()), "layout": layout.kind}


def unavailable_message(dataset: str, reason: str) -> str:
    """The one message a run without data ends with: what was skipped, why, and how to provide the data."""
    reason = " ".join(reason.replace(help_text(), " ").split())
    need = (
        "fairseq's extracted de-en/ folder (train.tags.de-en.{de,en} and the IWSLT14.TED*.xml dev/test files)"
        if dataset == "iwslt14"
        else "fairseq's extracted de-en/ folder, or a copy laid out like shared/data/iwslt14 "
        "(orig/*.xml, tokenized/valid.{de,en}, bpe10k/code)"
    )
    return (
        f"IWSLT'14 De-En data for dataset '{dataset}' is not available: Figs 1, 6, 14, S1 and Table 1 were skipped "
        "(everything else was built).\n"
        f"  Why: {reason}\n"
        f"  Fix: point the environment variable {ENV_VAR} (or the config key `{CONFIG_KEY}`) at a "
        f"directory holding {need},\n"
        "       or run where fairseq's de-en.tgz can be downloaded (config `data.url`); then rerun the same "
        "command, e.g.\n"
        f"       {ENV_VAR}=/path/to/iwslt14 snakemake --cores 2"
    )


def write_status(out: str | os.PathLike[str], **kw: Any) -> dict[str, Any]:
    """:func:`locate` and write the result as JSON to ``out`` (atomically)."""
    from sigprop.io import atomic_path

    status = locate(**kw)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(status, indent=2) + "\n")
    return status


def read_status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON written by :func:`write_status`."""
    return json.loads(Path(path).read_text())
