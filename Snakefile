# Reproduces the figures of Noci et al. (2022), "Signal Propagation in Transformers".
#   snakemake --cores 2                               quick config, every figure (default)
#   snakemake --cores 2 --configfile config/paper.yaml paper scale
#   snakemake --cores 2 fig7                          one figure
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/quick.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        [figure_files(f) for f in config["figures"]],
        "results/checks.csv",
        "results/report/report.html",


onsuccess:
    print_checks_summary()
