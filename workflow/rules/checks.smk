# The paper's claims as checks (docs/checks.md) over the aggregated tables -> results/checks.csv (one-line summary at the end).


rule checks:
    input:
        code=code_inputs("checks"),
        functions=checks_code(),  # the modules of the checks functions (registry)
        tables=[
            f"results/aggregated/{f}.parquet"
            for f in config["figures"]
            if FIGURES[f].checked
            and not FIGURES[f].needs_data
            and FIGURES[f].installed
        ],
        translation=translation_checks,  # Figs 1, 6, 14 and Table 1, when the IWSLT'14 data is there
        iwslt=iwslt_figure_checks,  # Fig S1, when its data is there (supplementary.smk)
    output:
        "results/checks.csv",  # a failed job leaves none: the next run reruns it (as aggregate.smk)
    log:
        "results/logs/checks.log",
    benchmark:
        "results/benchmarks/checks.tsv"
    conda:
        "../../envs/sigprop.yaml"
    shell:
        "python -m sigprop checks --out {output} {input.tables} {input.translation} {input.iwslt} > {log} 2>&1"
        " || (tail -n 5 {log} >&2; exit 1)"


localrules:
    all,
    aggregate,
    plot,
    checks,
    report,
