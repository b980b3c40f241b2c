# Figures: aggregated tables -> figures/<stem>.pdf and .png. The module of each figure's plot function
# (sigprop.analysis.registry) is an input, so editing one figure's code reruns only that figure. A failed job
# leaves no figure (the next run reruns it); the last good one stays in figures/.previous/ (a hard link).


rule plot:
    input:
        unpack(figure_plot_inputs),
    output:
        pdf="figures/{stem}.pdf",
        png="figures/{stem}.png",
    log:
        "results/logs/plot/{stem}.log",
    benchmark:
        "results/benchmarks/plot/{stem}.tsv"
    conda:
        "../../envs/sigprop.yaml"
    params:
        style=json.dumps(config["style"]),
    shell:
        "(python -m sigprop plot --out {output.pdf} --style {params.style:q} {input.tables} > {log} 2>&1"
        " && mkdir -p figures/.previous && ln -f {output.pdf} {output.png} figures/.previous/)"
        " || (tail -n 5 {log} >&2; exit 1)"


# Named targets per figure, in both spellings (`snakemake fig7`, `snakemake fig07`): the figure and every
# table it stands on (targets.smk figure_closure), so that a deleted table is rebuilt before the figure.
for _key in FIGURES:
    for _name in dict.fromkeys(
        (f"fig{int(_key[3:])}" if _key[3:].isdigit() else _key, _key)
    ):

        rule:
            name:
                _name
            input:
                closure_input(_key),


# A target such as `snakemake fig99` that names no figure stops with the list of figures.
rule unknown_figure:
    input:
        target_figure_files,
    output:
        "{target}",
