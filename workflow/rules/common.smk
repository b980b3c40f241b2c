# Helpers shared by every .smk file (config validation, the job table, file names per figure). Later files
# may call what is defined here, never the reverse (targets.smk joins the init-time and translation parts).
import json
import sys
from pathlib import Path

from sigprop.codehash import code_files
from sigprop.config import ConfigError, workflow_config
from sigprop.data.iwslt.corpus import DATASETS
from sigprop.jobs import experiment_jobs
from sigprop.analysis.registry import (
    EXPERIMENT_KINDS,
    FIGURES,
    TRAINING_EXPERIMENTS,
    figure_spec,
)

# Jobs run the code in this checkout's src/ (the files the rules declare as inputs).
SRC_ABS = Path.cwd() / "src"
shell.prefix(f"export PYTHONPATH='{SRC_ABS}':$PYTHONPATH; ")

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# The config in effect: the --configfile (else the Snakefile's config/quick.yaml) overlaid on the base file it
# names (`base: base.yaml`), then the --config values; validated, the schema's defaults filled in. Values given
# with --config arrive as strings ('5'): they become the schema's numbers and booleans.
try:
    workflow_config(
        config,
        [str(f) for f in workflow.configfiles],
        workflow.config_settings.config,
        SCHEMA,
    )
except ConfigError as err:
    sys.exit(f"{err}\nFix the config file (the schema is {SCHEMA}).")

# The config file in effect (the last --configfile, else the Snakefile's default), for the report.
CONFIG_FILE = (
    str(workflow.configfiles[-1]) if workflow.configfiles else "config/quick.yaml"
)


def code_inputs(rule, *extra):
    """A rule's code inputs: the src/sigprop files its command imports (sigprop.codehash.ENTRY_POINTS)."""
    return code_files(rule, extra, src="src", root=workflow.basedir)


JOBS = {
    job.path: job
    for name, exp in config["experiments"].items()
    if name not in TRAINING_EXPERIMENTS
    for job in experiment_jobs(name, exp, EXPERIMENT_KINDS[name])
}
STEMS = {spec.stem: key for key, spec in FIGURES.items()}


# Every wildcard's pattern, for every rule (a rule declared after this directive matches only these).
wildcard_constraints:
    figure="|".join(FIGURES),
    stem="|".join(STEMS),
    target=r"fig[0-9]+",
    dataset="|".join(DATASETS),
    seeds=r"\d+-\d+",
    seed=r"\d+",
    layers=r"\d+",
    lr=r"[0-9.e+-]+",


def retry_mem_mb(wildcards, attempt):
    """Memory of a simulation job: 4000 MB, times the attempt (a job rerun with --retries gets more)."""
    return 4000 * attempt


def seed_files(experiment):
    """One raw table per seed of an experiment trained by its own rule (registry.TRAINING_EXPERIMENTS)."""
    seeds = range(int(config["experiments"][experiment]["seeds"]))
    return [f"results/raw/{experiment}/seed~{s}.parquet" for s in seeds]


def toy_params(wildcards):
    """Fig 5's toy run parameters as JSON (experiments.toy_reversal.fixed; no grid)."""
    exp = config["experiments"]["toy_reversal"]
    if exp.get("grid") or exp.get("inner"):
        raise ValueError(
            "experiments.toy_reversal takes fixed values and seeds only (no grid or inner)"
        )
    return json.dumps(exp["fixed"], sort_keys=True)


def figure_files(figure):
    """The PDF and PNG of a figure."""
    stem = figure_spec(figure).stem
    return [f"figures/{stem}.pdf", f"figures/{stem}.png"]


def target_figure_files(wildcards):
    """The figure a target such as `fig7` names (an unknown one stops with the list of figures)."""
    return figure_files(wildcards.target)


def job_spec(wildcards):
    """The JSON spec of one seed-level job."""
    path = f"results/raw/{wildcards.experiment}/{wildcards.point}/seeds~{wildcards.seeds}.parquet"
    if path not in JOBS:
        raise ValueError(
            f"{path} is not a job of this config; its experiments are: {', '.join(config['experiments'])}"
        )
    return JOBS[path].spec


def figure_tables(figure):
    """The aggregated tables a figure plots: its own first."""
    return [
        f"results/aggregated/{t}.parquet" for t in (figure, *figure_spec(figure).tables)
    ]


def remove_partial_files():
    """Before the first job: delete the temporary files of writes killed mid-way (sigprop.io.atomic_path), only
    those whose writer cannot be alive: another run's live job in this directory keeps its files.
    """
    from sigprop.io import remove_partial_files as remove

    removed = remove("results", "figures")
    if removed:
        print(
            f"removed {len(removed)} partial file(s) left by an interrupted run, e.g. {removed[0]}"
        )


def print_checks_summary():
    """The one-line summary of results/checks.csv, at the end of a run."""
    import pandas as pd

    from sigprop.analysis.checks import summary

    if Path("results/checks.csv").exists():
        try:  # a file that is empty, truncated or not the checks table: say so, not a traceback
            print(summary(pd.read_csv("results/checks.csv")))
        except (ValueError, KeyError, AttributeError) as err:
            print(
                f"results/checks.csv cannot be summarised ({type(err).__name__}: {err}); rebuild it with"
                " `snakemake --cores 1 --forcerun checks results/checks.csv`"
            )
