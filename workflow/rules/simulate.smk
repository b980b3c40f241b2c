# Seed-level experiment jobs: one parameter point and a batch of seeds -> one raw tidy table.


rule simulate:
    input:
        code_inputs("simulate"),
    output:
        "results/raw/{experiment}/{point}/seeds~{seeds}.parquet",
    log:
        "results/logs/simulate/{experiment}/{point}/seeds~{seeds}.log",
    benchmark:
        "results/benchmarks/simulate/{experiment}/{point}/seeds~{seeds}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    threads: 1
    resources:
        mem_mb=retry_mem_mb,
        runtime=30,
    params:
        spec=job_spec,
        name=config["name"],
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop simulate --spec {params.spec:q}"
        " --config-name {params.name} --out {output} > {log} 2>&1"
