# Helpers of the IWSLT data and translation rules (data.smk, translation.smk): constants and input
# functions only. The translation targets join `all` only when the data is there (iwslt_status checkpoint).
import os
from types import SimpleNamespace

from sigprop.data.iwslt.corpus import ENV_VAR
from sigprop.data.iwslt.status import read_status
from sigprop.tasks.translation import selection as lr_selection
from sigprop.analysis.registry import TABLES
from sigprop.tasks.translation.plan import (
    SECTIONLESS,
    TRANSLATION_FIGURES,
    TRANSLATION_TABLES,
    Run,
    check_config,
    requested_targets,
    spec_json,
    target_runs,
)

DATA = config["data"]
TRANSLATION = config.get("translation", {})
TR_TARGETS = requested_targets(config) if TRANSLATION else []
DATASET = TRANSLATION["dataset"] if TRANSLATION else None
if TRANSLATION:
    try:
        check_config(config)
    except ValueError as err:
        sys.exit(f"invalid configuration:\n  - {err}\nFix the config file.")
RUN_DIR = "results/raw/translation/{dataset}/{method}/layers~{layers}/seed~{seed}"
# the targets that train runs (Fig S8 reads the lr selections of their methods)
TRANSLATION_RUN_TARGETS = [
    t for t in (*TRANSLATION_FIGURES, *TRANSLATION_TABLES) if t not in SECTIONLESS
]
TABLE1_FILES = TABLES["table1"].files
TABLE2_FILES = TABLES["table2"].files


# The translation jobs' threads and resources (translation.threads, device, runtime_min, mem_mb; the schema
# fills in their defaults), read when a job is made: a config without a translation section makes none.
def translation_threads(wildcards):
    return TRANSLATION["threads"]


def translation_gpu(wildcards):
    return int(TRANSLATION["device"] == "cuda")


def translation_runtime(wildcards):
    return TRANSLATION["runtime_min"]


def translation_mem_mb(wildcards, attempt):
    """translation.mem_mb, times the attempt (a job rerun with --retries gets more)."""
    return TRANSLATION["mem_mb"] * attempt


def selection_arg(wildcards, input):
    """``--selection FILE`` for a run of a method with an lr grid, else nothing."""
    return f"--selection {input.selection}" if input.selection else ""


def run_dir_of(wildcards, input):
    """The run directory of the checkpoint an evaluation reads."""
    return Path(input.best).parent


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
    """Raw tables of a translation figure: eval.parquet (Fig 6) or log.parquet of each of its runs; the lr
    selections (Fig S8)."""
    if figure == "figS8":
        return [str(Path(f).with_suffix(".parquet")) for f in selection_files()]
    name = figure_spec(figure).run_file  # eval.parquet: the test BLEU (Fig 6)
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
        f"{run.directory(DATASET)}/{TABLES['table1'].run_file}"
        for run in target_runs(config, "table1")
    ]


# ---- lr selection (sigprop.tasks.translation.selection): methods whose optimiser's lr is a grid ----
def translation_methods():
    """Every method some requested translation target trains."""
    targets = [t for t in TR_TARGETS if t in TRANSLATION_RUN_TARGETS]
    return sorted({run.method for t in targets for run in target_runs(config, t)})


def selection_files():
    """selection.json of every method with an lr grid that the requested targets train."""
    return [
        lr_selection.selection_file(config, DATASET, m)
        for m in lr_selection.selected_methods(config, translation_methods())
    ]


def train_selection_input(wildcards):
    """The selection a run of a method with an lr grid trains at (nothing for a single lr)."""
    opt = lr_selection.method_optimizer(config, wildcards.method)
    if not lr_selection.has_grid(opt):
        return []
    source = lr_selection.lr_source(config, wildcards.method)
    return [lr_selection.selection_file(config, DATASET, source)]


def selection_spec(wildcards):
    """The training spec of seed 0 at the selection depth (grid points and extension)."""
    run = SimpleNamespace(
        dataset=wildcards.dataset,
        method=wildcards.method,
        layers=wildcards.layers,
        seed=0,
    )
    return translation_spec(run)


def selection_points(wildcards):
    """The prefix summaries of a method's grid points."""
    return lr_selection.point_files(config, wildcards.dataset, wildcards.method)
