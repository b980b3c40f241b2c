# Figures: aggregated tables -> figures/<stem>.pdf and .png. Each figure's plotting module is an
# input, so editing one figure's code reruns only that figure.


rule plot:
    input:
        unpack(plot_inputs),
    output:
        pdf="figures/{stem}.pdf",
        png="figures/{stem}.png",
    log:
        "results/logs/plot/{stem}.log",
    benchmark:
        "results/benchmarks/plot/{stem}.tsv"
    wildcard_constraints:
        stem="|".join(STEMS),
    conda:
        "../../envs/sigprop.yaml"
    params:
        style=json.dumps(config["style"]),
    shell:
        "python -m sigprop plot --out {output.pdf} --style {params.style:q} {input.tables} > {log} 2>&1"


# One named target per figure: `snakemake fig7`.
for _key in FIGURES:

    rule:
        name:
            f"fig{int(_key[3:])}"
        input:
            figure_files(_key),


# A target such as `snakemake fig99` that names no figure stops with the list of figures.
rule unknown_figure:
    input:
        lambda wc: figure_files(wc.target),
    output:
        "{target}",
    wildcard_constraints:
        target=r"fig[0-9]+",
