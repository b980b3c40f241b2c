# Aggregation: every raw table of a figure -> results/aggregated/<figure>.parquet (means, 95% CIs, theory).


rule aggregate:
    input:
        code=AGGREGATION_CODE,
        raw=lambda wc: raw_files(wc.figure),
    output:
        "results/aggregated/{figure}.parquet",
    log:
        "results/logs/aggregate/{figure}.log",
    benchmark:
        "results/benchmarks/aggregate/{figure}.tsv"
    wildcard_constraints:
        figure=r"fig\d\d",
    conda:
        "../../envs/sigprop.yaml"
    params:
        grid=lambda wc: (
            ""
            if figure_spec(wc.figure).raw
            else "--grid "
            + repr(
                json.dumps(
                    config["experiments"][figure_spec(wc.figure).experiments[0]]
                )
            )
        ),
    shell:
        "python -m sigprop aggregate --out {output} {params.grid} {input.raw} > {log} 2>&1"
