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
    # written to hidden temporary files named as sigprop.io.atomic_path's (host and pid in the name: the
    # onstart cleanup knows whether their writer is alive), renamed onto the outputs when whole; the last good
    # report stays in results/report/.previous/ (a hard link)
    shell:
        "nb=$(mktemp results/report/.report.ipynb.${{HOSTNAME%%.*}}-$$.XXXXXXXX.partial);"
        " html=$(mktemp results/report/.report.html.${{HOSTNAME%%.*}}-$$.XXXXXXXX.partial);"
        " trap 'rm -f $nb $html' EXIT; trap 'exit 130' INT TERM;"
        " (papermill {input.notebook} $nb --cwd . -k python3"
        " -p config_file {params.configfile:q} -p results_dir results -p figures_dir figures"
        " -p assumptions {input.assumptions:q}"
        " && mv $nb {output.notebook}"
        " && jupyter nbconvert --to html --stdout {output.notebook} > $html"
        " && mv $html {output.html}) > {log} 2>&1"
        " && mkdir -p results/report/.previous"
        " && ln -f {output.notebook} {output.html} results/report/.previous/"
