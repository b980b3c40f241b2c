# The reproduction report: papermill executes workflow/notebooks/report.ipynb (parameters cell), nbconvert
# renders it to HTML. Last step of the default run.


rule report:
    input:
        notebook="workflow/notebooks/report.ipynb",
        assumptions="docs/assumptions.md",
        code=code_inputs("report"),
        checks="results/checks.csv",
        figures=[
            figure_files(f)
            for f in config["figures"]
            if not FIGURES[f].needs_data and FIGURES[f].installed
        ],
        translation=translation_targets,  # Figs 1, 6, 14 and Table 1, when the data is there
        iwslt=iwslt_figure_targets,  # Fig S1, when its data is there (supplementary.smk)
    output:
        notebook="results/report/report.ipynb",
        html="results/report/report.html",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../../envs/sigprop.yaml"
    params:
        configfile=CONFIG_FILE,
    shell:
        "(papermill {input.notebook} {output.notebook}.tmp.ipynb --cwd . -k python3"
        " -p config_file {params.configfile:q} -p results_dir results -p figures_dir figures"
        " -p assumptions {input.assumptions:q}"
        " && mv {output.notebook}.tmp.ipynb {output.notebook}"
        " && jupyter nbconvert --to html {output.notebook} --output-dir results/report"
        " --output report.html) > {log} 2>&1"
