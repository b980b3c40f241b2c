"""IWSLT'14 German-English data: download, fairseq-identical preprocessing, BPE, binarisation.

The preprocessing reproduces fairseq's ``examples/translation/prepare-iwslt14.sh``:

* train (``train.tags.de-en.{de,en}``): drop lines containing ``<url>``, ``<talkid>`` or
  ``<keywords>``; delete the ``<title>``/``</title>``/``<description>``/``</description>`` tags;
  Moses ``tokenizer.perl -l LANG`` (XML escaping on); ``clean-corpus-n.perl -ratio 1.5 ... 1 175``;
  ``lowercase.perl``. ``valid`` = every 23rd line (1-based ``NR % 23 == 0``), ``train`` = the rest.
* dev/test (``IWSLT14.TED*.xml``): keep lines containing ``<seg id``, strip the ``<seg>`` tags,
  map U+2019 to ``'``, Moses-tokenise, lowercase. ``test`` = dev2010 + TEDX.dev2012 + tst2010 +
  tst2011 + tst2012 (in that order).
* joint BPE: subword-nmt ``learn_bpe -s 10000`` on ``train.de`` + ``train.en``; ``apply_bpe``
  to all splits.

Moses tokenisation uses sacremoses with one correction: ``tokenizer.perl`` always splits the
period off the *last* word of a line ("... in the u.s." -> "... in the u.s ."), which sacremoses
0.x does not. With it, our output is byte-identical to fairseq's tokenised dev/test files.

Two datasets can be prepared (``prepare``):

* ``iwslt14``: the paper's data (needs the raw ``train.tags`` files from fairseq's ``de-en.tgz``).
* ``iwslt14-mini``: local stand-in (SPEC section 5): train on fairseq's ``valid`` split (7,283 real
  training-corpus pairs), validate on dev2010, test on tst2010 + tst2011 + tst2012.

Binarisation (``binarize``) builds a joint fairseq-style dictionary from the training split
(``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then words by descending count, ties broken by
code point order, count threshold 0, padded with ``madeupwordNNNN`` to a multiple of 8 like
fairseq) and writes ``{split}.pt`` files that load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used, so the workflow parses without it
    import torch

log = logging.getLogger("sigprop.data.iwslt")

#: fairseq's mirror of the IWSLT'14 De-En release (the URL used by prepare-iwslt14.sh).
DEFAULT_URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
#: Environment variable naming a local copy of the raw data.
ENV_VAR = "SIGPROP_IWSLT_DIR"
#: Config key naming a local copy of the raw data.
CONFIG_KEY = "data.local_dir"
#: sha256 of fairseq's standard 10k-merge BPE ``code`` (shared/data/iwslt14/PROVENANCE.md).
KNOWN_FAIRSEQ_CODE_SHA256 = "3dd02684b6693abce3ba59520425901b0b910abeec2ae6b15cc62e458441d503"

DATASETS = ("iwslt14", "iwslt14-mini")
SRC_LANG, TGT_LANG = "de", "en"
LANGS = (SRC_LANG, TGT_LANG)
SPLITS = ("train", "valid", "test")
BPE_MERGES = 10000
CLEAN_RATIO, CLEAN_MIN, CLEAN_MAX = 1.5, 1, 175
VALID_EVERY = 23

DEV2010 = "IWSLT14.TED.dev2010"
TEDX_DEV2012 = "IWSLT14.TEDX.dev2012"
TST2010, TST2011, TST2012 = "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012"
#: fairseq's test set, in fairseq's concatenation order.
FULL_TEST_SETS = (DEV2010, TEDX_DEV2012, TST2010, TST2011, TST2012)
MINI_VALID_SETS = (DEV2010,)
MINI_TEST_SETS = (TST2010, TST2011, TST2012)

BIN_FORMAT = "sigprop-iwslt-bin-v1"

# Perl's \s under Unicode rules (what tokenizer.perl / clean-corpus-n.perl see with :utf8 I/O).
_PERL_WS = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_PERL_WS_RUN = re.compile(_PERL_WS + "+")
_PERL_BLANK = re.compile(_PERL_WS + "*")
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">' + _PERL_WS + "*")
_SEG_CLOSE = re.compile(_PERL_WS + "*</seg>" + _PERL_WS + "*")
_LAST_WORD_PERIOD = re.compile(r"^(\S+)\.$")


class DataUnavailableError(RuntimeError):
    """The IWSLT'14 raw data is neither available locally nor downloadable."""


