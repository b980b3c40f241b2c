"""Bad files and bad values are refused with a message naming the file (and line) or the key, never a hang,
a bare traceback or a silent deletion.

* data: an empty training split; a non-UTF-8 byte; a truncated BPE ``code`` file; an archive with unsafe
  members (``data-status`` reports it as a status); a configured sha256 is verified, also for an earlier
  download; a ``data.cache_dir`` holding the user's own ``de-en/`` is never deleted;
* training: a corrupt ``last.pt`` is moved aside (named in the log) and training starts from update 0;
* config: NaN and infinite numbers, ``d_model`` not divisible by ``n_heads``, a model larger than memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_train import _config, _regression_setup
from test_translation import copy_data, job_spec  # noqa: F401 (copy_data is a fixture)

from sigprop.config import ConfigError, load_config, validate_config
from sigprop.data.iwslt import corpus
from sigprop.data.iwslt.bpe import apply_bpe
from sigprop.data.iwslt.fetch import ChecksumError, DataUnavailableError, download, locate_source
from sigprop.data.iwslt.preprocess import prepare
from sigprop.data.iwslt.status import locate
from sigprop.data.iwslt.textio import read_lines
from sigprop.model import ModelConfig
from sigprop.train import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
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


# ---------------------------------------------------------------- data: empty splits (hang)


def test_empty_training_split_is_refused_at_preparation_naming_the_file(tmp_path):
    raw = _fake_release(tmp_path / "de-en", train_lines=0)  # only tag lines: nothing left after the filters
    with pytest.raises(ValueError, match=r"train\.tags\.de-en\.de") as err:
        prepare("iwslt14", raw, tmp_path / "out")
    assert "train" in str(err.value) and "no sentence" in str(err.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_training_with_no_batch_under_the_length_limit_stops_with_a_message(copy_data):  # noqa: F811
    from sigprop.tasks.translation.task import TranslationTask

    spec = job_spec()
    spec["model"] = {**spec["model"], "max_positions": 2}  # every sentence is longer: no batch at all
    task = TranslationTask(spec, copy_data)

    def hung(*_):
        raise TimeoutError("the batch iterator loops without a batch")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        with pytest.raises(ValueError, match="max_positions") as err:
            next(task.data())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert str(copy_data) in str(err.value)


# ---------------------------------------------------------------- data: corrupt text


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


# ---------------------------------------------------------------- data: archives, hashes, the cache


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


# ---------------------------------------------------------------- training: a corrupt checkpoint


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_corrupt_checkpoint_is_moved_aside_and_training_restarts(damage, tmp_path, caplog):
    model, opt, data, step_fn = _regression_setup()
    Trainer(model, step_fn, opt, data, _config(tmp_path, max_updates=10, checkpoint_every=5)).fit()
    last = tmp_path / "ckpt" / "last.pt"
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else bytes(range(256)) * 40)
    model, opt, data, step_fn = _regression_setup()
    with caplog.at_level(logging.WARNING, logger="sigprop.train.loop"):
        result = Trainer(model, step_fn, opt, data, _config(tmp_path, max_updates=10, checkpoint_every=5)).fit()
    assert result.resumed_from == 0 and result.status == "completed" and result.updates == 10
    kept = tmp_path / "ckpt" / "last.corrupt.pt"
    assert kept.exists() and kept.read_bytes() != whole
    text = caplog.text
    assert str(last) in text and "cannot be read" in text and "update 0" in text
    assert "weights_only=False" not in text


# ---------------------------------------------------------------- config values that cannot work


def _quick() -> dict:
    return load_config(REPO_ROOT / "config" / "quick.yaml")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_numbers_are_refused_naming_the_key(value):
    cfg = _quick()
    exp = cfg["experiments"]["toy_reversal"]
    exp["fixed"]["lr"] = value
    with pytest.raises(ConfigError, match=r"experiments\.toy_reversal.*lr"):
        validate_config(cfg, SCHEMA)
    cfg = _quick()
    cfg["style"]["font_size"] = value
    with pytest.raises(ConfigError, match=r"style\.font_size.*(nan|inf)"):
        validate_config(cfg, SCHEMA)


def test_nan_in_a_config_file_fails_check_config(tmp_path):
    path = tmp_path / "nan.yaml"
    path.write_text(f"base: {REPO_ROOT / 'config' / 'quick.yaml'}\nstyle: {{font_size: .nan}}\n")
    proc = subprocess.run([sys.executable, "-m", "sigprop", "check-config", str(path)], capture_output=True,
                          text=True, check=False, cwd=REPO_ROOT)
    assert proc.returncode != 0 and "style.font_size" in proc.stdout + proc.stderr


def test_d_model_not_divisible_by_n_heads_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="d_model = 66.*n_heads = 4"):
        ModelConfig(d_model=66, n_heads=4)
    cfg = _quick()
    exp = cfg["experiments"]["signal_propagation"]
    exp.setdefault("fixed", {})["n_heads"] = 4
    exp["fixed"]["d_model"] = 66
    with pytest.raises(ConfigError, match=r"experiments\.signal_propagation.*d_model.*n_heads"):
        validate_config(cfg, SCHEMA)
    if "translation" in cfg:
        cfg = _quick()
        cfg["translation"]["model"]["d_model"] = cfg["translation"]["model"]["n_heads"] * 16 + 2
        with pytest.raises(ConfigError, match=r"translation\.model.*d_model.*n_heads"):
            validate_config(cfg, SCHEMA)


def test_a_model_larger_than_memory_is_refused_with_its_size():
    cfg = _quick()
    exp = cfg["experiments"]["signal_propagation"]
    exp.setdefault("fixed", {}).update(d_model=2**20, n_heads=4, d_ff=2**20)
    with pytest.raises(ConfigError, match=r"experiments\.signal_propagation.*GiB") as err:
        validate_config(cfg, SCHEMA)
    assert "memory" in str(err.value)
    validate_config(_quick(), SCHEMA)  # the shipped config fits


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
