"""Where the time of one training update goes: a ``torch.profiler`` breakdown by part of the model.

The update is the one ``bench/train_throughput.py`` times (batch collation, forward, label-smoothed loss,
backward, AdamW step inside the pipeline's :class:`sigprop.train.Trainer`), for the models of that script
(``ours`` = the pipeline's fast path, ``plain`` = our model on the plain path, ``torch`` =
``nn.Transformer``). Every operator's own (self) CPU time goes to one part:

* forward operators to the innermost scope they ran in: attention (``MultiHeadAttention`` /
  ``nn.MultiheadAttention``: Q/K/V and output projections, scores, softmax, attention dropout), feed-forward
  (``FeedForward`` / ``linear1``, its dropout, ``linear2``), layer norm, embedding (lookup x sqrt(d) +
  positions + dropout), read-out + loss (the tied vocabulary projection, log-softmax and label-smoothed
  NLL), the rest of the model (residual adds and their dropout, masks), collation, optimiser
  (``zero_grad`` and ``step``), and the loop's own bookkeeping (loss sums, finiteness check, device moves);
* backward operators to the scope of the forward operator that created them (autograd's sequence
  numbers link the two);
* the rest of the update's wall time, not inside any operator, is Python and dispatch overhead (with the
  profiler's own overhead included: the profiled update is slower than an unprofiled one, whose time is
  printed beside it).

    python bench/profile_step.py --preset small --max-tokens 1024 --models plain,ours,torch
    python bench/profile_step.py --preset cpu --max-tokens 2048 --models plain,ours,torch

Prints a table (ms per update and share) and writes ``bench/results/profile_<preset>_mt<max>_<time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402

from sigprop import model as sp_model  # noqa: E402
from sigprop.tasks.translation import methods  # noqa: E402

PARTS = ("attention", "feed-forward", "layer norm", "embedding", "read-out + loss", "rest of model",
         "collation", "optimiser", "loop bookkeeping")
SCOPE = "sp::"
OVERHEAD = "Python / dispatch overhead"


class Scope:
    """Module hooks that open a ``record_function`` scope around a module's forward."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def add(self, module: nn.Module, part: str) -> None:
        stack: list[Any] = []

        def pre(_m: nn.Module, _args: Any) -> None:
            rf = record_function(SCOPE + part)
            rf.__enter__()
            stack.append(rf)

        def post(_m: nn.Module, _args: Any, _out: Any) -> None:
            stack.pop().__exit__(None, None, None)

        self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def scoped(fn: Callable, part: str) -> Callable:
    """``fn`` inside a ``record_function`` scope."""

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with record_function(SCOPE + part):
            return fn(*args, **kwargs)

    return inner


