"""fairseq's ``examples/translation/prepare-iwslt14.sh``, step for step, and :func:`prepare`, which runs it.

* train (``train.tags.de-en.{de,en}``): drop lines containing ``<url>``, ``<talkid>`` or
  ``<keywords>``; delete the ``<title>``/``</title>``/``<description>``/``</description>`` tags;
  Moses ``tokenizer.perl -l LANG`` (XML escaping on); ``clean-corpus-n.perl -ratio 1.5 ... 1 175``;
  ``lowercase.perl``. ``valid`` = every 23rd line (1-based ``NR % 23 == 0``), ``train`` = the rest.
* dev/test (``IWSLT14.TED*.xml``): keep lines containing ``<seg id``, strip the ``<seg>`` tags,
  map U+2019 to ``'``, Moses-tokenise, lowercase. ``test`` = dev2010 + TEDX.dev2012 + tst2010 +
  tst2011 + tst2012 (in that order).
* joint BPE: subword-nmt ``learn_bpe -s 10000`` on ``train.de`` + ``train.en``; ``apply_bpe``
  to all splits.

The Moses steps are :mod:`sigprop.data.iwslt.moses`, the BPE steps :mod:`sigprop.data.iwslt.bpe`; the tag
filters, the split and the datasets' assembly are here. Two datasets can be prepared:

* ``iwslt14``: the paper's data (needs the raw ``train.tags`` files from fairseq's ``de-en.tgz``).
* ``iwslt14-mini``: local stand-in (docs/translation.md): train on fairseq's ``valid`` split (7,283 real
  training-corpus pairs), validate on dev2010, test on tst2010 + tst2011 + tst2012.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sigprop.data.iwslt.bpe import apply_bpe, check_bpe_codes, learn_bpe
from sigprop.data.iwslt.corpus import (
    BPE_MERGES,
    FULL_TEST_SETS,
    KNOWN_FAIRSEQ_CODE_SHA256,
    LANGS,
    MINI_TEST_SETS,
    MINI_VALID_SETS,
    SPLITS,
    SRC_LANG,
    TGT_LANG,
    VALID_EVERY,
    check_dataset,
)
from sigprop.data.iwslt.fetch import DataUnavailableError, help_text, inspect_source
from sigprop.data.iwslt.moses import PERL_WS, clean_corpus, lowercase, moses_tokenize
from sigprop.data.iwslt.textio import read_lines, sha256_file, write_json, write_lines
from sigprop.io import BadInput, versions

log = logging.getLogger(__name__)

_SEG_OPEN = re.compile(r'<seg id="[0-9]*">' + PERL_WS + "*")
_SEG_CLOSE = re.compile(PERL_WS + "*</seg>" + PERL_WS + "*")


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
    check_dataset(dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = inspect_source(source_dir)
    missing = layout.missing(dataset)
    if missing:
        raise DataUnavailableError(
            f"{source_dir} cannot provide dataset {dataset!r}: lacks {', '.join(missing)}. "
            + help_text()
        )
    assert layout.xml_dir is not None
    inputs: dict[str, str] = {}
    read_from: dict[str, list[str]] = {split: [] for split in SPLITS}  # the raw files of each split

    def xml(sets: Sequence[str], lang: str, split: str) -> list[str]:
        lines: list[str] = []
        for name in sets:
            p = layout.xml_dir / f"{name}.de-en.{lang}.xml"  # type: ignore[operator]
            inputs[str(p)] = sha256_file(p)
            read_from[split].append(str(p))
            lines += preprocess_xml(p, lang)
        return lines

    def train_tags(*splits: str) -> dict[str, dict[str, list[str]]]:
        assert layout.train_tags_dir is not None
        for lang in LANGS:
            p = layout.train_tags_dir / f"train.tags.de-en.{lang}"
            inputs[str(p)] = sha256_file(p)
            for split in splits:
                read_from[split].append(str(p))
        return preprocess_train(layout.train_tags_dir)

    full_train: dict[str, list[str]] | None = None
    tok: dict[str, dict[str, list[str]]] = {}
    origin: dict[str, str] = {}
    if dataset == "iwslt14":
        parts = train_tags("train", "valid")
        full_train = parts["train"]
        tok["train"], tok["valid"] = parts["train"], parts["valid"]
        tok["test"] = {lang: xml(FULL_TEST_SETS, lang, "test") for lang in LANGS}
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
                read_from["train"].append(str(p))
                tok["train"][lang] = read_lines(p)
            origin["train"] = "fairseq valid split, read from tokenized/valid.{de,en}"
        else:
            parts = train_tags("train")
            full_train = parts["train"]
            tok["train"] = parts["valid"]
            origin["train"] = "fairseq valid split, recomputed from train.tags.de-en"
        tok["valid"] = {lang: xml(MINI_VALID_SETS, lang, "valid") for lang in LANGS}
        tok["test"] = {lang: xml(MINI_TEST_SETS, lang, "test") for lang in LANGS}
        origin["valid"] = "+".join(MINI_VALID_SETS)
        origin["test"] = "+".join(MINI_TEST_SETS)

    for split in SPLITS:
        n = {lang: len(tok[split][lang]) for lang in LANGS}
        if n[SRC_LANG] != n[TGT_LANG]:
            raise ValueError(f"{dataset} {split}: de/en line counts differ: {n}")
        if n[SRC_LANG] == 0:  # training on it would wait forever for a batch
            raise BadInput(
                f"{dataset} {split}: no sentence left in {', '.join(read_from[split])} after fairseq's filters "
                "(tag lines dropped; for train, 1 to 175 tokens and length ratio <= 1.5): the file is empty or "
                "damaged; restore it (e.g. extract fairseq's de-en.tgz again)"
            )

    if bpe_codes is not None:
        codes, bpe_how = Path(bpe_codes), "given"
        check_bpe_codes(codes)
    elif dataset == "iwslt14-mini" and layout.bpe_codes is not None:
        codes, bpe_how = layout.bpe_codes, "fairseq code file from source"
        check_bpe_codes(codes, merges=BPE_MERGES)
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
        "tools": versions(("sacremoses", "subword-nmt")),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
