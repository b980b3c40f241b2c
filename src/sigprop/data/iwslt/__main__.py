"""``python -m sigprop.data.iwslt {prepare,binarize,locate}``: the data steps from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import sigprop.data.iwslt as package
from sigprop.data.iwslt.corpus import CONFIG_KEY, DATASETS, DEFAULT_URL, ENV_VAR


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``prepare``, ``binarize`` and ``locate`` sub-commands."""
    ap = argparse.ArgumentParser(
        prog="python -m sigprop.data.iwslt", description=(package.__doc__ or "").split("\n")[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add_locate_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=DEFAULT_URL, help="download URL (fairseq's de-en.tgz)")
        p.add_argument("--sha256", default=None, help="expected sha256 of the archive")
        p.add_argument("--cache-dir", default="data/cache/iwslt14", help="download/extract here")
        p.add_argument("--timeout", type=float, default=60.0, help="network timeout (s)")

    p = sub.add_parser("prepare", help="preprocess + BPE into --out")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--source", default=None,
                   help=f"local raw-data dir (config {CONFIG_KEY}); "
                   f"else ${ENV_VAR}, cache, download")
    p.add_argument("--out", required=True)
    p.add_argument("--bpe-codes", default=None)
    add_locate_args(p)

    p = sub.add_parser("binarize", help="build dict.txt and {split}.pt in --dir")
    p.add_argument("--dir", required=True)
    p.add_argument("--threshold", type=int, default=0)
    p.add_argument("--padding-factor", type=int, default=8)

    p = sub.add_parser("locate", help="print the raw-data directory that would be used")
    p.add_argument("--dataset", choices=DATASETS, default="iwslt14")
    p.add_argument("--source", default=None)
    add_locate_args(p)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return COMMANDS[args.cmd](args)


# One function per subcommand, each importing what it runs: a job's code inputs are the modules its
# subcommand imports (sigprop.codehash reads these imports).
def binarize(args: argparse.Namespace) -> int:
    """Build ``dict.txt`` and ``{split}.pt`` from the prepared text files."""
    from sigprop.data.iwslt.binarize import binarize as run

    res = run(args.dir, threshold=args.threshold, padding_factor=args.padding_factor)
    print(json.dumps(res, indent=2))
    return 0


def locate(args: argparse.Namespace) -> int:
    """Print the raw-data directory that would be used."""
    from sigprop.data.iwslt.fetch import DataUnavailableError, locate_source

    try:
        print(locate_source(args.source, args.url, args.sha256, args.cache_dir,
                            dataset=args.dataset, timeout=args.timeout))
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Locate the raw data, then preprocess it as fairseq does into ``--out``."""
    from sigprop.data.iwslt.fetch import DataUnavailableError, locate_source
    from sigprop.data.iwslt.preprocess import prepare as run

    try:
        src = locate_source(args.source, args.url, args.sha256, args.cache_dir,
                            dataset=args.dataset, timeout=args.timeout)
        res = run(args.dataset, src, args.out, args.bpe_codes)
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: res[k] for k in ("dataset", "splits", "bpe")}, indent=2))
    return 0


COMMANDS = {"binarize": binarize, "locate": locate, "prepare": prepare}

if __name__ == "__main__":
    sys.exit(main())
