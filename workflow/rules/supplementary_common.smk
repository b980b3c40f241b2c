# The supplementary figures' helpers (Snakemake's lint wants functions and rules in separate files). Fig S1's
# dataset, data and job specs (supplementary.smk runs its jobs), Fig S7's job specs and the end-of-run message
# for figures skipped for want of an optional extra (probe.smk runs its jobs).
from sigprop.tasks.translation.plan import METHOD_INIT, method_init_spec

# a method or translation section that is missing stops the workflow before any job runs
try:
    for _job in JOBS.values():
        if _job.experiment == METHOD_INIT:
            method_init_spec(config, _job.spec)
except KeyError as err:
    sys.exit(f"invalid configuration:\n  - {err.args[0]}\nFix the config file.")


def method_init_dataset():
    """The dataset whose training batches Fig S1 reads (experiments.method_init.fixed.dataset)."""
    fixed = config["experiments"][METHOD_INIT]["fixed"]
    if "dataset" not in fixed:
        raise ValueError(
            f"experiments.{METHOD_INIT}.fixed.dataset: name the dataset whose batches Fig S1 reads"
            " (iwslt14 or iwslt14-mini)"
        )
    return fixed["dataset"]


def method_init_data_dir(wildcards):
    """The binarised data directory of Fig S1's dataset."""
    return f"results/data/{method_init_dataset()}"


def method_init_data(wildcards):
    """The binarised files a Fig S1 job reads."""
    names = ("dict.txt", "train.pt", "valid.pt", "test.pt")
    return [f"{method_init_data_dir(wildcards)}/{name}" for name in names]


def method_init_params(wildcards):
    """The JSON spec of one Fig S1 job: the generic job spec plus its methods, model and label smoothing."""
    path = (
        f"results/raw/{METHOD_INIT}/{wildcards.point}/seeds~{wildcards.seeds}.parquet"
    )
    if path not in JOBS:
        raise ValueError(
            f"{path} is not a job of this config (experiments.{METHOD_INIT})"
        )
    return json.dumps(method_init_spec(config, JOBS[path].spec), sort_keys=True)


def iwslt_figures():
    """The requested figures that read IWSLT'14 batches without training (Fig S1)."""
    return [f for f in config["figures"] if FIGURES[f].iwslt]


def iwslt_figure_targets(wildcards):
    """Fig S1 and every file it stands on, only if its dataset is available (else skipped, message at the end)."""
    figs = iwslt_figures()
    if not figs or not data_status(method_init_dataset())["available"]:
        return []
    out = [p for f in figs for p in figure_closure(f)]
    return list(dict.fromkeys(out + data_files(method_init_dataset())))


def iwslt_figure_checks(wildcards):
    """Fig S1's aggregated table for the checks, when it is built."""
    figs = [f for f in iwslt_figures() if FIGURES[f].checked]
    if figs and data_status(method_init_dataset())["available"]:
        return [f"results/aggregated/{f}.parquet" for f in figs]
    return []


MODEL_PROBE = "model_probe"


def probe_spec(wildcards):
    """The JSON spec of one Fig S7 job (experiments.model_probe)."""
    path = (
        f"results/raw/{MODEL_PROBE}/{wildcards.point}/seeds~{wildcards.seeds}.parquet"
    )
    if path not in JOBS:
        raise ValueError(
            f"{path} is not a job of this config (experiments.{MODEL_PROBE})"
        )
    return JOBS[path].spec


def print_extras_message():
    """At the end of a run: the requested figures skipped because an optional extra is not installed."""
    missing = [
        FIGURES[f].install_hint for f in config["figures"] if not FIGURES[f].installed
    ]
    if missing:
        bar = "=" * 100
        print(f"\n{bar}\nskipped: " + "; ".join(missing) + f"\n{bar}")
