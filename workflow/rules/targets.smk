# What each figure and table stands on, over the init-time (common.smk) and translation
# (translation_common.smk) parts: the input functions of the aggregate rule and of the default target.


def raw_files(figure):
    """Raw tables of every experiment a figure reads."""
    spec = figure_spec(figure)
    if spec.translation:
        return translation_raw_files(figure)  # translation_common.smk
    if not spec.raw:
        return []
    missing = [e for e in spec.experiments if e not in config["experiments"]]
    if missing:
        raise ValueError(f"{figure} needs experiments.{missing[0]} in the config")
    jobs = [path for path, job in JOBS.items() if job.experiment in spec.experiments]
    return jobs + [
        f for e in spec.experiments if e in TRAINING_EXPERIMENTS for f in seed_files(e)
    ]


def figure_closure(figure):
    """Every file a figure stands on: PDF and PNG, the aggregated tables, their raw tables (and data).

    Snakemake rebuilds a missing file only if a target needs it, so the figure targets list all of them:
    deleting an aggregated or raw table and asking for the figure rebuilds the table and then the figure.
    """
    tables = (figure, *figure_spec(figure).tables)
    files = figure_files(figure) + figure_tables(figure)
    files += [f for t in tables for f in raw_files(t)]
    if figure_spec(figure).translation:
        files += data_files(DATASET)
    return list(dict.fromkeys(files))


def translation_targets(wildcards):
    """Translation figures and Table 1, only if the IWSLT data is available (the iwslt_status checkpoint)."""
    if not TR_TARGETS or not data_status(DATASET)["available"]:
        return []
    out = [f for t in TR_TARGETS if t in FIGURES for f in figure_closure(t)]
    if "table1" in TR_TARGETS:
        out += table1_closure()
    return list(dict.fromkeys(out))


def table1_closure():
    """Table 1's files and every file they stand on (as figure_closure)."""
    agg = "results/aggregated/table1.parquet"
    return [*TABLE1_FILES, agg, *table1_inputs(None), *data_files(DATASET)]
