# Fig 5: the toy sequence-reversal training (sigprop.tasks.toy_reversal), one job per seed -> one raw tidy table.
# A killed job resumes from results/checkpoints/toy_reversal/seed~<s>/last.pt (removed after success) if
# its parameters and code are unchanged (sigprop.tasks.toy_reversal.fingerprint), else it trains from update 0.


rule train_toy:
    input:
        code_inputs("train_toy"),
    output:
        "results/raw/toy_reversal/seed~{seed}.parquet",
    log:
        "results/logs/train_toy/seed~{seed}.log",
    benchmark:
        "results/benchmarks/train_toy/seed~{seed}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        spec=toy_params,
        name=config["name"],
        ckpt="results/checkpoints/toy_reversal/seed~{seed}",
        metrics="results/logs/train_toy/seed~{seed}.metrics.jsonl",
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop train-toy --params {params.spec:q} --seed {wildcards.seed}"
        " --config-name {params.name} --checkpoint-dir {params.ckpt} --metrics-log {params.metrics}"
        " --out {output} > {log} 2>&1"
