"""Tests for the sigprop.data.iwslt package: fairseq-identical preprocessing, BPE, binarisation, errors.

Bad files are refused with a message naming the file (and line), never a hang, a bare traceback or a silent
deletion: an empty training split; a non-UTF-8 byte; a truncated BPE ``code`` file; an archive with unsafe
members (``data-status`` reports it as a status); a configured sha256 is verified, also for an earlier
download; a ``data.cache_dir`` holding the user's own ``de-en/`` is never deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from sigprop.data.iwslt import corpus
from sigprop.data.iwslt.binarize import Dictionary, TranslationPairs, binarize, load_split
from sigprop.data.iwslt.bpe import apply_bpe, detok_bpe
from sigprop.data.iwslt.corpus import CONFIG_KEY, ENV_VAR
from sigprop.data.iwslt.fetch import ChecksumError, DataUnavailableError, download, locate_source
from sigprop.data.iwslt.moses import clean_corpus, lowercase, moses_tokenize
from sigprop.data.iwslt.preprocess import extract_xml_segments, filter_train_tags, prepare, preprocess_xml
from sigprop.data.iwslt.status import locate
from sigprop.data.iwslt.textio import read_lines, sha256_file, write_lines
from sigprop.io import versions

_BESIDE_REPO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "iwslt14"
# the official dev/test data: $SIGPROP_IWSLT_DIR (as the workflow reads it), else ../shared/data/iwslt14
SHARED = Path(os.environ.get("SIGPROP_IWSLT_DIR") or _BESIDE_REPO).resolve()
needs_shared = pytest.mark.skipif(
    not (SHARED / "orig").is_dir(),
    reason=f"IWSLT'14 dev/test data not found at {SHARED} (set SIGPROP_IWSLT_DIR, or place it in ../shared)",
)
UNREACHABLE = "http://127.0.0.1:9/x"  # discard port: connection refused, never the internet


def _match_rate(ours: list[str], ref: list[str]) -> tuple[float, str]:
    """Fraction of identical lines and a description of the first difference."""
    assert len(ours) == len(ref), f"line counts differ: ours {len(ours)} vs fairseq {len(ref)}"
    same = [a == b for a, b in zip(ours, ref, strict=True)]
    first = next((i for i, s in enumerate(same) if not s), None)
    diff = "" if first is None else f"line {first + 1}:\n ours: {ours[first]}\n ref:  {ref[first]}"
    return sum(same) / len(ref), diff


@pytest.fixture(scope="module")
def our_tokenised() -> dict[tuple[str, str], list[str]]:
    """Our preprocessing of every official dev/test XML file, keyed by (set name, lang)."""
    return {
        (name, lang): preprocess_xml(SHARED / "orig" / f"{name}.de-en.{lang}.xml", lang)
        for name in corpus.FULL_TEST_SETS
        for lang in corpus.LANGS
    }


# ---------------------------------------------------------------- (a) fairseq reproduction


@needs_shared
@pytest.mark.parametrize("lang", corpus.LANGS)
@pytest.mark.parametrize("name", corpus.FULL_TEST_SETS)
def test_xml_preprocessing_reproduces_fairseq_tokenised(our_tokenised, name, lang):
    ref = read_lines(SHARED / "tokenized" / f"{name}.de-en.{lang}")
    rate, diff = _match_rate(our_tokenised[(name, lang)], ref)
    # Measured: 1.0 (byte-identical) for all ten files.
    assert rate == 1.0, f"{name}.{lang}: match rate {rate:.4f}, first {diff}"


@needs_shared
@pytest.mark.parametrize("lang", corpus.LANGS)
def test_bpe_of_our_test_set_reproduces_fairseq(our_tokenised, lang):
    tokenised = [x for name in corpus.FULL_TEST_SETS for x in our_tokenised[(name, lang)]]
    ours = apply_bpe(tokenised, SHARED / "bpe10k" / "code")
    rate, diff = _match_rate(ours, read_lines(SHARED / "bpe10k" / f"test.{lang}"))
    assert rate == 1.0, f"test.{lang}: BPE match rate {rate:.4f}, first {diff}"
    assert [detok_bpe(x) for x in ours] == tokenised


@needs_shared
def test_prepare_mini_end_to_end(tmp_path):
    out = tmp_path / "mini"
    man = prepare("iwslt14-mini", SHARED, out)
    fairseq_test = {lang: read_lines(SHARED / "bpe10k" / f"test.{lang}") for lang in corpus.LANGS}
    n_dev2010, n_tedx = 887, 1165
    for lang in corpus.LANGS:
        # train = fairseq's valid (BPE'd) exactly; valid = dev2010; test = tst2010-2012
        fairseq_valid = (SHARED / "bpe10k" / f"valid.{lang}").read_bytes()
        assert (out / f"train.{lang}").read_bytes() == fairseq_valid
        assert read_lines(out / f"valid.{lang}") == fairseq_test[lang][:n_dev2010]
        assert read_lines(out / f"test.{lang}") == fairseq_test[lang][n_dev2010 + n_tedx:]
    assert {k: v["pairs"] for k, v in man["splits"].items()} == {
        "train": 7283, "valid": 887, "test": 1565 + 1433 + 1700}
    assert man["bpe"]["matches_fairseq_code"] is True
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["files"]["train.de"]["sha256"] == sha256_file(out / "train.de")
    assert on_disk["dataset"] == "iwslt14-mini"
    assert set(on_disk["tools"]) == {"python", "sacremoses", "subword-nmt"}
    assert not list(out.glob(".*")), "temporary files left behind"


@needs_shared
def test_locate_source_prefers_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    got = locate_source(SHARED, UNREACHABLE, None, tmp_path, dataset="iwslt14-mini", timeout=0.5)
    assert got == SHARED
    monkeypatch.setenv(ENV_VAR, str(SHARED))
    got = locate_source(None, UNREACHABLE, None, tmp_path, dataset="iwslt14-mini", timeout=0.5)
    assert got == SHARED


# ---------------------------------------------------------------- preprocessing units


def test_tokeniser_splits_last_period_like_tokenizer_perl():
    assert moses_tokenize(["I moved to the U.S."], "en") == ["I moved to the U.S ."]
    assert moses_tokenize(["Drei aus 10."], "de") == ["Drei aus 10 ."]
    assert moses_tokenize(["Mr. Smith isn't here."], "en") == ["Mr. Smith isn &apos;t here ."]
    assert moses_tokenize(["   "], "en") == ["   "]  # blank lines pass through
    assert lowercase(["ΟΔΟΣ İ"]) == ["οδοσ i\u0307"]  # Perl lc: no final-sigma rule


def test_tag_filters():
    raw = ["<url>http://x</url>", "<talkid>1</talkid>", "<keywords>a</keywords>",
           "<title>T</title>", "<description>D</description>", "Text."]
    assert filter_train_tags(raw) == ["T", "D", "Text."]
    xml = ['<doc docid="1">', '<seg id="12"> Er sagt’s. </seg>', "</doc>"]
    assert extract_xml_segments(xml) == ["Er sagt's."]


def test_clean_corpus_rules():
    src = ["a b c", "a", "x  y ", "", "w " * 176, "p q"]
    tgt = ["a b", "a b c", "x y", "z", "w " * 176, "p|q r"]
    # ratio 3/2 kept; 3/1 > 1.5 dropped; whitespace normalised; empty and >175 words dropped;
    # pipes removed
    assert clean_corpus(src, tgt) == (["a b c", "x y", "p q"], ["a b", "x y", "pq r"])


def test_prepare_full_from_fake_raw_release(tmp_path):
    """iwslt14 path (train.tags -> clean -> every 23rd line is valid -> learned BPE), toy data."""
    raw = tmp_path / "de-en"
    raw.mkdir()
    words = {"de": "das haus ist sehr groß und alt", "en": "the house is very big and old"}
    for lang in corpus.LANGS:
        lines = ["<url>http://ted</url>", "<talkid>7</talkid>", "<title>Titel</title>"]
        lines += [f"{words[lang]} {i}." for i in range(1, 50)]
        (raw / f"train.tags.de-en.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name in corpus.FULL_TEST_SETS:
            segs = "".join(f'<seg id="{i}"> {words[lang].capitalize()} {name[-4:]}. </seg>\n'
                           for i in range(1, 4))
            (raw / f"{name}.de-en.{lang}.xml").write_text(f"<mteval>\n{segs}</mteval>\n",
                                                        encoding="utf-8")
    out = tmp_path / "full"
    man = prepare("iwslt14", raw, out)
    # 50 cleaned pairs (title line + 49 sentences): lines 23 and 46 -> valid
    assert man["splits"]["valid"]["pairs"] == 2 and man["splits"]["train"]["pairs"] == 48
    assert man["splits"]["test"]["pairs"] == 15
    assert (out / "code").is_file() and man["bpe"]["how"].startswith("learned")
    valid_en = [detok_bpe(x) for x in read_lines(out / "valid.en")]
    assert valid_en == ["the house is very big and old 22 .", "the house is very big and old 45 ."]
    assert read_lines(out / "train.de")[0].replace("@@ ", "") == "titel"


# ---------------------------------------------------------------- (b) binarisation round trip


def test_binarize_roundtrip(tmp_path):
    train = {"de": ["das haus@@ chen", "ein hund ."], "en": ["the little house", "a dog ."]}
    other = {"de": ["das boot", ""], "en": ["the boat", "."]}
    for lang in corpus.LANGS:
        write_lines(tmp_path / f"train.{lang}", train[lang])
        write_lines(tmp_path / f"valid.{lang}", other[lang])
        write_lines(tmp_path / f"test.{lang}", other[lang])
    summary = binarize(tmp_path)
    vocab = Dictionary.load(tmp_path / "dict.txt")
    assert len(vocab) == summary["dict_size"] and len(vocab) % 8 == 0
    assert (vocab.bos_index, vocab.pad_index, vocab.eos_index, vocab.unk_index) == (0, 1, 2, 3)
    assert vocab.symbols[4] == "."  # most frequent word first (count 2)

    raw = torch.load(tmp_path / "train.pt", weights_only=True)
    assert raw["src_tokens"].dtype == torch.int32 and raw["src_offsets"].dtype == torch.int64

    ds = TranslationPairs(tmp_path / "train.pt")
    assert len(ds) == 2
    for i in range(2):
        src, tgt = ds[i]
        assert src.dtype == torch.int64 and int(src[-1]) == vocab.eos_index == int(tgt[-1])
        assert vocab.string(src) == train["de"][i] and vocab.string(tgt) == train["en"][i]
        assert int(ds.src_sizes[i]) == len(src)
    assert vocab.string(ds[0][0], bpe=True) == "das hauschen"

    valid = load_split(tmp_path, "valid")
    src, tgt = valid[0]
    assert src.tolist() == [vocab.index("das"), vocab.unk_index, vocab.eos_index]  # "boot" OOV
    assert valid[1][0].tolist() == [vocab.eos_index]  # empty line -> just EOS
    assert summary["splits"]["valid"]["de"]["unk"] == 1


def test_detok_bpe():
    assert detok_bpe("ein haus@@ chen@@ . @@") == "ein hauschen."
    assert detok_bpe("no bpe here") == "no bpe here"


# ---------------------------------------------------------------- (c) data unavailable


def test_unavailable_error_names_config_key_and_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DataUnavailableError) as err:
        locate_source(None, UNREACHABLE, None, tmp_path / "cache", timeout=0.5)
    msg = str(err.value)
    assert CONFIG_KEY in msg and ENV_VAR in msg and UNREACHABLE in msg

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError) as err:
        locate_source(empty, UNREACHABLE, None, tmp_path / "cache", timeout=0.5)
    assert CONFIG_KEY in str(err.value) and ENV_VAR in str(err.value)
    assert str(empty) in str(err.value)


def test_download_verifies_checksum_and_extracts(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in [("de-en/train.tags.de-en.de", "Hallo.\n"),
                           ("de-en/train.tags.de-en.en", "Hello.\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "src" / "de-en.tgz"
    archive.parent.mkdir()
    archive.write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()

    got = download(archive.as_uri(), digest, tmp_path / "cache")
    assert got == tmp_path / "cache" / "de-en"
    assert (got / "train.tags.de-en.en").read_text() == "Hello.\n"

    with pytest.raises(ChecksumError):
        download(archive.as_uri(), "0" * 64, tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "de-en.tgz").exists()


def test_binarized_files_do_not_depend_on_the_temporary_names(tmp_path):
    """Same text, same bytes: the .pt is written through a file object, so no temporary name gets into it."""
    for d in ("a", "b"):
        for split in corpus.SPLITS:
            for lang in corpus.LANGS:
                write_lines(tmp_path / d / f"{split}.{lang}", ["das haus@@ chen", "ein hund ."])
        binarize(tmp_path / d)
    for name in ("dict.txt", "train.pt", "valid.pt", "test.pt", "binarize.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not list((tmp_path / "a").glob(".*")), "temporary files left behind"


def test_package_imports_no_step():
    """Importing sigprop.data.iwslt (as every submodule import does) loads none of the steps."""
    import subprocess
    import sys

    code = "import sys, sigprop.data.iwslt; print(sorted(m for m in sys.modules if m.startswith('sigprop')))"
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(src)}).stdout
    assert json.loads(out.replace("'", '"')) == ["sigprop", "sigprop.data", "sigprop.data.iwslt"]


def test_versions_name_python_and_each_distribution():
    import platform

    import numpy

    got = versions(("numpy", "no-such-distribution-sigprop"))
    assert got == {"python": platform.python_version(), "numpy": numpy.__version__,
                   "no-such-distribution-sigprop": "not installed"}


# --------------------------------------- bad input: empty splits, corrupt text, unsafe archives, hashes, the cache


SHARED_CODE = Path("/work/shared/data/iwslt14/bpe10k/code")


WORDS = {"de": "das haus ist sehr groß und alt", "en": "the house is very big and old"}


def _fake_release(raw: Path, train_lines: int = 49) -> Path:
    """fairseq's de-en/ folder in miniature: train.tags with ``train_lines`` sentences, five dev/test XMLs."""
    raw.mkdir(parents=True)
    for lang in corpus.LANGS:
        lines = ["<url>http://ted</url>", "<talkid>7</talkid>"]
        lines += [f"{WORDS[lang]} {i}." for i in range(1, train_lines + 1)]
        (raw / f"train.tags.de-en.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name in corpus.FULL_TEST_SETS:
            segs = "".join(f'<seg id="{i}"> {WORDS[lang]} {name[-4:]}. </seg>\n' for i in range(1, 4))
            (raw / f"{name}.de-en.{lang}.xml").write_text(f"<mteval>\n{segs}</mteval>\n", encoding="utf-8")
    return raw


def _tgz(path: Path, members: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def test_empty_training_split_is_refused_at_preparation_naming_the_file(tmp_path):
    raw = _fake_release(tmp_path / "de-en", train_lines=0)  # only tag lines: nothing left after the filters
    with pytest.raises(ValueError, match=r"train\.tags\.de-en\.de") as err:
        prepare("iwslt14", raw, tmp_path / "out")
    assert "train" in str(err.value) and "no sentence" in str(err.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_non_utf8_byte_names_the_file_and_line(tmp_path):
    path = tmp_path / "train.tags.de-en.de"
    path.write_bytes(b"gut\nauch gut\nkaputt \xff hier\n")
    with pytest.raises(ValueError, match=rf"{path}.*line 3") as err:
        read_lines(path)
    assert "UTF-8" in str(err.value)


def test_truncated_bpe_code_file_is_refused_naming_file_and_line(tmp_path):
    from sigprop.data.iwslt.bpe import check_bpe_codes

    whole = SHARED_CODE.read_bytes() if SHARED_CODE.is_file() else None
    if whole is None:
        pytest.skip(f"{SHARED_CODE} not here")
    check_bpe_codes(SHARED_CODE, merges=corpus.BPE_MERGES)  # the real file passes
    cut = tmp_path / "code"
    cut.write_bytes(whole[: len(whole) // 2 + 3])  # ends mid-line, half the merges
    with pytest.raises(ValueError, match=rf"{cut}") as err:
        check_bpe_codes(cut, merges=corpus.BPE_MERGES)
    assert "truncated" in str(err.value)
    with pytest.raises(ValueError, match=rf"{cut}"):
        apply_bpe(["das haus"], cut)
    bad = tmp_path / "code2"  # a line that is not a merge (two symbols)
    bad.write_text("#version: 0.2\na b\nc d e\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{bad}.*line 3"):
        check_bpe_codes(bad)


def test_truncated_code_file_of_a_source_stops_preparation(tmp_path):
    if not SHARED_CODE.is_file():
        pytest.skip(f"{SHARED_CODE} not here")
    raw = _fake_release(tmp_path / "de-en")
    codes = tmp_path / "code"
    codes.write_bytes(SHARED_CODE.read_bytes()[:5000])
    with pytest.raises(ValueError, match=rf"{codes}"):
        prepare("iwslt14", raw, tmp_path / "out", bpe_codes=codes)


def test_unsafe_archive_is_a_data_status_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    archive = _tgz(tmp_path / "src" / "de-en.tgz", {"de-en/x.txt": b"x", "../escape.txt": b"boom"})
    with pytest.raises(DataUnavailableError, match=r"de-en\.tgz.*escape\.txt"):
        download(archive.as_uri(), None, tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()
    status = locate("iwslt14", None, archive.as_uri(), None, str(tmp_path / "cache2"), timeout=5)
    assert status["available"] is False and "escape.txt" in status["message"]
    out = tmp_path / "status.json"  # and the command itself succeeds, writing that status
    proc = subprocess.run(
        [sys.executable, "-m", "sigprop", "data-status", "--dataset", "iwslt14", "--out", str(out),
         "--url", archive.as_uri(), "--cache-dir", str(tmp_path / "cache3")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["available"] is False


def test_configured_sha256_is_verified_also_for_an_earlier_download(tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    raw = _fake_release(tmp_path / "build" / "de-en")
    members = {f"de-en/{p.name}": p.read_bytes() for p in sorted(raw.iterdir())}
    archive = _tgz(tmp_path / "src" / "de-en.tgz", members)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    assert locate_source(None, archive.as_uri(), digest, cache) == cache / "de-en"  # verified, extracted
    assert locate_source(None, archive.as_uri(), digest, cache) == cache / "de-en"  # the earlier download
    # the configured hash changes (or the archive is not the one pinned): the earlier download is not trusted
    with pytest.raises(ChecksumError, match="sha256"):
        locate_source(None, archive.as_uri(), "1" * 64, cache)
    # an archive kept in the cache that does not match is not trusted either
    other = _tgz(tmp_path / "src2" / "de-en.tgz", {"de-en/other": b"x"})
    (cache / "de-en.tgz").write_bytes(other.read_bytes())
    with pytest.raises(ChecksumError):
        download(archive.as_uri(), "2" * 64, cache)


def test_cache_dir_holding_the_users_de_en_folder_is_never_deleted(tmp_path):
    archive = _tgz(tmp_path / "src" / "de-en.tgz", {"de-en/train.tags.de-en.de": b"Hallo.\n"})
    cache = tmp_path / "mine"
    (cache / "de-en").mkdir(parents=True)
    (cache / "de-en" / "thesis.tex").write_text("years of work")
    with pytest.raises(DataUnavailableError, match=r"de-en.*not made by") as err:
        download(archive.as_uri(), None, cache)
    assert "cache_dir" in str(err.value)
    assert (cache / "de-en" / "thesis.tex").read_text() == "years of work"
    assert not [p for p in cache.iterdir() if p.name.startswith(".extract-")]
    fresh = tmp_path / "cache"  # a folder this code extracted is replaced by a new download
    download(archive.as_uri(), None, fresh)
    (fresh / "de-en" / "train.tags.de-en.de").write_text("old")
    download(archive.as_uri(), None, fresh)
    assert (fresh / "de-en" / "train.tags.de-en.de").read_text() == "Hallo.\n"


def test_data_status_reports_an_unwritable_cache_dir_as_a_status(tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    archive = _tgz(tmp_path / "src" / "de-en.tgz", {"de-en/x.txt": b"x"})
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    status = locate("iwslt14", None, archive.as_uri(), None, str(blocker / "cache"), timeout=5)
    assert status["available"] is False and str(blocker) in status["message"]


def test_the_command_line_prints_a_refused_file_without_a_traceback(tmp_path):
    raw = _fake_release(tmp_path / "de-en", train_lines=0)
    proc = subprocess.run(
        [sys.executable, "-m", "sigprop", "data-prepare", "--dataset", "iwslt14", "--source", str(raw),
         "--out", str(tmp_path / "out"), "--url="],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "\nsigprop data-prepare: iwslt14 train: no sentence left in" in proc.stderr
    assert "train.tags.de-en.de" in proc.stderr
