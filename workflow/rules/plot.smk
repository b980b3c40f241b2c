# Figures: aggregated tables -> figures/<stem>.pdf and .png. Each figure's plotting module is an
# input, so editing one figure's code reruns only that figure.


def plot_inputs(wildcards):
    key = STEMS[wildcards.stem]
    spec = FIGURES[key]
    return {
        "tables": [f"results/aggregated/{t}.parquet" for t in (key, *spec.tables)],
        "code": [str(SRC / "plotting" / f"{m}.py") for m in (key, "style", *spec.helpers)],
    }


rule plot:
    input:
        unpack(plot_inputs),
    output:
        pdf="figures/{stem}.pdf",
        png="figures/{stem}.png",
    params:
        style=json.dumps(config["style"]),
    wildcard_constraints:
        stem="|".join(STEMS),
    benchmark:
        "results/benchmarks/plot/{stem}.tsv"
    shell:
        "python -m sigprop plot --out {output.pdf} --style {params.style:q} {input.tables}"


# One named target per figure: `snakemake fig7`.
for _key in FIGURES:

    rule:
        name:
            f"fig{int(_key[3:])}"
        input:
            figure_files(_key),
