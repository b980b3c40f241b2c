# Fig S1 (supplementary): Table 1's translation models at initialisation on IWSLT'14 batches
# (sigprop.tasks.translation.initprobe, docs/supplementary.md). One job per grid point of
# experiments.method_init; like the translation figures, Fig S1 joins `all` only when the data of its
# dataset is there (data.smk checkpoint). Figs S2 and S3 are ordinary simulate jobs.
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


rule simulate_method_init:
    input:
        code=code_inputs("simulate_method_init"),
        data=method_init_data,
    output:
        f"results/raw/{METHOD_INIT}/{{point}}/seeds~{{seeds}}.parquet",
    log:
        f"results/logs/simulate/{METHOD_INIT}/{{point}}/seeds~{{seeds}}.log",
    benchmark:
        f"results/benchmarks/simulate/{METHOD_INIT}/{{point}}/seeds~{{seeds}}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: 1
    resources:
        mem_mb=retry_mem_mb,
        runtime=60,
    params:
        spec=method_init_params,
        name=config["name"],
        data=method_init_data_dir,
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop simulate-method-init --spec {params.spec:q}"
        " --data {params.data} --config-name {params.name} --out {output} > {log} 2>&1"


# results/raw/method_init/... also matches the generic simulate rule's pattern
ruleorder: simulate_method_init > simulate
