# Reproduces the figures of Noci et al. (2022), "Signal Propagation in Transformers".
#   snakemake --cores 2                               quick config, every figure (default)
#   snakemake --cores 2 --configfile config/paper.yaml paper scale
#   snakemake --cores 2 fig7                          one figure
import sys

from snakemake.utils import min_version

from sigprop.config import ConfigError, load_config_file

min_version("9.0")


# The quick config is the default; `--configfile X` replaces it (rather than being merged over it). Either is
# laid over the base file it names (`base: base.yaml`) in workflow/rules/common.smk.
if not workflow.config_settings.configfiles:
    try:  # a syntax error named with its line (Snakemake's own message names neither file nor line)
        load_config_file("config/quick.yaml")
    except ConfigError as err:
        sys.exit(str(err))

    configfile: "config/quick.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/translation_common.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/supplementary_common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/translation.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/supplementary.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        # each figure with the tables it stands on (targets.smk figure_closure: a deleted table is rebuilt)
        [
            figure_closure(f)
            for f in config["figures"]
            if not FIGURES[f].needs_data and FIGURES[f].installed
        ],
        # Figs 1, 6, 14, S1 and Table 1 only when the IWSLT'14 data is there (data.smk checkpoint)
        translation_targets,
        iwslt_figure_targets,
        TABLE2_FILES if "table2" in config["tables"] else [],
        "results/checks.csv",
        "results/report/report.html",


onstart:
    remove_partial_files()


onsuccess:
    print_checks_summary()
    print_data_message()
    print_extras_message()


onerror:
    print_data_message()
