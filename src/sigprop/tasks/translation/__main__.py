"""``python -m sigprop.tasks.translation {status,prepare,train,evaluate,table1,table2}`` (workflow rules)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from sigprop.data.iwslt.corpus import DATASETS


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="python -m sigprop.tasks.translation", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("status", help="locate the raw data of a dataset, write a status JSON (never fails)")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--local-dir", default="")
    p.add_argument("--url", default="")
    p.add_argument("--sha256", default="")
    p.add_argument("--cache-dir", default="data/cache/iwslt14")
    p.add_argument("--timeout", type=float, default=60.0)
    p = sub.add_parser("prepare", help="preprocess the located data as fairseq into --out")
    p.add_argument("--status", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("train", help="one training run (log, best checkpoint, training summary)")
    p.add_argument("--spec", required=True, help="JSON run spec (sigprop.tasks.translation.plan.run_spec)")
    p.add_argument("--data", required=True, help="binarised dataset directory")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--progress", action="store_true", help="tqdm bar even when stderr is not a terminal")
    p = sub.add_parser("evaluate", help="beam search + BLEU of a trained run's best checkpoint")
    p.add_argument("--spec", required=True, help="JSON run spec with its evaluation section")
    p.add_argument("--data", required=True, help="binarised dataset directory")
    p.add_argument("--run-dir", required=True, help="the training run's directory (checkpoint_best.pt, train.json)")
    p = sub.add_parser("table1", help="eval tables -> aggregated Table 1 and its csv/tex/png")
    p.add_argument("--aggregated", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--style", default="{}")
    p.add_argument("evals", nargs="+")
    p = sub.add_parser("table2", help="config -> Table 2 csv/tex/png")
    p.add_argument("--config", required=True, help="JSON: name, methods, translation")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--style", default="{}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return COMMANDS[args.cmd](args)


# One function per subcommand, each importing what it runs: a job's code inputs are the modules its
# subcommand imports (sigprop.codehash reads these imports).
def status(args: argparse.Namespace) -> int:
    """Locate the raw data of a dataset; write the status JSON (never fails)."""
    from sigprop.tasks.translation.datastatus import write_status

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
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Preprocess the located raw data as fairseq does."""
    from sigprop.data.iwslt import preprocess
    from sigprop.tasks.translation.datastatus import read_status

    located = read_status(args.status)
    if not located["available"]:
        print(f"error: {located['message']}", file=sys.stderr)
        return 2
    res = preprocess.prepare(located["dataset"], located["source"], args.out)
    print(json.dumps({k: res[k] for k in ("dataset", "splits", "bpe")}, indent=2))
    return 0


def train(args: argparse.Namespace) -> int:
    """One training run (no evaluation: that is the ``evaluate`` subcommand, a rule of its own)."""
    import torch

    from sigprop.tasks.translation.job import train as train_run

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    summary = train_run(json.loads(args.spec), args.data, args.out_dir, progress=True if args.progress else None)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Beam search and BLEU of a trained run's best checkpoint (float32)."""
    import torch

    from sigprop.tasks.translation.evaluation import evaluate_run

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    summary = evaluate_run(json.loads(args.spec), args.data, args.run_dir)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def table1(args: argparse.Namespace) -> int:
    """Eval tables -> the aggregated Table 1 and its csv/tex/png."""
    from sigprop.plotting import tables

    tables.write_table1(args.evals, args.aggregated, args.out_dir, json.loads(args.style))
    return 0


def table2(args: argparse.Namespace) -> int:
    """The config -> Table 2 csv/tex/png."""
    from sigprop.plotting import tables

    tables.write_table2(json.loads(args.config), args.out_dir, json.loads(args.style))
    return 0


COMMANDS = {
    "status": status,
    "prepare": prepare,
    "train": train,
    "evaluate": evaluate,
    "table1": table1,
    "table2": table2,
}


if __name__ == "__main__":
    sys.exit(main())
