# Translation on IWSLT'14 De-En (SPEC section 5): one training job per (method, X blocks, seed), each
# writing results/raw/translation/<dataset>/<method>/layers~<X>/seed~<s>/; Figs 1, 6, 14 (generic
# aggregate/plot rules) and Tables 1, 2 (results/tables/). Needs the data rules (data.smk).
from sigprop.translation.plan import (
    Run,
    check_config,
    requested_targets,
    spec_json,
    target_runs,
)

TRANSLATION = config.get("translation", {})
TR_TARGETS = requested_targets(config) if TRANSLATION else []
DATASET = TRANSLATION.get("dataset", "iwslt14-mini")
if TRANSLATION:
    try:
        check_config(config)
    except ValueError as err:
        sys.exit(f"invalid configuration:\n  - {err}\nFix the config file.")
TRANSLATION_CODE = sorted(
    str(p)
    for p in [SRC / "model.py", SRC / "data" / "iwslt.py"]
    + list((SRC / "translation").glob("*.py"))
    + list((SRC / "train").glob("*.py"))
)
TABLES_CODE = [str(SRC / "translation" / "tables.py"), str(SRC / "aggregation.py")]
RUN_DIR = "results/raw/translation/{dataset}/{method}/layers~{layers}/seed~{seed}"


def translation_raw_files(figure):
    """Raw tables of a translation figure: eval.parquet (Fig 6) or log.parquet of each of its runs."""
    name = "eval.parquet" if figure == "fig06" else "log.parquet"
    return [f"{run.directory(DATASET)}/{name}" for run in target_runs(config, figure)]


def translation_spec(wildcards):
    """The JSON spec of one training run of this config."""
    if wildcards.dataset != DATASET:
        raise ValueError(
            f"this config trains on {DATASET!r}, not {wildcards.dataset!r}"
        )
    return spec_json(
        config, Run(wildcards.method, int(wildcards.layers), int(wildcards.seed))
    )


def translation_targets(wildcards):
    """Translation figures and Table 1, only if the IWSLT data is available (the iwslt_status checkpoint)."""
    if not TR_TARGETS or not data_status(DATASET)["available"]:
        return []
    out = [figure_files(t) for t in TR_TARGETS if t in FIGURES]
    if "table1" in TR_TARGETS:
        out.append(TABLE1_FILES)
    return out


def translation_checks(wildcards):
    """Table 1's aggregated table for the checks, when it is built."""
    if "table1" in TR_TARGETS and data_status(DATASET)["available"]:
        return ["results/aggregated/table1.parquet"]
    return []


TABLE1_FILES = [f"results/tables/table1_bleu.{ext}" for ext in ("csv", "tex", "png")]
TABLE2_FILES = [
    f"results/tables/table2_hyperparameters.{ext}" for ext in ("csv", "tex", "png")
]


rule train_translation:
    input:
        code=TRANSLATION_CODE,
        data=multiext(
            "results/data/{dataset}/",
            "dict.txt",
            "train.pt",
            "valid.pt",
            "test.pt",
            "test.en",
        ),
    output:
        log=f"{RUN_DIR}/log.parquet",
        eval=f"{RUN_DIR}/eval.parquet",
        eval_json=f"{RUN_DIR}/eval.json",
        best=f"{RUN_DIR}/checkpoint_best.pt",
        hyps=f"{RUN_DIR}/hypotheses.txt",
    params:
        spec=translation_spec,
        out_dir=RUN_DIR,
    wildcard_constraints:
        dataset="iwslt14|iwslt14-mini",
        layers=r"\d+",
        seed=r"\d+",
    threads: TRANSLATION.get("threads", 1)
    resources:
        gpu=1 if TRANSLATION.get("device") == "cuda" else 0,
        runtime=TRANSLATION.get("runtime_min", 60),
        mem_mb=lambda wc, attempt: TRANSLATION.get("mem_mb", 4000) * attempt,
    log:
        "results/logs/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop.translation train --spec {params.spec:q}"
        " --data results/data/{wildcards.dataset} --out-dir {params.out_dir} > {log} 2>&1"


rule table1:
    input:
        code=TABLES_CODE,
        evals=lambda wc: [
            f"{run.directory(DATASET)}/eval.parquet"
            for run in target_runs(config, "table1")
        ],
    output:
        agg="results/aggregated/table1.parquet",
        tables=TABLE1_FILES,
    params:
        style=json.dumps(config["style"]),
    log:
        "results/logs/tables/table1.log",
    conda:
        "../../envs/sigprop.yaml"
    shell:
        "python -m sigprop.translation table1 --aggregated {output.agg} --out-dir results/tables"
        " --style {params.style:q} {input.evals} > {log} 2>&1"


rule table2:
    input:
        code=TABLES_CODE,
    output:
        TABLE2_FILES,
    params:
        config=json.dumps(
            {k: config.get(k) for k in ("name", "methods", "translation")}, sort_keys=True
        ),
        style=json.dumps(config["style"]),
    log:
        "results/logs/tables/table2.log",
    conda:
        "../../envs/sigprop.yaml"
    shell:
        "python -m sigprop.translation table2 --config {params.config:q} --out-dir results/tables"
        " --style {params.style:q} > {log} 2>&1"


localrules:
    iwslt_status,
    table1,
    table2,
