"""Find the raw IWSLT'14 De-En files: a local copy, an earlier download, or fairseq's ``de-en.tgz``.

:func:`locate_source` tries, in order, the config key ``data.local_dir``, ``$SIGPROP_IWSLT_DIR``, an earlier
download extracted under the cache directory, then a fresh :func:`download`; :func:`inspect_source` says what
a directory holds (:class:`SourceLayout`). Every failure is a :class:`DataUnavailableError` whose message
names the config key and the environment variable that point at a local copy (:func:`help_text`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from sigprop.data.iwslt.corpus import (
    CONFIG_KEY,
    ENV_VAR,
    FULL_TEST_SETS,
    LANGS,
    MINI_TEST_SETS,
    MINI_VALID_SETS,
    check_dataset,
)
from sigprop.data.iwslt.textio import sha256_file
from sigprop.io import atomic_path

log = logging.getLogger(__name__)


#: the file an extracted download holds (the archive's sha256): only such a folder is ever replaced
MARKER = ".sigprop-extracted"


class DataUnavailableError(RuntimeError):
    """The IWSLT'14 raw data is neither available locally nor downloadable."""


class ChecksumError(DataUnavailableError):
    """A downloaded archive does not have the expected sha256."""


def help_text() -> str:
    """How to point the project at a local copy of the data (ends every :class:`DataUnavailableError`)."""
    return (
        f"To use a local copy, set the config key `{CONFIG_KEY}` or the environment variable "
        f"{ENV_VAR} to a directory holding either fairseq's extracted de-en/ folder "
        "(train.tags.de-en.{de,en} and IWSLT14.TED*.xml; enough for both datasets) or a copy "
        "laid out like shared/data/iwslt14 (orig/, tokenized/, bpe10k/; enough for "
        "'iwslt14-mini' only)."
    )


def _archive_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return name or "download.tgz"


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        _extract(archive, dest)
    except (tarfile.TarError, EOFError, zlib.error) as exc:  # FilterError (unsafe member) is a TarError
        raise DataUnavailableError(
            f"{archive} cannot be extracted safely ({type(exc).__name__}: {exc}); it is damaged or not fairseq's "
            "de-en.tgz: delete it and check the config key data.url (and data.sha256). " + help_text()
        ) from exc


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        root = dest.resolve()
        for member in tar.getmembers():  # pragma: no cover - only on old Pythons
            target = (dest / member.name).resolve()
            if root not in target.parents and target != root:
                raise DataUnavailableError(f"unsafe path {member.name!r} in {archive}")
            if not (member.isfile() or member.isdir()):
                raise DataUnavailableError(f"unsupported member {member.name!r} in {archive}")
        tar.extractall(dest)


