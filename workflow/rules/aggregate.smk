# Aggregation: every raw table of a figure -> results/aggregated/<figure>.parquet (means, 95% CIs, theory).
# A failed job shows the end of its log (e.g. which raw table is corrupt) and leaves no table: Snakemake removes
# the output of a failed job, so the next run reruns it (docs/reliability.md).


rule aggregate:
    input:
        code=code_inputs("aggregate"),
        functions=aggregate_code,  # the module of its aggregate function (registry)
        raw=figure_raw_files,
    output:
        "results/aggregated/{figure}.parquet",
    log:
        "results/logs/aggregate/{figure}.log",
    benchmark:
        "results/benchmarks/aggregate/{figure}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    params:
        grid=aggregate_grid,
    shell:
        "python -m sigprop aggregate --out {output} {params.grid} {input.raw} > {log} 2>&1"
        " || (tail -n 5 {log} >&2; exit 1)"
