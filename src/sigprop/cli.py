"""Command line used by the Snakemake rules: ``python -m sigprop {simulate,train-toy,aggregate,plot,checks}``.

``python -m sigprop check-config FILE`` checks a config file's YAML syntax (naming the line) and its schema.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import pandas as pd

# Only what every subcommand needs at module level: each subcommand imports its own modules, so that a job's
# code inputs (sigprop.codehash, from these imports) are the modules it runs.
from sigprop.io import UnreadableTable, config_hash, provenance, read_table, write_table


def simulate(args: argparse.Namespace) -> None:
    """Run one seed-level job and write its raw tidy table."""
    from sigprop.codehash import code_hash
    from sigprop.tasks.init_time import run_point

    spec = json.loads(args.spec)
    start = time.perf_counter()
    df = run_point(spec["kind"], spec["fixed"], spec["point"], spec["inner"], spec["seeds"])
    meta = provenance(
        config=args.config_name,
        config_hash=config_hash(spec),
        code_hash=code_hash("simulate"),  # the files of the rule's code inputs (sigprop.codehash)
        experiment=spec["experiment"],
        point=spec["point"],
        seeds=spec["seeds"],
        wall_s=round(time.perf_counter() - start, 3),
    )
    write_table(df, args.out, meta)


def train_toy(args: argparse.Namespace) -> None:
    """Train one seed of Fig 5's toy task and write its raw tidy table (checkpoints removed on success)."""
    import logging
    import shutil

    from sigprop.codehash import code_hash
    from sigprop.tasks.toy_reversal import run_toy

    # INFO to the rule's log: "resumed from <checkpoint> at update N" after a killed job (sigprop.train.loop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = json.loads(args.params)
    start = time.perf_counter()
    df = run_toy(params, args.seed, checkpoint_dir=args.checkpoint_dir, log_path=args.metrics_log, progress=None)
    meta = provenance(config=args.config_name, config_hash=config_hash({"params": params, "seed": args.seed}),
                      code_hash=code_hash("train_toy"),
                      experiment="toy_reversal", params=params, seed=args.seed,
                      wall_s=round(time.perf_counter() - start, 3))
    write_table(df, args.out, meta)
    if args.checkpoint_dir:
        shutil.rmtree(args.checkpoint_dir, ignore_errors=True)


def aggregate(args: argparse.Namespace) -> None:
    """Aggregate a figure's raw tables (or, for theory-only figures, its grid) into one table."""
    from sigprop.analysis import aggregate
    from sigprop.analysis.registry import figure_spec
    from sigprop.io import read_tables

    key = Path(args.out).stem
    figure_spec(key)
    if args.grid:
        from sigprop.config import iter_points

        source = pd.DataFrame(iter_points(json.loads(args.grid)))
    else:
        source = read_tables(args.raw)
    table = aggregate.AGGREGATORS[key](source)
    write_table(table, args.out, provenance(figure=key, inputs=len(args.raw)))


def plot(args: argparse.Namespace) -> None:
    """Draw one figure from aggregated tables; write PDF and PNG."""
    from sigprop.analysis.registry import figure_spec
    from sigprop.plotting.style import Style, save

    key = Path(args.tables[0]).stem
    figure_spec(key)
    tables = {Path(p).stem: read_table(p) for p in args.tables}
    style = Style.from_config(json.loads(args.style))
    module = importlib.import_module(f"sigprop.plotting.{key}")  # a code input of its plot job (plot.smk)
    save(module.plot(tables, style), args.out, style.dpi)


def run_checks(args: argparse.Namespace) -> None:
    """Compute results/checks.csv from aggregated tables and print the one-line summary."""
    from sigprop.analysis import checks
    from sigprop.io import atomic_path

    tables = {Path(p).stem: read_table(p) for p in args.tables}
    df = checks.run_checks(tables)
    with atomic_path(args.out) as tmp:
        df.to_csv(tmp, index=False)
    print(checks.summary(df))


def check_config(args: argparse.Namespace) -> None:
    """Check config files: YAML syntax (file, line, column) and the schema; exit 1 on the first bad one."""
    from sigprop.config import ConfigError, check_config_file

    for path in args.files:
        try:
            check_config_file(path, args.schema)
        except ConfigError as err:
            sys.exit(f"{path}: {err}" if not str(err).startswith(str(path)) else str(err))
        print(f"{path}: valid")


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="sigprop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="one seed-level job")
    p.add_argument("--spec", required=True, help="JSON job spec (from the workflow)")
    p.add_argument("--config-name", default="unnamed")
    p.add_argument("--out", required=True)
    p.set_defaults(func=simulate)
    p = sub.add_parser("train-toy", help="one seed of Fig 5's toy sequence-reversal training")
    p.add_argument("--params", required=True, help="JSON parameters (experiments.toy_reversal.fixed)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--config-name", default="unnamed")
    p.add_argument("--checkpoint-dir", help="resume from / save checkpoints here (deleted after success)")
    p.add_argument("--metrics-log", help="JSON-lines log written while training")
    p.add_argument("--out", required=True)
    p.set_defaults(func=train_toy)
    p = sub.add_parser("aggregate", help="raw tables -> results/aggregated/<figure>.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--grid", help="JSON experiment config, for theory-only figures")
    p.add_argument("raw", nargs="*")
    p.set_defaults(func=aggregate)
    p = sub.add_parser("plot", help="aggregated tables -> figures/<stem>.{pdf,png}")
    p.add_argument("--out", required=True)
    p.add_argument("--style", default="{}")
    p.add_argument("tables", nargs="+", help="the figure's own table first")
    p.set_defaults(func=plot)
    p = sub.add_parser("checks", help="aggregated tables -> results/checks.csv")
    p.add_argument("--out", required=True)
    p.add_argument("tables", nargs="+")
    p.set_defaults(func=run_checks)
    p = sub.add_parser("check-config", help="YAML syntax (with the line) and schema of config files")
    p.add_argument("files", nargs="+")
    p.add_argument("--schema", default=str(Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"))
    p.set_defaults(func=check_config)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyError as err:
        sys.exit(f"sigprop {args.command}: {err.args[0]}")
    except UnreadableTable as err:
        sys.exit(unreadable_message(args, err))


def unreadable_message(args: argparse.Namespace, err: UnreadableTable) -> str:
    """What to do about a corrupt input table: the file, and the command that rebuilds it and what it feeds."""
    out = Path(args.out).stem if args.command != "plot" else Path(args.tables[0]).stem
    target = f" {out}" if out.startswith("fig") else ""  # the figure's named target (`snakemake fig07`)
    return (
        f"sigprop {args.command}: {err}.\nThe file is corrupt or incomplete; this job's previous outputs are kept."
        f" Remove it and rebuild it (with every table and figure made from it):\n"
        f"  rm '{err.path}' && snakemake --cores 1{target}\n(add the --configfile of this run, if it had one)"
    )


if __name__ == "__main__":
    main()