def download(
    url: str,
    sha256: str | None,
    dest: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` (fairseq's de-en.tgz) into directory ``dest``, verify it and extract it.

    The archive is streamed to a temporary file and renamed once complete; it is checked
    against ``sha256`` when given (a mismatch raises :class:`ChecksumError`; with ``None`` the
    computed hash is only logged and stored next to the archive). Returns the extracted
    directory (``dest/de-en`` for fairseq's archive). Network failures raise
    :class:`DataUnavailableError` explaining how to point at a local copy instead.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / _archive_name(url)
    expected = sha256.lower() if sha256 else None

    have = archive.is_file() and (expected is None or sha256_file(archive) == expected)
    if not have:
        h = hashlib.sha256()
        try:
            log.info("downloading %s -> %s", url, archive)
            with atomic_path(archive) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        h.update(block)
                        f.write(block)
                got = h.hexdigest()
                if expected is not None and got != expected:
                    raise ChecksumError(
                        f"sha256 mismatch for {url}: expected {expected}, got {got}. "
                        "The file was not kept. " + help_text()
                    )
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataUnavailableError(
                f"Could not download the IWSLT'14 De-En data from {url} ({reason}). " + help_text()
            ) from exc
    digest = sha256_file(archive)
    if expected is None:
        log.warning("no sha256 configured for %s; downloaded file has sha256 %s", url, digest)
    with atomic_path(dest / (archive.name + ".sha256")) as tmp:
        tmp.write_text(f"{digest}  {archive.name}\n", encoding="utf-8")

    # extract into a hidden staging directory, then move the tree into place in one rename
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        _safe_extract(archive, staging)
        entries = list(staging.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            src, final = entries[0], dest / entries[0].name
        else:
            src, final = staging, dest / archive.name.split(".")[0]
        if final.exists() and not (final / MARKER).is_file():  # never delete what this code did not make
            raise DataUnavailableError(
                f"{final} exists but was not made by a download of this pipeline (it has no {MARKER} file): "
                f"it is left as it is. Point the config key data.cache_dir at an empty or new directory, "
                f"or, if {final} holds fairseq's extracted de-en/ folder, name it with `{CONFIG_KEY}` or "
                f"{ENV_VAR} instead."
            )
        (src / MARKER).write_text(digest + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(src, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


@dataclass(frozen=True)
class SourceLayout:
    """What a candidate raw-data directory provides."""

    root: Path
    xml_dir: Path | None  # holds IWSLT14.TED*.de-en.{de,en}.xml
    train_tags_dir: Path | None  # holds train.tags.de-en.{de,en}
    tokenized_dir: Path | None  # holds fairseq's tokenised valid.{de,en}
    bpe_codes: Path | None  # fairseq's 10k BPE code file

    @property
    def kind(self) -> str:
        """``fairseq-raw`` (has train.tags), ``shared-copy`` (tokenised valid) or ``incomplete``."""
        if self.train_tags_dir is not None:
            return "fairseq-raw"
        if self.tokenized_dir is not None:
            return "shared-copy"
        return "incomplete"

    def missing(self, dataset: str) -> list[str]:
        """Return human-readable descriptions of what ``dataset`` needs and this lacks."""
        check_dataset(dataset)
        sets = FULL_TEST_SETS if dataset == "iwslt14" else MINI_VALID_SETS + MINI_TEST_SETS
        out = []
        for name in sets:
            for lang in LANGS:
                fname = f"{name}.de-en.{lang}.xml"
                if self.xml_dir is None or not (self.xml_dir / fname).is_file():
                    out.append(fname)
        if dataset == "iwslt14":
            if self.train_tags_dir is None:
                out.append("train.tags.de-en.{de,en}")
        elif self.train_tags_dir is None and self.tokenized_dir is None:
            out.append("train.tags.de-en.{de,en} or tokenized/valid.{de,en}")
        return out

    def supports(self, dataset: str) -> bool:
        """Whether ``prepare(dataset, ...)`` can run from this directory."""
        return not self.missing(dataset)


def inspect_source(path: str | os.PathLike[str]) -> SourceLayout:
    """Describe which raw files a directory holds (fairseq's de-en/ or a shared/ style copy)."""
    root = Path(path)
    dirs = [root, root / "de-en", root / "orig", root / "orig" / "de-en"]
    xml_dir = next((d for d in dirs if any(d.glob("IWSLT14.TED*.de-en.*.xml"))), None)
    train_dir = next(
        (d for d in dirs if all((d / f"train.tags.de-en.{lang}").is_file() for lang in LANGS)),
        None,
    )
    tok_dirs = [root / "tokenized", root / "iwslt14.tokenized.de-en" / "tmp"]
    tok_dir = next(
        (d for d in tok_dirs if all((d / f"valid.{lang}").is_file() for lang in LANGS)), None
    )
    codes = [root / "bpe10k" / "code", root / "iwslt14.tokenized.de-en" / "code"]
    code = next((c for c in codes if c.is_file()), None)
    return SourceLayout(root, xml_dir, train_dir, tok_dir, code)


def locate_source(
    local_dir: str | os.PathLike[str] | None,
    url: str | None,
    sha256: str | None,
    cache_dir: str | os.PathLike[str],
    *,
    dataset: str = "iwslt14",
    timeout: float = 60.0,
) -> Path:
    """Return a directory holding the raw files ``dataset`` needs.

    Tried in order: ``local_dir`` (config ``data.local_dir``), ``$SIGPROP_IWSLT_DIR``, an earlier
    download extracted under ``cache_dir``, then a fresh download of ``url`` into ``cache_dir``.
    Raises :class:`DataUnavailableError` (naming the config key and the environment variable)
    when none works.
    """
    check_dataset(dataset)
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if local_dir:
        candidates.append((CONFIG_KEY, Path(local_dir)))
    if os.environ.get(ENV_VAR):
        candidates.append((ENV_VAR, Path(os.environ[ENV_VAR])))
    cache = Path(cache_dir)
    candidates.append(("cache", cache / "de-en"))
    expected = sha256.lower() if sha256 else None
    for label, cand in candidates:
        if not cand.is_dir():
            if label != "cache":
                tried.append(f"{label}={cand} (not a directory)")
            continue
        if label == "cache" and expected is not None:  # an earlier download must be of the pinned archive
            marker = cand / MARKER
            got = marker.read_text(encoding="utf-8").strip() if marker.is_file() else "unknown"
            if got != expected:
                tried.append(f"cache={cand} (extracted from an archive with sha256 {got}, not data.sha256)")
                continue
        layout = inspect_source(cand)
        missing = layout.missing(dataset)
        if not missing:
            log.info("using IWSLT'14 source %s (%s, from %s)", cand, layout.kind, label)
            return cand
        tried.append(f"{label}={cand} (lacks {', '.join(missing[:3])})")

    tried_txt = ("Tried: " + "; ".join(tried) + ". ") if tried else ""
    if not url:
        raise DataUnavailableError(
            f"No IWSLT'14 De-En data for dataset {dataset!r} and no download URL. "
            + tried_txt
            + help_text()
        )
    try:
        extracted = download(url, sha256, cache, timeout=timeout)
    except ChecksumError:
        raise
    except DataUnavailableError as exc:
        raise DataUnavailableError(f"{exc} {tried_txt}".rstrip()) from exc
    missing = inspect_source(extracted).missing(dataset)
    if missing:
        raise DataUnavailableError(
            f"The archive from {url} lacks {', '.join(missing)}. " + tried_txt + help_text()
        )
    return extracted
