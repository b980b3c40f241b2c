"""The one command line of sigprop: sigprop COMMAND (or python -m sigprop COMMAND).

Every workflow rule runs one of these commands (sigprop COMMAND --help for its arguments):

  init-time figures  simulate, aggregate, plot, checks
  Fig 5 (toy task)   train-toy
  Fig S1             simulate-method-init
  Fig S7             simulate-probe; probe (real architectures at init, a printed table; needs ".[models]")
  IWSLT'14 data      data-status, data-prepare, data-binarize, data-locate
  translation        train-translation, select-lr, evaluate-translation, table1, table2
  configs            check-config FILE (YAML syntax, naming the line, and the schema)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

# Only what every subcommand needs at module level: each subcommand imports its own modules, so that a job's
# code inputs (sigprop.codehash, from these imports) are the modules it runs.
from sigprop.io import BadInput, UnreadableTable, config_hash, provenance, read_table, write_table


def simulate(args: argparse.Namespace) -> None:
    """Run one seed-level job and write its raw tidy table."""
    from sigprop.codehash import code_hash
    from sigprop.tasks.init_time import run_point

    spec = json.loads(args.spec)
    start = time.perf_counter()
    df = run_point(spec["run"], spec["fixed"], spec["point"], spec["inner"], spec["seeds"])
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
    # the aggregate functions' home, imported for the job's code inputs (sigprop.codehash reads imports); the
    # rule adds the module of a function the registry names elsewhere (aggregate.smk)
    import sigprop.analysis.aggregate  # noqa: F401
    from sigprop.analysis.registry import figure_spec
    from sigprop.io import read_tables

    key = Path(args.out).stem
    spec = figure_spec(key)
    run = spec.function("aggregate")
    if args.grid:
        from sigprop.grid import iter_points

        source = pd.DataFrame(iter_points(json.loads(args.grid)))
    else:
        source = read_tables(args.raw)
    table = run(source)
    write_table(table, args.out, provenance(figure=key, inputs=len(args.raw)))


def plot(args: argparse.Namespace) -> None:
    """Draw one figure from aggregated tables; write PDF and PNG."""
    from sigprop.analysis.registry import figure_spec
    from sigprop.plotting.style import Style, save

    key = Path(args.tables[0]).stem
    draw = figure_spec(key).function("plot")  # its module is a code input of the job (plot.smk)
    tables = {Path(p).stem: read_table(p) for p in args.tables}
    style = Style.from_config(json.loads(args.style))
    save(draw(tables, style), args.out, style.dpi)


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


def simulate_method_init(args: argparse.Namespace) -> None:
    """Fig S1: Table 1's translation models at initialisation on IWSLT'14 batches; write the raw tidy table."""
    from sigprop.tasks.translation.initprobe import run

    _torch_threads()
    spec = json.loads(args.spec)
    start = time.perf_counter()
    df = run(spec, args.data)
    meta = provenance(config=args.config_name, config_hash=config_hash(spec), experiment=spec["experiment"],
                      point=spec["point"], seeds=spec["seeds"], wall_s=round(time.perf_counter() - start, 3))
    write_table(df, args.out, meta)


def simulate_probe(args: argparse.Namespace) -> None:
    """Fig S7: one job of real architectures (transformers) probed at initialisation; write the raw tidy table."""
    from sigprop.tasks.probe import MissingExtra
    from sigprop.tasks.probe.adapters import run

    _torch_threads()
    spec = json.loads(args.spec)
    start = time.perf_counter()
    try:
        df = run(spec)
    except MissingExtra as err:
        sys.exit(f"sigprop simulate-probe: {err}")
    import transformers

    meta = provenance(config=args.config_name, config_hash=config_hash(spec), experiment=spec["experiment"],
                      point=spec["point"], seeds=spec["seeds"], transformers=transformers.__version__,
                      wall_s=round(time.perf_counter() - start, 3))
    write_table(df, args.out, meta)


def probe(args: argparse.Namespace) -> None:
    """Fig S7's probe from the command line: build real architectures at init at each depth and print the table."""
    from sigprop.config import load_layered
    from sigprop.tasks.probe import ARMS, MissingExtra
    from sigprop.tasks.probe.adapters import probe_table

    fixed = load_layered(args.config)[0]["experiments"]["model_probe"]["fixed"]
    models = list(ARMS) if args.model == "all" else [args.model]
    if not set(models) <= set(ARMS):
        sys.exit(f"sigprop probe: --model {args.model!r}: use one of {', '.join(ARMS)} or all")
    try:
        layers = [int(v) for v in args.layers.split(",")]
    except ValueError:
        sys.exit(f"sigprop probe: --layers {args.layers!r}: give depths separated by commas, e.g. 12,24,48")
    try:
        table = probe_table(fixed, models, layers, list(range(args.seeds)))
    except MissingExtra as err:
        sys.exit(f"sigprop probe: {err}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))


def data_status(args: argparse.Namespace) -> None:
    """Locate the raw data of a dataset; write the status JSON (never fails: a missing copy is a status too)."""
    from sigprop.data.iwslt.status import write_status

    _log_info()
    out = write_status(
        args.out,
        dataset=args.dataset,
        local_dir=args.local_dir or None,
        url=args.url or None,
        sha256=args.sha256 or None,
        cache_dir=args.cache_dir,
        timeout=args.timeout,
    )
    print(json.dumps(out, indent=2))


def data_prepare(args: argparse.Namespace) -> None:
    """Preprocess the raw data as fairseq does into ``--out``: the copy a status JSON names, or one located now."""
    from sigprop.data.iwslt.corpus import DEFAULT_URL
    from sigprop.data.iwslt.fetch import DataUnavailableError, locate_source
    from sigprop.data.iwslt.preprocess import prepare
    from sigprop.data.iwslt.status import read_status

    _log_info()
    if args.status:
        given = [f"--{name}" for name in ("source", "url", "sha256") if getattr(args, name) is not None]
        if given:
            sys.exit(f"sigprop data-prepare: {', '.join(given)} go with --dataset; --status names its copy already")
        located = read_status(args.status)
        if not located["available"]:
            sys.exit(f"sigprop data-prepare: {located['message']}")
        dataset, source = located["dataset"], located["source"]
    else:
        dataset = args.dataset
        url = DEFAULT_URL if args.url is None else args.url or None
        try:
            source = locate_source(args.source, url, args.sha256, args.cache_dir, dataset=dataset,
                                   timeout=args.timeout)
        except DataUnavailableError as exc:
            sys.exit(f"sigprop data-prepare: {exc}")
    res = prepare(dataset, source, args.out, args.bpe_codes)
    print(json.dumps({k: res[k] for k in ("dataset", "splits", "bpe")}, indent=2))


def data_binarize(args: argparse.Namespace) -> None:
    """Build ``dict.txt`` and ``{split}.pt`` from the prepared text files in ``--dir``."""
    from sigprop.data.iwslt.binarize import binarize

    _log_info()
    print(json.dumps(binarize(args.dir, threshold=args.threshold, padding_factor=args.padding_factor), indent=2))


def data_locate(args: argparse.Namespace) -> None:
    """Print the raw-data directory that ``data-prepare --dataset`` would use (downloading it if needed)."""
    from sigprop.data.iwslt.corpus import DEFAULT_URL
    from sigprop.data.iwslt.fetch import DataUnavailableError, locate_source

    _log_info()
    url = DEFAULT_URL if args.url is None else args.url or None
    try:
        print(locate_source(args.source, url, args.sha256, args.cache_dir, dataset=args.dataset,
                            timeout=args.timeout))
    except DataUnavailableError as exc:
        sys.exit(f"sigprop data-locate: {exc}")


def train_translation(args: argparse.Namespace) -> None:
    """One translation training run (no evaluation: that is ``evaluate-translation``, a rule of its own)."""
    from sigprop.tasks.translation.job import train, train_prefix

    _log_info()
    _torch_threads()
    if args.lr_point is not None:
        summary = train_prefix(json.loads(args.spec), args.data, args.out_dir, args.lr_point)
    else:
        summary = train(json.loads(args.spec), args.data, args.out_dir, progress=True if args.progress else None,
                        selection_file=args.selection)
    print(json.dumps(summary, indent=2, default=str))


def select_lr(args: argparse.Namespace) -> None:
    """The lr selection of one method from its grid points' prefix runs (one edge extension trained if needed)."""
    from sigprop.tasks.translation.job import train_prefix
    from sigprop.tasks.translation.selection import select

    _log_info()
    _torch_threads()
    sel = select(json.loads(args.spec), args.points, args.data, args.out, train_prefix)
    print(json.dumps(sel, indent=2, default=str))


def evaluate_translation(args: argparse.Namespace) -> None:
    """Beam search and BLEU of a trained run's best checkpoint (float32)."""
    from sigprop.tasks.translation.evaluation import evaluate_run

    _log_info()
    _torch_threads()
    summary = evaluate_run(json.loads(args.spec), args.data, args.run_dir)
    print(json.dumps(summary, indent=2, default=str))


def table1(args: argparse.Namespace) -> None:
    """Eval tables -> the aggregated Table 1 and its csv/tex/png."""
    from sigprop.plotting import tables

    _log_info()
    tables.write_table1(args.evals, args.aggregated, args.out_dir, json.loads(args.style))


def table2(args: argparse.Namespace) -> None:
    """The config -> Table 2 csv/tex/png."""
    from sigprop.plotting import tables

    _log_info()
    tables.write_table2(json.loads(args.config), args.out_dir, json.loads(args.style))


def _log_info() -> None:
    """INFO messages to the job's log (stderr), with the time."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _torch_threads() -> None:
    """Use ``$OMP_NUM_THREADS`` torch threads when it is set (the rules set it to the job's threads)."""
    import os

    import torch

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _dataset(name: str) -> str:
    """The ``--dataset`` argument: a name of ``sigprop.data.iwslt.corpus.DATASETS`` (imported only when used)."""
    from sigprop.data.iwslt.corpus import check_dataset

    try:
        check_dataset(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``sigprop COMMAND ...`` (the console script) or ``python -m sigprop COMMAND ...``."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyError as err:
        if args.func not in (simulate, train_toy, aggregate, plot, run_checks):
            raise  # a bug, not bad input: keep the traceback
        sys.exit(f"sigprop {args.command}: {err.args[0]}")
    except UnreadableTable as err:
        sys.exit(unreadable_message(args, err))
    except BadInput as err:  # a refused file or value: its message names it and the fix
        sys.exit(f"sigprop {args.command}: {err}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each sets ``func``, the function that runs it."""
    parser = argparse.ArgumentParser(prog="sigprop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    add_translation_commands(sub)
    add_probe_commands(sub)
    for p in sub.choices.values():  # `sigprop COMMAND --help` opens with what the command does
        p.description = p.description or p.get_default("func").__doc__
    return parser


def add_probe_commands(sub: argparse._SubParsersAction) -> None:
    """Fig S7's commands: the workflow's job and the probe with its printed table (torch is imported when they run)."""
    p = sub.add_parser("simulate-probe", help="one Fig S7 job: real architectures (transformers) at initialisation")
    p.add_argument("--spec", required=True, help="JSON job spec (experiments.model_probe, from the workflow)")
    p.add_argument("--config-name", default="unnamed")
    p.add_argument("--out", required=True)
    p.set_defaults(func=simulate_probe)
    p = sub.add_parser("probe", help="probe GPT-2, BERT, Llama or ViT at init per depth, print a table "
                                     '(needs pip install -e ".[models]")')
    p.add_argument("--model", default="gpt2", help="gpt2, bert, llama, vit or all (every arm of each)")
    p.add_argument("--layers", default="12,24,48", help="depths, comma-separated")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (weights; the batch is fixed)")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "config" / "paper.yaml"),
                   help="the sizes: experiments.model_probe.fixed of this config (default: the paper config)")
    p.set_defaults(func=probe)


def add_translation_commands(sub: argparse._SubParsersAction) -> None:
    """The commands of Fig S1, the IWSLT'14 data and the translation runs."""
    p = sub.add_parser("simulate-method-init", help="one Fig S1 job: translation models at initialisation")
    p.add_argument("--spec", required=True, help="JSON job spec (sigprop.tasks.translation.plan.method_init_spec)")
    p.add_argument("--data", required=True, help="binarised dataset directory (results/data/<dataset>)")
    p.add_argument("--config-name", default="unnamed")
    p.add_argument("--out", required=True)
    p.set_defaults(func=simulate_method_init)

    def add_locate_args(p: argparse.ArgumentParser, url_help: str, prefix: str = "") -> None:
        p.add_argument("--url", default=None, help=prefix + url_help)
        p.add_argument("--sha256", default=None, help=prefix + "expected sha256 of the archive")
        p.add_argument("--cache-dir", default="data/cache/iwslt14", help="download and extract here")
        p.add_argument("--timeout", type=float, default=60.0, help="network timeout (s)")

    dataset_help = "dataset name, one of sigprop.data.iwslt.corpus.DATASETS (docs/translation.md)"
    source_help = "local raw-data directory (config data.local_dir); else $SIGPROP_IWSLT_DIR, the cache, a download"
    download = "download URL ('' for none; default: fairseq's de-en.tgz)"
    p = sub.add_parser("data-status", help="locate the raw data of a dataset, write a status JSON (never fails)")
    p.add_argument("--dataset", type=_dataset, metavar="DATASET", required=True, help=dataset_help)
    p.add_argument("--out", required=True, help="the status JSON")
    p.add_argument("--local-dir", default="", help=source_help)
    add_locate_args(p, "download URL (default: none, no download)")
    p.set_defaults(func=data_status)
    p = sub.add_parser("data-prepare", help="preprocess the raw data as fairseq does (BPE'd text files) into --out")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--status", help="a status JSON of data-status: prepare the copy it located")
    which.add_argument("--dataset", type=_dataset, metavar="DATASET", help=f"locate it now: {dataset_help}")
    p.add_argument("--out", required=True)
    p.add_argument("--bpe-codes", default=None, help="BPE codes file (default: the source's or learned)")
    p.add_argument("--source", default=None, help=f"with --dataset: {source_help}")
    add_locate_args(p, download, prefix="with --dataset: ")
    p.set_defaults(func=data_prepare)
    p = sub.add_parser("data-binarize", help="build dict.txt and {split}.pt in a prepared directory")
    p.add_argument("--dir", required=True, help="the directory data-prepare wrote")
    p.add_argument("--threshold", type=int, default=0)
    p.add_argument("--padding-factor", type=int, default=8)
    p.set_defaults(func=data_binarize)
    p = sub.add_parser("data-locate", help="print the raw-data directory data-prepare --dataset would use")
    p.add_argument("--dataset", type=_dataset, metavar="DATASET", default="iwslt14", help=dataset_help)
    p.add_argument("--source", default=None, help=source_help)
    add_locate_args(p, download)
    p.set_defaults(func=data_locate)

    p = sub.add_parser("train-translation", help="one translation training run (log, best checkpoint, summary)")
    p.add_argument("--spec", required=True, help="JSON run spec (sigprop.tasks.translation.plan.run_spec)")
    p.add_argument("--data", required=True, help="binarised dataset directory")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--progress", action="store_true", help="tqdm bar even when stderr is not a terminal")
    p.add_argument("--selection", default=None, help="selection.json of the method (an optimiser with an lr grid)")
    p.add_argument("--lr-point", type=float, default=None,
                   help="train one lr grid point of seed 0 up to the selection update (prefix.json, last.pt)")
    p.set_defaults(func=train_translation)
    p = sub.add_parser("select-lr", help="select a method's lr from its grid points (successive halving)")
    p.add_argument("--spec", required=True, help="JSON run spec of the method's seed 0 at the selection depth")
    p.add_argument("--data", required=True, help="binarised dataset directory")
    p.add_argument("--out", required=True, help="selection.json to write")
    p.add_argument("points", nargs="+", help="the grid points' prefix.json")
    p.set_defaults(func=select_lr)
    p = sub.add_parser("evaluate-translation", help="beam search + BLEU of a trained run's best checkpoint")
    p.add_argument("--spec", required=True, help="JSON run spec with its evaluation section")
    p.add_argument("--data", required=True, help="binarised dataset directory")
    p.add_argument("--run-dir", required=True, help="the training run's directory (checkpoint_best.pt, train.json)")
    p.set_defaults(func=evaluate_translation)
    p = sub.add_parser("table1", help="eval tables -> aggregated Table 1 and its csv/tex/png")
    p.add_argument("--aggregated", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--style", default="{}")
    p.add_argument("evals", nargs="+")
    p.set_defaults(func=table1)
    p = sub.add_parser("table2", help="config -> Table 2 csv/tex/png")
    p.add_argument("--config", required=True, help="JSON: name, methods, translation")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--style", default="{}")
    p.set_defaults(func=table2)


def unreadable_message(args: argparse.Namespace, err: UnreadableTable) -> str:
    """What to do about a corrupt input table: the file, and the command that rebuilds it and what it feeds."""
    out = Path(args.tables[0] if args.command == "plot" else getattr(args, "out", None) or args.aggregated).stem
    target = f" {out}" if out.startswith("fig") else ""  # the figure's named target (`snakemake fig07`)
    return (
        f"sigprop {args.command}: {err}.\nThe file is corrupt or incomplete; this job made no output (the next run"
        " tries again). Remove it and rebuild it (with every table and figure made from it):\n"
        f"  rm '{err.path}' && snakemake --cores 1{target}\n(add the --configfile of this run, if it had one)"
    )


if __name__ == "__main__":
    main()
