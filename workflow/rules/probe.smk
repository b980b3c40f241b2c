# Fig S7 (supplementary): real architectures of Hugging Face transformers at initialisation
# (sigprop.tasks.probe, docs/supplementary.md). One job per grid point of experiments.model_probe. The figure
# needs the optional extra "models" (pip install -e ".[models]"): without it the default target skips it
# (registry FigureSpec.extra) and says what to install at the end of the run; the rest is unaffected.
# Helpers: supplementary_common.smk.


rule simulate_probe:
    input:
        code_inputs("simulate_probe"),
    output:
        f"results/raw/{MODEL_PROBE}/{{point}}/seeds~{{seeds}}.parquet",
    log:
        f"results/logs/simulate/{MODEL_PROBE}/{{point}}/seeds~{{seeds}}.log",
    benchmark:
        f"results/benchmarks/simulate/{MODEL_PROBE}/{{point}}/seeds~{{seeds}}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: 1
    resources:
        mem_mb=retry_mem_mb,
        runtime=30,
    params:
        spec=probe_spec,
        name=config["name"],
    shell:
        "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 python -m sigprop simulate-probe --spec {params.spec:q}"
        " --config-name {params.name} --out {output} > {log} 2>&1"


# results/raw/model_probe/... also matches the generic simulate rule's pattern
ruleorder: simulate_probe > simulate
