# What each figure and table stands on, over the init-time (common.smk) and translation
# (translation_common.smk) parts: the input functions of the aggregate, plot and checks rules and of the
# default target. Every figure is one entry of sigprop.analysis.registry.FIGURES: its experiments, and its
# aggregate, checks and plot functions (named there, imported only by the job that runs them).
import functools

from sigprop.analysis.registry import check_modules


def aggregate_code(wildcards):
    """The module of a figure's aggregate function and what it imports: code inputs no import statement names."""
    return code_inputs("aggregate", figure_spec(wildcards.figure).aggregate_module)


def aggregate_grid(wildcards):
    """``--grid JSON`` of a theory-only figure (computed from its experiment's grid, no raw table), else ''."""
    spec = figure_spec(wildcards.figure)
    if spec.raw:
        return ""
    return "--grid " + repr(
        json.dumps(config["experiments"][next(iter(spec.experiments))])
    )


def figure_plot_inputs(wildcards):
    """Tables and code of one figure: the plot command's imports and the module of its plot function."""
    key = STEMS[wildcards.stem]
    return {
        "tables": figure_tables(key),
        "code": code_inputs("plot", FIGURES[key].plot_module),
    }


def checks_code():
    """The modules of the figures' checks functions and what they import (named by the registry only)."""
    return code_inputs("checks", *check_modules())


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


def figure_raw_files(wildcards):
    """The aggregate rule's raw tables: those of the figure it aggregates."""
    return raw_files(wildcards.figure)


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


def closure_input(figure):
    """An input function listing figure_closure(figure), evaluated only when its target is asked for."""
    return functools.partial(_closure_of, figure)


def _closure_of(figure, wildcards):
    return figure_closure(figure)


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