class ChecksumError(DataUnavailableError):
    """A downloaded archive does not have the expected sha256."""


# --------------------------------------------------------------------------------------------
# small file helpers
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """Read UTF-8 lines split on ``\\n`` only (like grep/sed/perl; no universal newlines)."""
    text = Path(path).read_bytes().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Atomically write lines (each terminated by ``\\n``) as UTF-8."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# download / locate
# --------------------------------------------------------------------------------------------


def _help_text() -> str:
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
        tmp = _tmp_path(archive)
        h = hashlib.sha256()
        try:
            log.info("downloading %s -> %s", url, archive)
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    h.update(block)
                    f.write(block)
            got = h.hexdigest()
            if expected is not None and got != expected:
                raise ChecksumError(
                    f"sha256 mismatch for {url}: expected {expected}, got {got}. "
                    "The file was not kept. " + _help_text()
                )
            os.replace(tmp, archive)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataUnavailableError(
                f"Could not download the IWSLT'14 De-En data from {url} ({reason}). "
                + _help_text()
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
    digest = sha256_file(archive)
    if expected is None:
        log.warning("no sha256 configured for %s; downloaded file has sha256 %s", url, digest)
    (dest / (archive.name + ".sha256")).write_text(f"{digest}  {archive.name}\n", encoding="utf-8")

    marker_name = ".sigprop-extracted"
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        _safe_extract(archive, staging)
        entries = list(staging.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            src, final = entries[0], dest / entries[0].name
        else:
            src, final = staging, dest / archive.name.split(".")[0]
        (src / marker_name).write_text(digest + "\n", encoding="utf-8")
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
        _check_dataset(dataset)
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


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")


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
    _check_dataset(dataset)
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if local_dir:
        candidates.append((CONFIG_KEY, Path(local_dir)))
    if os.environ.get(ENV_VAR):
        candidates.append((ENV_VAR, Path(os.environ[ENV_VAR])))
    cache = Path(cache_dir)
    candidates.append(("cache", cache / "de-en"))
    for label, cand in candidates:
        if not cand.is_dir():
            if label != "cache":
                tried.append(f"{label}={cand} (not a directory)")
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
            + _help_text()
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
            f"The archive from {url} lacks {', '.join(missing)}. " + tried_txt + _help_text()
        )
    return extracted


# --------------------------------------------------------------------------------------------
# fairseq preprocessing steps
# --------------------------------------------------------------------------------------------


def filter_train_tags(lines: Iterable[str]) -> list[str]:
    """The grep/sed stage of prepare-iwslt14.sh for ``train.tags.de-en.*``."""
    out = []
    for line in lines:
        if "<url>" in line or "<talkid>" in line or "<keywords>" in line:
            continue
        for tag in ("<title>", "</title>", "<description>", "</description>"):
            line = line.replace(tag, "")
        out.append(line)
    return out


def extract_xml_segments(lines: Iterable[str]) -> list[str]:
    """The grep/sed stage for dev/test XML: ``<seg id`` lines, tags stripped, U+2019 -> ``'``."""
    out = []
    for line in lines:
        if "<seg id" not in line:
            continue
        line = _SEG_OPEN.sub("", line)
        line = _SEG_CLOSE.sub("", line)
        out.append(line.replace("\u2019", "'"))
    return out


@functools.cache
def _tokenizer(lang: str) -> Any:
    from sacremoses import MosesTokenizer

    class _PerlMosesTokenizer(MosesTokenizer):
        """sacremoses plus tokenizer.perl's rule: always split the period off the last word."""

        def handles_nonbreaking_prefixes(self, text: str) -> str:
            tokens = text.split()
            if tokens:
                m = _LAST_WORD_PERIOD.match(tokens[-1])
                if m:
                    tokens[-1] = m.group(1) + " ."
            return super().handles_nonbreaking_prefixes(" ".join(tokens))

    return _PerlMosesTokenizer(lang=lang)


def moses_tokenize(lines: Iterable[str], lang: str) -> list[str]:
    """Moses ``tokenizer.perl -l LANG`` (escaping on); blank lines pass through unchanged."""
    tok = _tokenizer(lang)
    return [
        line if _PERL_BLANK.fullmatch(line) else tok.tokenize(line, escape=True, return_str=True)
        for line in lines
    ]


def lowercase(lines: Iterable[str]) -> list[str]:
    """Moses ``lowercase.perl`` (Perl ``lc``: no context-dependent final sigma)."""
    return [line.replace("\u03a3", "\u03c3").lower() for line in lines]


def clean_corpus(
    src: Sequence[str],
    tgt: Sequence[str],
    ratio: float = CLEAN_RATIO,
    min_len: int = CLEAN_MIN,
    max_len: int = CLEAN_MAX,
    max_word_length: int = 1000,
) -> tuple[list[str], list[str]]:
    """Moses ``clean-corpus-n.perl -ratio R corpus src tgt out MIN MAX`` on two parallel lists."""
    if len(src) != len(tgt):
        raise ValueError(f"parallel corpus sides differ in length: {len(src)} vs {len(tgt)}")
    long_word = re.compile(r"[^\s|]{" + str(max_word_length + 1) + "}")
    factored = bool(src) and ("|" in src[0] or "|" in tgt[0])
    out_src: list[str] = []
    out_tgt: list[str] = []
    for f, e in zip(src, tgt, strict=True):
        if not factored:
            f, e = f.replace("|", ""), e.replace("|", "")
        f = _PERL_WS_RUN.sub(" ", f).removeprefix(" ").removesuffix(" ")
        e = _PERL_WS_RUN.sub(" ", e).removeprefix(" ").removesuffix(" ")
        if not f or not e:
            continue
        fc, ec = len(f.split(" ")), len(e.split(" "))
        if ec > max_len or fc > max_len or ec < min_len or fc < min_len:
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if long_word.search(e) or long_word.search(f):
            continue
        out_src.append(f)
        out_tgt.append(e)
    return out_src, out_tgt


def preprocess_xml(path: str | os.PathLike[str], lang: str) -> list[str]:
    """Tokenised, lowercased segments of one official dev/test XML file (fairseq's tmp/ output)."""
    return lowercase(moses_tokenize(extract_xml_segments(read_lines(path)), lang))


def preprocess_train(train_tags_dir: str | os.PathLike[str]) -> dict[str, dict[str, list[str]]]:
    """Tokenise, clean, lowercase and split ``train.tags.de-en.{de,en}``.

    Returns ``{"train": {"de": [...], "en": [...]}, "valid": {...}}`` where valid is every 23rd
    cleaned line, exactly as fairseq's script.
    """
    d = Path(train_tags_dir)
    tok = {}
    for lang in LANGS:
        lines = filter_train_tags(read_lines(d / f"train.tags.de-en.{lang}"))
        log.info("tokenising %d train lines (%s)", len(lines), lang)
        tok[lang] = moses_tokenize(lines, lang)
    de, en = clean_corpus(tok[SRC_LANG], tok[TGT_LANG])
    de, en = lowercase(de), lowercase(en)
    out: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}}
    for lang, lines in ((SRC_LANG, de), (TGT_LANG, en)):
        out["valid"][lang] = [x for i, x in enumerate(lines, 1) if i % VALID_EVERY == 0]
        out["train"][lang] = [x for i, x in enumerate(lines, 1) if i % VALID_EVERY != 0]
    log.info("cleaned corpus: %d pairs (%d train, %d valid)", len(de),
             len(out["train"][SRC_LANG]), len(out["valid"][SRC_LANG]))
    return out


