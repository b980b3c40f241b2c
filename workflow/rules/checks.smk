# SPEC section 6 checks over the aggregated tables -> results/checks.csv (one-line summary at the end).


rule checks:
    input:
        code=str(SRC / "checks.py"),
        tables=[f"results/aggregated/{f}.parquet" for f in config["figures"] if FIGURES[f].checked],
    output:
        "results/checks.csv",
    shell:
        "python -m sigprop checks --out {output} {input.tables}"


localrules:
    all,
    aggregate,
    plot,
    checks,
