"""What IWSLT'14 De-En is here: the two datasets, languages, splits, the official dev/test sets, fairseq's settings.

Every other module of :mod:`sigprop.data.iwslt` takes these names from here; nothing in this module does work.
"""

from __future__ import annotations

#: fairseq's mirror of the IWSLT'14 De-En release (the URL used by prepare-iwslt14.sh).
DEFAULT_URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
#: Environment variable naming a local copy of the raw data.
ENV_VAR = "SIGPROP_IWSLT_DIR"
#: Config key naming a local copy of the raw data.
CONFIG_KEY = "data.local_dir"

#: ``iwslt14``: the paper's data; ``iwslt14-mini``: the local stand-in (docs/translation.md).
DATASETS = ("iwslt14", "iwslt14-mini")
SRC_LANG, TGT_LANG = "de", "en"
LANGS = (SRC_LANG, TGT_LANG)
SPLITS = ("train", "valid", "test")

DEV2010 = "IWSLT14.TED.dev2010"
TEDX_DEV2012 = "IWSLT14.TEDX.dev2012"
TST2010, TST2011, TST2012 = "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012"
#: fairseq's test set, in fairseq's concatenation order.
FULL_TEST_SETS = (DEV2010, TEDX_DEV2012, TST2010, TST2011, TST2012)
MINI_VALID_SETS = (DEV2010,)
MINI_TEST_SETS = (TST2010, TST2011, TST2012)

# fairseq's prepare-iwslt14.sh settings
BPE_MERGES = 10000  # subword-nmt learn_bpe -s
CLEAN_RATIO, CLEAN_MIN, CLEAN_MAX = 1.5, 1, 175  # clean-corpus-n.perl -ratio 1.5 ... 1 175
VALID_EVERY = 23  # valid = every 23rd cleaned training line
#: sha256 of fairseq's standard 10k-merge BPE ``code`` (shared/data/iwslt14/PROVENANCE.md).
KNOWN_FAIRSEQ_CODE_SHA256 = "3dd02684b6693abce3ba59520425901b0b910abeec2ae6b15cc62e458441d503"


def check_dataset(dataset: str) -> None:
    """Raise ``ValueError`` naming the choices unless ``dataset`` is one of :data:`DATASETS`."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
