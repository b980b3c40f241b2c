# Seed-level experiment jobs: one parameter point and a batch of seeds -> one raw tidy table.


rule simulate:
    input:
        SIMULATION_CODE,
    output:
        "results/raw/{experiment}/{point}/seeds~{seeds}.parquet",
    params:
        spec=job_spec,
        name=config["name"],
    wildcard_constraints:
        seeds=r"\d+-\d+",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    benchmark:
        "results/benchmarks/simulate/{experiment}/{point}/seeds~{seeds}.tsv"
    log:
        "results/logs/simulate/{experiment}/{point}/seeds~{seeds}.log",
    shell:
        "OMP_NUM_THREADS={threads} python -m sigprop simulate --spec {params.spec:q}"
        " --config-name {params.name} --out {output} > {log} 2>&1"
