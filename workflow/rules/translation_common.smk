# Helpers of the IWSLT data and translation rules (data.smk, translation.smk): constants and input
# functions only. The translation targets join `all` only when the data is there (iwslt_status checkpoint).
import os

from sigprop.data.iwslt.corpus import ENV_VAR
from sigprop.data.iwslt.status import read_status
from sigprop.tasks.translation.plan import (
    Run,
    check_config,
    requested_targets,
    spec_json,
    target_runs,
)

DATA = config["data"]
TRANSLATION = config.get("translation", {})
TR_TARGETS = requested_targets(config) if TRANSLATION else []
DATASET = TRANSLATION.get("dataset", "iwslt14-mini")
if TRANSLATION:
    try:
        check_config(config)
    except ValueError as err:
        sys.exit(f"invalid configuration:\n  - {err}\nFix the config file.")
RUN_DIR = "results/raw/translation/{dataset}/{method}/layers~{layers}/seed~{seed}"
TABLE1_FILES = [f"results/tables/table1_bleu.{ext}" for ext in ("csv", "tex", "png")]
TABLE2_FILES = [
    f"results/tables/table2_hyperparameters.{ext}" for ext in ("csv", "tex", "png")
]


def data_files(dataset):
    """The prepared and binarised files of a dataset (outputs of prepare_iwslt and binarize_iwslt)."""
    prepared = [f"{s}.{l}" for s in ("train", "valid", "test") for l in ("de", "en")]
    binarised = ["dict.txt", "train.pt", "valid.pt", "test.pt", "binarize.json"]
    return [
        f"results/data/{dataset}/{name}"
        for name in (*prepared, "manifest.json", *binarised)
    ]


def data_status(dataset):
    """The status written by the checkpoint (evaluating this makes the caller wait for it)."""
    return read_status(checkpoints.iwslt_status.get(dataset=dataset).output[0])


def data_unavailable_message():
    """The message of a status file saying 'not available' (removed, so that the next run looks again)."""
    msgs = []
    for dataset in ("iwslt14", "iwslt14-mini"):
        path = Path(f"results/data/{dataset}/status.json")
        if path.exists():
            status = read_status(path)
            if not status.get("available"):
                msgs.append(status["message"])
                path.unlink()
    return "\n".join(msgs)


def print_data_message():
    """At the end of a run: the one message saying how to provide the IWSLT'14 data, if it was missing."""
    msg = data_unavailable_message()
    if msg:
        bar = "=" * 100
        print(f"\n{bar}\n{msg}\n{bar}")


def translation_raw_files(figure):
    """Raw tables of a translation figure: eval.parquet (Fig 6) or log.parquet of each of its runs."""
    name = "eval.parquet" if figure == "fig06" else "log.parquet"
    return [f"{run.directory(DATASET)}/{name}" for run in target_runs(config, figure)]


def translation_spec(wildcards, part="train"):
    """The JSON spec of one training run of this config (without its evaluation section)."""
    if wildcards.dataset != DATASET:
        raise ValueError(
            f"this config trains on {DATASET!r}, not {wildcards.dataset!r}"
        )
    run = Run(wildcards.method, int(wildcards.layers), int(wildcards.seed))
    return spec_json(config, run, part)


def evaluation_spec(wildcards):
    """The JSON spec of one run's evaluation (the whole run spec, evaluation included)."""
    return translation_spec(wildcards, "evaluate")


def translation_checks(wildcards):
    """The aggregated tables of the requested translation figures and Table 1 for the checks (sigprop.analysis.checks,
    sigprop.analysis.claims), when the data is there to build them."""
    if not TR_TARGETS or not data_status(DATASET)["available"]:
        return []
    return [f"results/aggregated/{t}.parquet" for t in TR_TARGETS]


def table1_inputs(wildcards):
    """The eval tables of Table 1's runs."""
    return [
        f"{run.directory(DATASET)}/eval.parquet"
        for run in target_runs(config, "table1")
    ]
