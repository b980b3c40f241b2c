# Translation on IWSLT'14 De-En (docs/translation.md): one training job per (method, X blocks, seed), each
# writing results/raw/translation/<dataset>/<method>/layers~<X>/seed~<s>/, then one evaluation job per run
# (beam search + BLEU of its best checkpoint: editing search or BLEU code reruns evaluation, not training);
# Figs 1, 6, 14 (generic aggregate/plot rules) and Tables 1, 2 (results/tables/). Needs the data rules (data.smk).
rule train_translation:
    input:
        code=code_inputs("train_translation"),
        data=multiext(
            "results/data/{dataset}/",
            "dict.txt",
            "train.pt",
            "valid.pt",
        ),
    output:
        log=f"{RUN_DIR}/log.parquet",
        summary=f"{RUN_DIR}/train.json",
        best=f"{RUN_DIR}/checkpoint_best.pt",
    log:
        "results/logs/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.tsv"
    wildcard_constraints:
        dataset="iwslt14|iwslt14-mini",
        layers=r"\d+",
        seed=r"\d+",
    conda:
        "../../envs/sigprop.yaml"
    threads: TRANSLATION.get("threads", 1)
    resources:
        gpu=1 if TRANSLATION.get("device") == "cuda" else 0,
        runtime=TRANSLATION.get("runtime_min", 60),
        mem_mb=lambda wc, attempt: TRANSLATION.get("mem_mb", 4000) * attempt,
    params:
        spec=translation_spec,  # without the evaluation section
        out_dir=RUN_DIR,
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop train-translation --spec {params.spec:q}"
        " --data results/data/{wildcards.dataset} --out-dir {params.out_dir} > {log} 2>&1"


rule evaluate_translation:
    input:
        code=code_inputs("evaluate_translation"),
        data=multiext("results/data/{dataset}/", "dict.txt", "test.pt", "test.en"),
        summary=f"{RUN_DIR}/train.json",
        best=f"{RUN_DIR}/checkpoint_best.pt",
    output:
        eval=f"{RUN_DIR}/eval.parquet",
        eval_json=f"{RUN_DIR}/eval.json",
        hyps=f"{RUN_DIR}/hypotheses.txt",
    log:
        "results/logs/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.eval.log",
    benchmark:
        "results/benchmarks/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.eval.tsv"
    wildcard_constraints:
        dataset="iwslt14|iwslt14-mini",
        layers=r"\d+",
        seed=r"\d+",
    conda:
        "../../envs/sigprop.yaml"
    threads: TRANSLATION.get("threads", 1)
    resources:
        gpu=1 if TRANSLATION.get("device") == "cuda" else 0,
        runtime=TRANSLATION.get("runtime_min", 60),
        mem_mb=lambda wc, attempt: TRANSLATION.get("mem_mb", 4000) * attempt,
    params:
        spec=evaluation_spec,
        run_dir=lambda wc, input: Path(input.best).parent,
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop evaluate-translation --spec {params.spec:q}"
        " --data results/data/{wildcards.dataset} --run-dir {params.run_dir} > {log} 2>&1"


rule table1:
    input:
        code=code_inputs("table1"),
        evals=table1_inputs,
    output:
        agg="results/aggregated/table1.parquet",
        tables=TABLE1_FILES,
    log:
        "results/logs/tables/table1.log",
    conda:
        "../../envs/sigprop.yaml"
    params:
        style=json.dumps(config["style"]),
    shell:
        "python -m sigprop table1 --aggregated {output.agg} --out-dir results/tables"
        " --style {params.style:q} {input.evals} > {log} 2>&1"


rule table2:
    input:
        code=code_inputs("table2"),
    output:
        TABLE2_FILES,
    log:
        "results/logs/tables/table2.log",
    conda:
        "../../envs/sigprop.yaml"
    params:
        config=json.dumps(
            {k: config.get(k) for k in ("name", "methods", "translation")},
            sort_keys=True,
        ),
        style=json.dumps(config["style"]),
    shell:
        "python -m sigprop table2 --config {params.config:q} --out-dir results/tables"
        " --style {params.style:q} > {log} 2>&1"


localrules:
    iwslt_status,
    table1,
    table2,