def learn_bpe(
    lines: Iterable[str], codes_path: str | os.PathLike[str], merges: int = BPE_MERGES
) -> Path:
    """subword-nmt ``learn_bpe.py -s MERGES`` on ``lines``; writes the codes file atomically."""
    from subword_nmt.learn_bpe import learn_bpe as _learn

    codes_path = Path(codes_path)
    codes_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_in = _tmp_path(codes_path.with_name(codes_path.name + ".input"))
    tmp_out = _tmp_path(codes_path)
    try:
        write_lines(tmp_in, lines)
        with open(tmp_in, encoding="utf-8") as fin, open(tmp_out, "w", encoding="utf-8") as fout:
            _learn(fin, fout, merges)
        os.replace(tmp_out, codes_path)
    finally:
        tmp_in.unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)
    return codes_path


@functools.lru_cache(maxsize=4)
def _bpe(codes_path: str, mtime_ns: int) -> Any:
    from subword_nmt.apply_bpe import BPE

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


def moses_detokenize(line: str, lang: str = TGT_LANG) -> str:
    """Moses-detokenise a tokenised line (XML entities unescaped), for detokenised sacreBLEU."""
    return _detokenizer(lang).detokenize(line.split(), unescape=True) if line else ""


@functools.cache
def _detokenizer(lang: str) -> Any:
    from sacremoses import MosesDetokenizer

    return MosesDetokenizer(lang=lang)


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("sacremoses", "subword-nmt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def prepare(
    dataset: str,
    source_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    bpe_codes: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write ``{train,valid,test}.{de,en}`` (BPE'd) and ``manifest.json`` to ``out_dir``.

    ``dataset`` is ``"iwslt14"`` (the paper's data; needs ``train.tags``) or ``"iwslt14-mini"``
    (train = fairseq's valid, valid = dev2010, test = tst2010-2012). BPE codes: ``bpe_codes`` if
    given; else for ``iwslt14-mini`` the source's fairseq ``code`` file; else learned with 10,000
    merges on train.de + train.en of the full training split (written to ``out_dir/code``).
    Returns the manifest (also written last, atomically).
    """
    _check_dataset(dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = inspect_source(source_dir)
    missing = layout.missing(dataset)
    if missing:
        raise DataUnavailableError(
            f"{source_dir} cannot provide dataset {dataset!r}: lacks {', '.join(missing)}. "
            + _help_text()
        )
    assert layout.xml_dir is not None
    inputs: dict[str, str] = {}

    def xml(sets: Sequence[str], lang: str) -> list[str]:
        lines: list[str] = []
        for name in sets:
            p = layout.xml_dir / f"{name}.de-en.{lang}.xml"  # type: ignore[operator]
            inputs[str(p)] = sha256_file(p)
            lines += preprocess_xml(p, lang)
        return lines

    full_train: dict[str, list[str]] | None = None
    tok: dict[str, dict[str, list[str]]] = {}
    origin: dict[str, str] = {}
    if dataset == "iwslt14":
        assert layout.train_tags_dir is not None
        for lang in LANGS:
            p = layout.train_tags_dir / f"train.tags.de-en.{lang}"
            inputs[str(p)] = sha256_file(p)
        parts = preprocess_train(layout.train_tags_dir)
        full_train = parts["train"]
        tok["train"], tok["valid"] = parts["train"], parts["valid"]
        tok["test"] = {lang: xml(FULL_TEST_SETS, lang) for lang in LANGS}
        origin = {
            "train": "train.tags.de-en cleaned, lines with NR%23!=0 (fairseq train)",
            "valid": "train.tags.de-en cleaned, lines with NR%23==0 (fairseq valid)",
            "test": "+".join(FULL_TEST_SETS) + " (fairseq test)",
        }
    else:
        if layout.tokenized_dir is not None:
            tok["train"] = {}
            for lang in LANGS:
                p = layout.tokenized_dir / f"valid.{lang}"
                inputs[str(p)] = sha256_file(p)
                tok["train"][lang] = read_lines(p)
            origin["train"] = "fairseq valid split, read from tokenized/valid.{de,en}"
        else:
            assert layout.train_tags_dir is not None
            for lang in LANGS:
                p = layout.train_tags_dir / f"train.tags.de-en.{lang}"
                inputs[str(p)] = sha256_file(p)
            parts = preprocess_train(layout.train_tags_dir)
            full_train = parts["train"]
            tok["train"] = parts["valid"]
            origin["train"] = "fairseq valid split, recomputed from train.tags.de-en"
        tok["valid"] = {lang: xml(MINI_VALID_SETS, lang) for lang in LANGS}
        tok["test"] = {lang: xml(MINI_TEST_SETS, lang) for lang in LANGS}
        origin["valid"] = "+".join(MINI_VALID_SETS)
        origin["test"] = "+".join(MINI_TEST_SETS)

    for split in SPLITS:
        n = {lang: len(tok[split][lang]) for lang in LANGS}
        if n[SRC_LANG] != n[TGT_LANG]:
            raise ValueError(f"{dataset} {split}: de/en line counts differ: {n}")

    if bpe_codes is not None:
        codes, bpe_how = Path(bpe_codes), "given"
    elif dataset == "iwslt14-mini" and layout.bpe_codes is not None:
        codes, bpe_how = layout.bpe_codes, "fairseq code file from source"
    else:
        corpus = full_train if full_train is not None else tok["train"]
        how = "full training split" if full_train is not None else "mini training split"
        log.info("learning %d BPE merges on %s", BPE_MERGES, how)
        codes = learn_bpe(corpus[SRC_LANG] + corpus[TGT_LANG], out / "code", BPE_MERGES)
        bpe_how = f"learned ({BPE_MERGES} merges on train.de+train.en of the {how})"
    codes_sha = sha256_file(codes)

    files: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        for lang in LANGS:
            lines = apply_bpe(tok[split][lang], codes)
            path = out / f"{split}.{lang}"
            write_lines(path, lines)
            files[path.name] = {"lines": len(lines), "sha256": sha256_file(path)}

    manifest: dict[str, Any] = {
        "dataset": dataset,
        "description": (
            "IWSLT'14 De-En as prepared by fairseq's prepare-iwslt14.sh"
            if dataset == "iwslt14"
            else "iwslt14-mini stand-in: train = fairseq's IWSLT'14 valid split (7,283 real "
            "training-corpus pairs), valid = dev2010, test = tst2010+tst2011+tst2012. "
            "NOT the paper's 160k-pair training set."
        ),
        "languages": {"src": SRC_LANG, "tgt": TGT_LANG},
        "source": {"path": str(Path(source_dir).resolve()), "layout": layout.kind,
                   "inputs_sha256": inputs},
        "splits": {
            split: {"pairs": len(tok[split][SRC_LANG]), "origin": origin[split]}
            for split in SPLITS
        },
        "preprocessing": (
            "fairseq prepare-iwslt14.sh: tag stripping, Moses tokenizer.perl via sacremoses "
            "(escape on, last-word period split), clean-corpus-n ratio 1.5 length 1-175 (train "
            "only), lowercase.perl, subword-nmt apply_bpe (@@ separator)"
        ),
        "bpe": {
            "codes": str(codes.resolve()),
            "sha256": codes_sha,
            "how": bpe_how,
            "matches_fairseq_code": codes_sha == KNOWN_FAIRSEQ_CODE_SHA256,
        },
        "files": files,
        "tools": _tool_versions(),
    }
    _write_json(out / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# dictionary / binarisation
# --------------------------------------------------------------------------------------------


class Dictionary:
    """Joint fairseq-style vocabulary: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, words."""

    BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
    SPECIALS = (BOS, PAD, EOS, UNK)

    bos_index, pad_index, eos_index, unk_index = 0, 1, 2, 3

    def __init__(self) -> None:
        self.symbols: list[str] = list(self.SPECIALS)
        self.counts: list[int] = [0] * len(self.SPECIALS)
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, sym: str) -> bool:
        return sym in self._index

    def _add(self, sym: str, count: int) -> None:
        if sym in self._index:
            self.counts[self._index[sym]] += count
            return
        self._index[sym] = len(self.symbols)
        self.symbols.append(sym)
        self.counts.append(count)

    @classmethod
    def build(
        cls, lines: Iterable[str], threshold: int = 0, padding_factor: int = 8
    ) -> Dictionary:
        """Count whitespace tokens; keep those with count >= threshold, most frequent first."""
        counter: Counter[str] = Counter()
        for line in lines:
            counter.update(line.split())
        d = cls()
        for sym in cls.SPECIALS:
            counter.pop(sym, None)
        for sym, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            if count >= threshold:
                d._add(sym, count)
        i = 0
        while padding_factor > 1 and len(d) % padding_factor != 0:
            d._add(f"madeupword{i:04d}", 0)
            i += 1
        return d

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write fairseq's ``dict.txt`` format (``symbol count``, specials omitted)."""
        n = len(self.SPECIALS)
        write_lines(path, (f"{s} {c}" for s, c in zip(self.symbols[n:], self.counts[n:], strict=True)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dictionary:
        """Read a ``dict.txt`` written by :meth:`save` (or by fairseq)."""
        d = cls()
        for line in read_lines(path):
            sym, count = line.rsplit(" ", 1)
            d._add(sym, int(count))
        return d

    def index(self, sym: str) -> int:
        """Index of ``sym`` (``unk_index`` if unknown)."""
        return self._index.get(sym, self.unk_index)

    def encode_line(self, line: str) -> list[int]:
        """Token ids of a whitespace-tokenised line (no EOS)."""
        get, unk = self._index.get, self.unk_index
        return [get(tok, unk) for tok in line.split()]

    def string(self, ids: Iterable[int], bpe: bool = False) -> str:
        """Decode ids, stopping at EOS and skipping BOS/PAD; ``bpe=True`` also removes ``@@ ``."""
        toks = []
        for i in ids:
            i = int(i)
            if i == self.eos_index:
                break
            if i in (self.bos_index, self.pad_index):
                continue
            toks.append(self.symbols[i])
        s = " ".join(toks)
        return detok_bpe(s) if bpe else s


def _pack(seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    offsets = torch.zeros(len(seqs) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    flat = torch.tensor([t for s in seqs for t in s], dtype=torch.int32)
    return flat, offsets


def binarize(
    out_dir: str | os.PathLike[str],
    *,
    threshold: int = 0,
    padding_factor: int = 8,
    splits: Sequence[str] = SPLITS,
) -> dict[str, Any]:
    """Build ``dict.txt`` from train.{de,en} and write ``{split}.pt`` for each split.

    Each ``.pt`` is a dict of ``src_tokens``/``tgt_tokens`` (flat int32, no EOS) and
    ``src_offsets``/``tgt_offsets`` (int64, length n+1) plus metadata; load it with
    :class:`TranslationPairs`. Writes ``binarize.json`` (summary, returned).
    """
    d_out = Path(out_dir)
    text = {
        (split, lang): read_lines(d_out / f"{split}.{lang}") for split in splits for lang in LANGS
    }
    if "train" not in splits:
        text.update({("train", lang): read_lines(d_out / f"train.{lang}") for lang in LANGS})
    vocab = Dictionary.build(
        text[("train", SRC_LANG)] + text[("train", TGT_LANG)],
        threshold=threshold,
        padding_factor=padding_factor,
    )
    vocab.save(d_out / "dict.txt")
    dict_sha = sha256_file(d_out / "dict.txt")
    summary: dict[str, Any] = {"format": BIN_FORMAT, "dict_size": len(vocab),
                               "dict_sha256": dict_sha, "threshold": threshold,
                               "padding_factor": padding_factor, "splits": {}}
    for split in splits:
        obj: dict[str, Any] = {
            "format": BIN_FORMAT, "split": split, "src_lang": SRC_LANG, "tgt_lang": TGT_LANG,
            "bos": vocab.bos_index, "pad": vocab.pad_index, "eos": vocab.eos_index,
            "unk": vocab.unk_index, "dict_size": len(vocab), "dict_sha256": dict_sha,
        }
        info: dict[str, Any] = {}
        for side, lang in (("src", SRC_LANG), ("tgt", TGT_LANG)):
            ids = [vocab.encode_line(line) for line in text[(split, lang)]]
            flat, offsets = _pack(ids)
            obj[f"{side}_tokens"], obj[f"{side}_offsets"] = flat, offsets
            ntok = int(flat.numel())
            nunk = int((flat == vocab.unk_index).sum())
            info[lang] = {"sentences": len(ids), "tokens": ntok, "unk": nunk,
                          "unk_rate": nunk / ntok if ntok else 0.0}
        path = d_out / f"{split}.pt"
        tmp = _tmp_path(path)
        try:
            import torch
            torch.save(obj, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        summary["splits"][split] = info
    _write_json(d_out / "binarize.json", summary)
    return summary


class TranslationPairs:
    """A binarised split: ``ds[i]`` is ``(src_ids, tgt_ids)`` (int64 tensors, EOS appended)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import torch
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if obj.get("format") != BIN_FORMAT:
            raise ValueError(f"{path}: not a {BIN_FORMAT} file")
        self.meta = {k: v for k, v in obj.items() if not isinstance(v, torch.Tensor)}
        self.eos: int = int(obj["eos"])
        self.pad: int = int(obj["pad"])
        self._src, self._src_off = obj["src_tokens"], obj["src_offsets"]
        self._tgt, self._tgt_off = obj["tgt_tokens"], obj["tgt_offsets"]
        if self._src_off.numel() != self._tgt_off.numel():
            raise ValueError(f"{path}: src/tgt sentence counts differ")
        #: lengths including the appended EOS
        self.src_sizes: torch.Tensor = self._src_off[1:] - self._src_off[:-1] + 1
        self.tgt_sizes: torch.Tensor = self._tgt_off[1:] - self._tgt_off[:-1] + 1

    def __len__(self) -> int:
        return int(self._src_off.numel()) - 1

    def _get(self, flat: torch.Tensor, off: torch.Tensor, i: int) -> torch.Tensor:
        a, b = int(off[i]), int(off[i + 1])
        import torch
        out = torch.empty(b - a + 1, dtype=torch.int64)
        out[:-1] = flat[a:b]
        out[-1] = self.eos
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, i = len(self), int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._get(self._src, self._src_off, i), self._get(self._tgt, self._tgt_off, i)


def load_split(out_dir: str | os.PathLike[str], split: str) -> TranslationPairs:
    """Load ``out_dir/{split}.pt`` written by :func:`binarize`."""
    return TranslationPairs(Path(out_dir) / f"{split}.pt")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``prepare``, ``binarize`` and ``locate`` sub-commands."""
    ap = argparse.ArgumentParser(
        prog="python -m sigprop.data.iwslt", description=(__doc__ or "").split("\n")[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add_locate_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=DEFAULT_URL, help="download URL (fairseq's de-en.tgz)")
        p.add_argument("--sha256", default=None, help="expected sha256 of the archive")
        p.add_argument("--cache-dir", default="data/cache/iwslt14", help="download/extract here")
        p.add_argument("--timeout", type=float, default=60.0, help="network timeout (s)")

    p = sub.add_parser("prepare", help="preprocess + BPE into --out")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--source", default=None,
                   help=f"local raw-data dir (config {CONFIG_KEY}); "
                   f"else ${ENV_VAR}, cache, download")
    p.add_argument("--out", required=True)
    p.add_argument("--bpe-codes", default=None)
    add_locate_args(p)

    p = sub.add_parser("binarize", help="build dict.txt and {split}.pt in --dir")
    p.add_argument("--dir", required=True)
    p.add_argument("--threshold", type=int, default=0)
    p.add_argument("--padding-factor", type=int, default=8)

    p = sub.add_parser("locate", help="print the raw-data directory that would be used")
    p.add_argument("--dataset", choices=DATASETS, default="iwslt14")
    p.add_argument("--source", default=None)
    add_locate_args(p)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "binarize":
            res = binarize(args.dir, threshold=args.threshold, padding_factor=args.padding_factor)
            print(json.dumps(res, indent=2))
            return 0
        src = locate_source(args.source, args.url, args.sha256, args.cache_dir,
                            dataset=args.dataset, timeout=args.timeout)
        if args.cmd == "locate":
            print(src)
            return 0
        res = prepare(args.dataset, src, args.out, args.bpe_codes)
        print(json.dumps({k: res[k] for k in ("dataset", "splits", "bpe")}, indent=2))
        return 0
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
