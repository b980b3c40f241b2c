# Helpers shared by every .smk file (config validation, the job table, file lists per figure).
import json
import sys
from pathlib import Path

from sigprop.config import ConfigError, experiment_jobs, validate_config
from sigprop.figures import EXPERIMENT_KINDS, FIGURES, TRAINING_EXPERIMENTS, figure_spec

# Jobs run the code in this checkout's src/ (the files the rules declare as inputs).
SRC_ABS = Path.cwd() / "src"
shell.prefix(f"export PYTHONPATH='{SRC_ABS}':$PYTHONPATH; ")

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    validate_config(config, SCHEMA)
except ConfigError as err:
    sys.exit(f"{err}\nFix the config file (the schema is {SCHEMA}).")

# The config file in effect (the last --configfile, else the Snakefile's default), for the report.
CONFIG_FILE = (
    str(workflow.configfiles[-1]) if workflow.configfiles else "config/quick.yaml"
)

SRC = Path("src/sigprop")
SIMULATION_CODE = [str(SRC / f) for f in ("model.py", "measure.py", "experiments.py")]
AGGREGATION_CODE = [str(SRC / f) for f in ("aggregation.py", "theory.py")]
TOY_CODE = [
    str(SRC / f)
    for f in (
        "model.py",
        "measure.py",
        "toy.py",
        "train/loop.py",
        "train/data.py",
        "train/schedules.py",
    )
]

JOBS = {
    job.path: job
    for name, exp in config["experiments"].items()
    if name not in TRAINING_EXPERIMENTS
    for job in experiment_jobs(name, exp, EXPERIMENT_KINDS[name])
}
STEMS = {spec.stem: key for key, spec in FIGURES.items()}


def raw_files(figure):
    """Raw tables of every experiment a figure reads."""
    spec = figure_spec(figure)
    if spec.translation:
        return translation_raw_files(figure)  # workflow/rules/translation.smk
    if not spec.raw:
        return []
    missing = [e for e in spec.experiments if e not in config["experiments"]]
    if missing:
        raise ValueError(f"{figure} needs experiments.{missing[0]} in the config")
    jobs = [path for path, job in JOBS.items() if job.experiment in spec.experiments]
    return jobs + [
        f for e in spec.experiments if e in TRAINING_EXPERIMENTS for f in seed_files(e)
    ]


def seed_files(experiment):
    """One raw table per seed of an experiment trained by its own rule (figures.TRAINING_EXPERIMENTS)."""
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


def job_spec(wildcards):
    """The JSON spec of one seed-level job."""
    path = f"results/raw/{wildcards.experiment}/{wildcards.point}/seeds~{wildcards.seeds}.parquet"
    if path not in JOBS:
        raise ValueError(
            f"{path} is not a job of this config; its experiments are: {', '.join(config['experiments'])}"
        )
    return JOBS[path].spec


def plot_inputs(wildcards):
    """Tables and plotting code of one figure (its module, the shared style, shared layouts)."""
    key = STEMS[wildcards.stem]
    spec = FIGURES[key]
    return {
        "tables": [f"results/aggregated/{t}.parquet" for t in (key, *spec.tables)],
        "code": [
            str(SRC / "plotting" / f"{m}.py") for m in (key, "style", *spec.helpers)
        ],
    }


def print_checks_summary():
    """The one-line summary of results/checks.csv, at the end of a run."""
    import pandas as pd

    from sigprop.checks import summary

    if Path("results/checks.csv").exists():
        print(summary(pd.read_csv("results/checks.csv")))
