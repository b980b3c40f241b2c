# SPEC section 6 checks over the aggregated tables -> results/checks.csv (one-line summary at the end).


rule checks:
    input:
        code=str(SRC / "checks.py"),
        tables=[
            f"results/aggregated/{f}.parquet"
            for f in config["figures"]
            if FIGURES[f].checked
        ],
    output:
        "results/checks.csv",
    log:
        "results/logs/checks.log",
    conda:
        "../../envs/sigprop.yaml"
    shell:
        "python -m sigprop checks --out {output} {input.tables} > {log} 2>&1"


localrules:
    all,
    aggregate,
    plot,
    checks,
    report,
