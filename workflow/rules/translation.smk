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
        selection=train_selection_input,  # an lr grid: the method's selected lr
    output:
        log=f"{RUN_DIR}/log.parquet",
        summary=f"{RUN_DIR}/train.json",
        best=f"{RUN_DIR}/checkpoint_best.pt",
    log:
        "results/logs/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/translation/{dataset}/{method}/layers~{layers}/seed~{seed}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: translation_threads
    resources:
        gpu=translation_gpu,
        runtime=translation_runtime,
        mem_mb=translation_mem_mb,
    params:
        spec=translation_spec,  # without the evaluation section
        out_dir=RUN_DIR,
        selection=selection_arg,
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop train-translation --spec {params.spec:q}"
        " --data results/data/{wildcards.dataset} --out-dir {params.out_dir} {params.selection}"
        " > {log} 2>&1"


# lr selection (docs/translation.md): seed 0 of each lr grid point up to the selection update, then the rule
rule train_lr_point:
    input:
        code=code_inputs("train_lr_point"),
        data=multiext(
            "results/data/{dataset}/",
            "dict.txt",
            "train.pt",
            "valid.pt",
        ),
    output:
        summary=f"{lr_selection.POINT_DIR}/{lr_selection.PREFIX_SUMMARY}",
        state=f"{lr_selection.POINT_DIR}/{lr_selection.PREFIX_STATE}",
    log:
        "results/logs/translation_select/{dataset}/{method}/layers~{layers}/lr~{lr}.log",
    benchmark:
        "results/benchmarks/translation_select/{dataset}/{method}/layers~{layers}/lr~{lr}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: translation_threads
    resources:
        gpu=translation_gpu,
        runtime=translation_runtime,
        mem_mb=translation_mem_mb,
    params:
        spec=selection_spec,
        out_dir=lr_selection.POINT_DIR,
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop train-translation --spec {params.spec:q}"
        " --data results/data/{wildcards.dataset} --out-dir {params.out_dir}"
        " --lr-point {wildcards.lr} > {log} 2>&1"


rule select_lr:
    input:
        code=code_inputs("select_lr"),
        data=multiext(
            "results/data/{dataset}/",
            "dict.txt",
            "train.pt",
            "valid.pt",
        ),
        points=selection_points,
    output:
        json=lr_selection.SELECTION_FILE,
        table=lr_selection.SELECTION_TABLE,
    log:
        "results/logs/translation_select/{dataset}/{method}/layers~{layers}/select.log",
    benchmark:
        "results/benchmarks/translation_select/{dataset}/{method}/layers~{layers}/select.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: translation_threads
    resources:
        gpu=translation_gpu,
        runtime=translation_runtime,
        mem_mb=translation_mem_mb,
    params:
        spec=selection_spec,
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop select-lr --spec {params.spec:q}"
        " --data results/data/{wildcards.dataset} --out {output.json} {input.points} > {log} 2>&1"


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
    conda:
        "../../envs/sigprop.yaml"
    threads: translation_threads
    resources:
        gpu=translation_gpu,
        runtime=translation_runtime,
        mem_mb=translation_mem_mb,
    params:
        spec=evaluation_spec,
        run_dir=run_dir_of,
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
    benchmark:
        "results/benchmarks/tables/table1.tsv"
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
    benchmark:
        "results/benchmarks/tables/table2.tsv"
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
