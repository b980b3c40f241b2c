# Aggregation: every raw table of a figure -> results/aggregated/<figure>.parquet (means, 95% CIs, theory).


rule aggregate:
    input:
        code=AGGREGATION_CODE,
        raw=lambda wc: raw_files(wc.figure),
    output:
        "results/aggregated/{figure}.parquet",
    params:
        grid=lambda wc: (
            ""
            if figure_spec(wc.figure).raw
            else "--grid "
            + repr(json.dumps(config["experiments"][figure_spec(wc.figure).experiments[0]]))
        ),
    wildcard_constraints:
        figure=r"fig\d\d",
    benchmark:
        "results/benchmarks/aggregate/{figure}.tsv"
    shell:
        "python -m sigprop aggregate --out {output} {params.grid} {input.raw}"
