# Fig S1 (supplementary): Table 1's translation models at initialisation on IWSLT'14 batches
# (sigprop.tasks.translation.initprobe, docs/supplementary.md). One job per grid point of
# experiments.method_init; like the translation figures, Fig S1 joins `all` only when the data of its
# dataset is there (data.smk checkpoint). Figs S2 and S3 are ordinary simulate jobs. Helpers:
# supplementary_common.smk.


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