def instrument(runner: tt.Runner) -> Scope:
    """Scopes on the parts of ``runner``'s model, its collation and its loss."""
    scope = Scope()
    model = runner.model
    scope.add(model, "rest of model")
    for m in model.modules():
        if isinstance(m, sp_model.MultiHeadAttention | nn.MultiheadAttention):
            scope.add(m, "attention")
        elif isinstance(m, sp_model.FeedForward):
            scope.add(m, "feed-forward")
        elif isinstance(m, nn.LayerNorm):
            scope.add(m, "layer norm")
        elif isinstance(m, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
            for sub in (m.linear1, m.dropout, m.linear2):
                scope.add(sub, "feed-forward")
    if hasattr(model, "features"):  # the fused loss calls features(), not forward()
        model.features = scoped(model.features, "rest of model")
    for name in ("embed_tokens", "_embed"):
        if hasattr(model, name):
            setattr(model, name, scoped(getattr(model, name), "embedding"))
    model.output_projection = scoped(model.output_projection, "read-out + loss")
    data = runner.trainer.data
    data.collate_fn = scoped(data.collate_fn, "collation")
    return scope


def _part_of(event: Any, seq_scope: dict[int, str], cache: dict[int, str]) -> str:
    """The part an event's self time belongs to (see the module docstring)."""
    chain = []
    e = event
    part = "loop bookkeeping"
    while e is not None:
        if e.id in cache:
            part = cache[e.id]
            break
        chain.append(e)
        name = e.name
        if name.startswith(SCOPE):
            part = name[len(SCOPE):]
            break
        if name.startswith("Optimizer."):
            part = "optimiser"
            break
        if name.startswith("autograd::engine::evaluate_function"):
            part = seq_scope.get(e.sequence_nr, "loop bookkeeping")
            break
        e = e.cpu_parent
    for c in chain:
        cache[c.id] = part
    return part


def _forward_scope(event: Any) -> str | None:
    e = event
    while e is not None:
        if e.name.startswith("autograd::engine::evaluate_function"):
            return None  # a backward operator
        if e.name.startswith(SCOPE):
            return e.name[len(SCOPE):]
        if e.name.startswith("Optimizer."):
            return "optimiser"
        e = e.cpu_parent
    return "loop bookkeeping"


def breakdown(prof: Any, wall_s: float, updates: int) -> dict[str, float]:
    """ms per update of every part, and of the overhead."""
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    seq_scope: dict[int, str] = {}
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith("autograd::engine::evaluate_function"):
            s = _forward_scope(e)
            if s is not None:
                seq_scope.setdefault(e.sequence_nr, s)
    ms: dict[str, float] = defaultdict(float)
    cache: dict[int, str] = {}
    op_us = 0.0
    for e in events:
        if e.name.startswith(SCOPE) or e.name.startswith("Optimizer.") or e.name.startswith("ProfilerStep"):
            continue  # a scope's self time is Python between its operators: overhead
        part = _part_of(e, seq_scope, cache)
        ms[part] += e.self_cpu_time_total / 1e3 / updates
        op_us += e.self_cpu_time_total
    ms[OVERHEAD] = max(0.0, 1e3 * wall_s / updates - op_us / 1e3 / updates)
    return {k: ms.get(k, 0.0) for k in (*PARTS, OVERHEAD)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the runners, warm up, time unprofiled updates, then profile ``--updates`` updates per model."""
    corpus = tt.Corpus(args.data, args.vocab or tt.PAPER_VOCAB, args.seed, Path(args.data_dir))
    indices = corpus.batch_indices(args.max_tokens, args.seed, 1024)
    a = argparse.Namespace(**vars(args), layers=None, sync="update")
    for name in ("label_smoothed_nll", "linear_label_smoothed_nll"):  # translation_step looks them up per call
        setattr(methods, name, scoped(getattr(methods, name), "read-out + loss"))
    runners, info = tt.build_runners(a, torch.device("cpu"), False, corpus, indices, args.models.split(","))
    out: dict[str, Any] = {"config": info, "models": {}}
    for r in runners:
        r.run(args.warmup, record=False)
    for r in runners:  # the same batches for every model: each starts at the same position
        r.trainer.data.i = args.warmup
        r.run(args.updates, record=True)  # unprofiled reference times
    for r in runners:
        r.trainer.data.i = args.warmup
        scope = instrument(r)
        r.trainer.config.max_updates = args.updates
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tic = time.perf_counter()
            r.trainer.fit()
            wall = time.perf_counter() - tic
        scope.remove()
        r.trainer.rows.clear()
        r.optimizer.zero_grad(set_to_none=True)
        parts = breakdown(prof, wall, args.updates)
        if args.top:
            print(f"--- {r.name}: top operators by self CPU time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
        out["models"][r.name] = {"profiled_ms_per_update": 1e3 * wall / args.updates,
                                 "unprofiled_median_ms": 1e3 * float(np.median(r.times)),
                                 "unprofiled_ms": [round(1e3 * t, 2) for t in r.times], "parts_ms": parts}
    return out


def table(out: dict[str, Any]) -> str:
    """A Markdown table: ms per update and share per part, one column per model."""
    names = list(out["models"])
    lines = ["| part | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for part in (*PARTS, OVERHEAD):
        cells = []
        for n in names:
            m = out["models"][n]
            v = m["parts_ms"][part]
            cells.append(f"{v:,.1f} ({100 * v / m['profiled_ms_per_update']:.0f} %)")
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| **profiled update** | " + " | ".join(f"**{out['models'][n]['profiled_ms_per_update']:,.1f}**"
                                                     for n in names) + " |")
    lines.append("| unprofiled update (median) | " + " | ".join(f"{out['models'][n]['unprofiled_median_ms']:,.1f}"
                                                              for n in names) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=sorted(tt.PRESETS))
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--models", default="plain,ours,torch")
    ap.add_argument("--fast", default="all")
    ap.add_argument("--updates", type=int, default=4, help="profiled updates per model (and unprofiled ones)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--method", default="adam_postln")
    ap.add_argument("--config", default="config/paper.yaml")
    ap.add_argument("--data", default="auto", choices=["auto", "mini", "shared", "synthetic"])
    ap.add_argument("--data-dir", default=str(tt.MINI))
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=0, help="also print the N operators with the most self time")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    out = run(args)
    out.update({"date": started.isoformat(timespec="seconds"), "loadavg_start": load_start,
                "loadavg_end": os.getloadavg(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                "command": " ".join(["python", "bench/profile_step.py", *(sys.argv[1:] if argv is None else argv)]),
                "preset": args.preset, "max_tokens": args.max_tokens, "git": tt._git()})
    print(f"{out['date']}  preset {args.preset}, max-tokens {args.max_tokens}, {args.updates} profiled updates per "
          f"model, torch threads {out['torch_threads']}, load {load_start[0]:.2f} -> {out['loadavg_end'][0]:.2f}")
    print(table(out))
    stamp = started.strftime("%Y%m%d-%H%M%S")
    name = f"profile_{args.preset}_mt{args.max_tokens}_{stamp}.json"
    path = Path(args.out) if args.out else tt.ROOT / "bench" / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
