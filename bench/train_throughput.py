"""Training throughput of our translation step beside ``torch.nn.Transformer`` of the same size.

One update = batch collation, forward, label-smoothed cross-entropy, backward, AdamW step, run by the
pipeline's own training loop (:class:`sigprop.train.Trainer`, the loop ``sigprop
train-translation`` uses). The batch is collated inside the timed update, on the training thread, as the pipeline's
:class:`sigprop.tasks.translation.task.EpochBatches` does. Models (``--models``, comma-separated):

* ``ours``: the pipeline as it trains: :func:`sigprop.tasks.translation.methods.build_model`
  (:class:`sigprop.model.EncoderDecoder`) for the method ``--method`` (default ``adam_postln``), the model /
  label smoothing / Adam of ``config/paper.yaml`` (``--preset`` changes only width and depth), the step
  :func:`sigprop.tasks.translation.task.translation_step`, the optimiser
  :func:`sigprop.tasks.translation.methods.build_optimizer` and the collation
  :func:`sigprop.tasks.translation.batching.make_batch`, each with its fast path (``--fast`` picks which, for
  measuring them one at a time: ``attention`` = packed Q/K/V and fused scale/mask, ``dropout`` = cheaper
  dropout masks, ``loss`` = read-out and loss on non-pad rows in one chunked pass, ``adam`` = fused AdamW,
  ``collate`` = vectorised collation);
* ``plain``: the same model, loss, optimiser and collation on their plain paths (separate Q/K/V GEMMs and
  SDPA, full logits and ``log_softmax``, PyTorch's default AdamW, sentence-by-sentence collation);
* ``compiled``: ``ours`` (but the plain loss, which compiles) with the step (forward + loss, and its
  backward) under ``torch.compile``
  (``--compile-mode``, default ``reduce-overhead``: CUDA graphs on a GPU; ``dynamic=True``) on fixed-shape
  buckets: every batch padded to a multiple of ``--bucket-rows`` sentences (rows of one EOS, targets all pad:
  no loss, no gradient) and of ``--bucket-len`` positions, so that few shapes are compiled and recorded. Before
  the common warm-up it makes one untimed pass over the epoch's batches (every bucket shape compiled and
  recorded; its time is reported as ``compile_warmup_s``), then sees the same batches as the others;
* ``torch``: ``nn.Transformer`` (post-LN, ``batch_first``, dropout = the config's dropout everywhere) with
  the same shared embedding (x sqrt(d), sinusoidal positions, dropout) and tied output projection, the
  plain loss, PyTorch's default AdamW and sentence-by-sentence collation: what a plain PyTorch
  implementation of the same training does.

All models see the same real, variable-length batches in the same order: fairseq-style token batches
(:func:`sigprop.tasks.translation.batching.token_batches`, ``--max-tokens`` padded tokens at most) of the
binarised iwslt14-mini training split (``--data-dir``, default ``results/data/iwslt14-mini``); without it,
the sentence lengths of ``$SIGPROP_IWSLT_DIR/bpe10k/valid.*`` with random token ids; without those,
lengths drawn like IWSLT'14's (log-normal fit). The collation time of both collations is also reported
on its own.

Measured updates alternate between the two models in rounds of ``--round`` updates (fair under a changing
machine load). Reported per model: median ms/update (with the 10th / 90th percentiles), target (non-pad)
tokens per second = sum of tokens / sum of update times, model FLOP/s and the model-FLOP utilisation against a
timed large matmul (bf16 on CUDA, for both dtypes; fp32 on the CPU), peak memory (CUDA: ``max_memory_allocated``
attributable to the model; CPU: peak RSS of a separate process that trains that model alone).

    python bench/train_throughput.py                                   # CUDA if present, else CPU; fp32 and bf16
    python bench/train_throughput.py --device cpu --preset paper --max-tokens 1024 --dtype fp32 --updates 10
    python bench/train_throughput.py --device cpu --preset cpu --max-tokens 2048 --dtype fp32 --models ours,plain,torch
    python bench/train_throughput.py --device cuda --preset paper --max-tokens 4096 --updates 200 --warmup 20
    python bench/train_throughput.py --device cuda --dtype bf16 --models ours,compiled,torch   # + the compiled step

Prints a table and writes a JSON record to ``bench/results/train_throughput_<device>_<preset>_mt<max>_<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.config import load_config
from sigprop.model import EncoderDecoder, sinusoidal_positions
from sigprop.tasks.translation import methods
from sigprop.tasks.translation.batching import collate, make_batch, token_batches
from sigprop.tasks.translation.task import translation_step
from sigprop.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "results" / "data" / "iwslt14-mini"
IWSLT_ENV = "SIGPROP_IWSLT_DIR"  # a local copy of the raw data (bpe10k/ holds fairseq's BPE'd splits)
FAST_PARTS = ("attention", "dropout", "loss", "adam", "collate")
#: the model pairs compared on the same batches (the first's speed-up over the second)
PAIRS = (("ours", "torch"), ("ours", "plain"), ("plain", "torch"), ("compiled", "ours"), ("compiled", "torch"))
#: the update clock (``--clock``): wall time, or this process's CPU time (all threads)
CLOCK: Callable[[], float] = time.perf_counter
PAD, EOS, FIRST_WORD = 1, 2, 4  # fairseq dictionary: <s>=0, <pad>=1, </s>=2, <unk>=3
PAPER_VOCAB = 10_000

#: width and depth per preset (everything else comes from config/paper.yaml)
PRESETS: dict[str, dict[str, int]] = {
    "paper": {"d_model": 512, "n_heads": 4, "d_ff": 2048, "layers": 6},  # Table 2: 6+6 blocks
    "small": {"d_model": 256, "n_heads": 4, "d_ff": 1024, "layers": 3},
    # the CPU-scale translation size (d 128, 3+3 blocks; run it with --max-tokens 2048)
    "cpu": {"d_model": 128, "n_heads": 4, "d_ff": 512, "layers": 3},
    # paper depth and heads, width 16: what does not scale with width (attention probabilities and their
    # dropout, dropout masks, the loss over the vocabulary, per-op dispatch)
    "tiny": {"d_model": 16, "n_heads": 4, "d_ff": 32, "layers": 6},
}
#: log-normal fit of IWSLT'14 sentence lengths (BPE tokens + EOS) of fairseq's valid split (7,283 pairs)
SYNTH_LOG_MEAN, SYNTH_LOG_STD, SYNTH_RATIO_STD = 3.02, 0.63, 0.15


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def _random_pairs(src_len: np.ndarray, tgt_len: np.ndarray, vocab: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s, t in zip(src_len.tolist(), tgt_len.tolist()):
        src = torch.randint(FIRST_WORD, vocab, (s,), generator=gen)
        tgt = torch.randint(FIRST_WORD, vocab, (t,), generator=gen)
        src[-1] = tgt[-1] = EOS
        out.append((src, tgt))
    return out


class Corpus:
    """Sentence pairs to batch: the binarised mini split, shared BPE lengths, or synthetic lengths."""

    def __init__(self, source: str, vocab_hint: int, seed: int, mini: Path = MINI) -> None:
        self.dataset: Any = None
        if source in ("auto", "mini") and (mini / "train.pt").exists() and (mini / "dict.txt").exists():
            from sigprop.data.iwslt.binarize import Dictionary, load_split

            self.dataset = load_split(mini, "train")
            self.vocab = len(Dictionary.load(mini / "dict.txt"))
            self.src_sizes = self.dataset.src_sizes.numpy()
            self.tgt_sizes = self.dataset.tgt_sizes.numpy()
            self.source = f"{mini}/train.pt (binarised iwslt14-mini, real tokens)"
            return
        if source == "mini":
            raise SystemExit(f"--data mini: {mini}/train.pt not found (build it: snakemake --cores 2 "
                             "results/data/iwslt14-mini/train.pt, or pass --data-dir)")
        self.vocab = vocab_hint
        shared = Path(os.environ.get(IWSLT_ENV, "/nonexistent")) / "bpe10k"
        if source in ("auto", "shared") and (shared / "valid.de").exists() and (shared / "valid.en").exists():

            def lengths(path: Path) -> np.ndarray:
                with path.open(encoding="utf-8") as fh:
                    return np.array([len(line.split()) + 1 for line in fh], dtype=np.int64)

            self.src_sizes, self.tgt_sizes = lengths(shared / "valid.de"), lengths(shared / "valid.en")
            self.source = f"${IWSLT_ENV}/bpe10k/valid.{{de,en}} lengths, random token ids"
        elif source == "shared":
            raise SystemExit(f"--data shared: ${IWSLT_ENV}/bpe10k/valid.de not found (set {IWSLT_ENV})")
        else:
            rng = np.random.default_rng(seed)
            src = np.exp(rng.normal(SYNTH_LOG_MEAN, SYNTH_LOG_STD, 7283))
            tgt = src * np.exp(rng.normal(0.0, SYNTH_RATIO_STD, src.size))
            self.src_sizes = np.clip(np.rint(src), 2, 176).astype(np.int64)
            self.tgt_sizes = np.clip(np.rint(tgt), 2, 176).astype(np.int64)
            self.source = "synthetic IWSLT-like lengths (log-normal), random token ids"
        self.pairs = _random_pairs(self.src_sizes, self.tgt_sizes, self.vocab, seed)

    def batch_indices(self, max_tokens: int, seed: int, max_positions: int) -> list[np.ndarray]:
        """The training batches of epoch 0, in the pipeline's shuffled order."""
        return token_batches(self.src_sizes, self.tgt_sizes, max_tokens, seed=seed, epoch=0,
                             max_positions=max_positions)

    def collate(self, idx: np.ndarray, vectorised: bool = True) -> dict[str, Tensor]:
        """One batch, as the pipeline collates it (``vectorised``) or sentence by sentence."""
        if self.dataset is not None:
            if vectorised:
                return make_batch(self.dataset, idx, PAD, EOS)
            return collate([self.dataset[int(i)] for i in idx], PAD, EOS)
        return collate([self.pairs[int(i)] for i in idx], PAD, EOS)


class Cycle:
    """An endless iterator collating the epoch's batches in turn (``iter()`` returns itself, so rounds continue)."""

    def __init__(self, indices: Sequence[np.ndarray], collate_fn: Callable[[np.ndarray], Mapping[str, Tensor]]) -> None:
        self.indices, self.collate_fn, self.i = indices, collate_fn, 0

    def __iter__(self) -> Cycle:
        return self

    def __next__(self) -> Mapping[str, Tensor]:
        b = self.collate_fn(self.indices[self.i % len(self.indices)])
        self.i += 1
        return b


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


class TorchTransformer(nn.Module):
    """``nn.Transformer`` with our embedding (shared, x sqrt(d), sinusoidal positions, dropout) and tied read-out."""

    def __init__(self, vocab: int, d_model: int, n_heads: int, d_ff: int, layers: int, dropout: float,
                 max_positions: int = 1024, pad: int = PAD) -> None:
        super().__init__()
        self.pad, self.dropout, self.scale = pad, dropout, math.sqrt(d_model)
        self.embed = nn.Embedding(vocab, d_model, padding_idx=pad)
        nn.init.normal_(self.embed.weight, 0.0, d_model**-0.5)
        self.register_buffer("pos", sinusoidal_positions(max_positions, d_model), persistent=False)
        self.transformer = nn.Transformer(d_model, n_heads, layers, layers, d_ff, dropout, batch_first=True)

    def _embed(self, tokens: Tensor) -> Tensor:
        x = self.scale * self.embed(tokens) + self.pos[: tokens.shape[1]]
        return F.dropout(x, self.dropout, self.training)

    def output_projection(self, out: Tensor) -> Tensor:
        """Tied read-out."""
        return out @ self.embed.weight.T

    def forward(self, src: Tensor, prev: Tensor) -> tuple[Tensor, dict]:
        pad_mask = src.eq(self.pad)
        n = prev.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=prev.device).triu(1)  # True = not allowed
        out = self.transformer(self._embed(src), self._embed(prev), tgt_mask=causal, src_key_padding_mask=pad_mask,
                               memory_key_padding_mask=pad_mask, tgt_is_causal=True)
        return self.output_projection(out), {}


def paper_config(path: Path) -> dict[str, Any]:
    """Model, training, Adam and methods of the translation section of a pipeline config (laid over its base)."""
    cfg = load_config(path)
    return {"methods": cfg["methods"], **cfg["translation"]}


def model_spec(cfg: Mapping[str, Any], preset: str, layers: int | None) -> tuple[dict[str, Any], int]:
    """The config's model entry with the preset's width, and the number of blocks per stack."""
    p = PRESETS[preset]
    model = {**cfg["model"], **{k: p[k] for k in ("d_model", "n_heads", "d_ff")}}
    return model, int(layers or p["layers"])


def train_flops(batch: Mapping[str, Tensor], d: int, ff: int, layers: int, vocab: int) -> float:
    """Matmul FLOPs of one update (3 x forward): the stacks on the padded batch shapes (causal self-attention
    counts half), the vocabulary read-out on the non-pad target tokens only (the logits a loss needs)."""
    b, s = batch["src"].shape
    t = batch["prev"].shape[1]
    enc = layers * (2 * b * s * (4 * d * d + 2 * d * ff) + 4 * b * s * s * d)
    dec = layers * (2 * b * t * (4 * d * d + 2 * d * ff) + 2 * b * t * t * d  # self-attention (causal)
                    + 2 * b * (t + s) * 2 * d * d + 4 * b * t * s * d)  # cross: Q,O on t; K,V on s; scores, AV
    out = 2 * int(batch["ntokens"]) * d * vocab
    return 3.0 * (enc + dec + out)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """FLOP/s of a timed large square matmul (best of several; timed by ``--clock`` on the CPU)."""
    clock = time.perf_counter if device.type == "cuda" else CLOCK
    if device.type == "cuda":
        n, reps = 8192, 20
    else:
        n, reps = 2048, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3 if device.type == "cuda" else 1):
        a @ b
    best = math.inf
    for _ in range(reps):
        _sync(device)
        tic = clock()
        a @ b
        _sync(device)
        best = min(best, clock() - tic)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "tflops": 2 * n**3 / best / 1e12}


def bucket_batch(batch: Mapping[str, Tensor], rows: int, length: int, pad: int = PAD,
                 eos: int = EOS) -> dict[str, Tensor]:
    """``batch`` padded to a multiple of ``rows`` sentences and of ``length`` positions (source and target
    separately). Added rows are a source of one EOS and a target of pads only: they add no loss and no gradient
    (``ntokens`` is unchanged), so the update is that of ``batch``."""
    b = batch["src"].shape[0]
    n_rows = -(-b // rows) * rows

    def grow(x: Tensor, fill_first: int) -> Tensor:
        n = -(-x.shape[1] // length) * length
        out = x.new_full((n_rows, n), pad)
        out[:b, : x.shape[1]] = x
        out[b:, 0] = fill_first
        return out

    out = {**batch, "src": grow(batch["src"], eos), "prev": grow(batch["prev"], eos), "tgt": grow(batch["tgt"], pad)}
    return out


class CompiledStep:
    """The training step under ``torch.compile`` (``dynamic=True``; ``mode`` for the inductor backend only).

    Every call marks a new CUDA-graph step (``cudagraph_mark_step_begin``) and returns copies of the outputs,
    which a later replay would overwrite (the training loop keeps running sums of them)."""

    def __init__(self, step_fn: Callable, mode: str | None, backend: str) -> None:
        kw = {"mode": mode} if backend == "inductor" and mode not in (None, "", "none") else {}
        self.fn = torch.compile(step_fn, backend=backend, dynamic=True, **kw)

    def __call__(self, model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        return {k: v.clone() for k, v in self.fn(model, batch).items()}


# --------------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb(field: str = "VmHWM") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    for st in opt.state.values():
        n += sum(v.numel() * v.element_size() for v in st.values() if isinstance(v, Tensor) and v.is_cuda)
    return n


def _cpu_autocast(step_fn: Callable, model: nn.Module, batch: Mapping[str, Tensor]) -> Any:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return step_fn(model, batch)


class Clock:
    """A ``before_update`` callback: a timestamp before every update (after a device sync when asked)."""

    def __init__(self, device: torch.device, sync: bool) -> None:
        self.device, self.sync, self.stamps = device, sync, []

    def __call__(self, update: int) -> None:
        if self.sync:
            _sync(self.device)
        self.stamps.append(CLOCK())


class Runner:
    """One model with its optimiser inside the pipeline's Trainer; ``run(k)`` does k updates, timed."""

    def __init__(self, name: str, model: nn.Module, opt_cfg: Mapping[str, Any], step_fn: Callable,
                 data: Cycle, device: torch.device, bf16: bool, sync: str, fused_adam: bool,
                 extra_before: Sequence[Callable[[int], None]] = ()) -> None:
        self.name, self.device = name, device
        model = model.to(device)
        self.model = model
        self.optimizer = methods.build_optimizer(model.parameters(), opt_cfg, device, fused=fused_adam)
        self.clock = Clock(device, sync == "update")
        if bf16 and device.type == "cpu":  # the loop's own autocast is CUDA-only: same placement, around step_fn
            step_fn = functools.partial(_cpu_autocast, step_fn)

        cfg = TrainConfig(max_updates=1, log_every=10**9, log_first=False, device=str(device),
                          bf16=bf16 and device.type == "cuda", progress=False)
        self.trainer = Trainer(model, step_fn, self.optimizer, data, cfg,
                               lr_schedule=methods.lr_schedule(opt_cfg), before_update=[self.clock, *extra_before])
        self.times: list[float] = []
        self.batch_ids: list[int] = []
        self.peak_bytes = 0
        self.compile_warmup_s: float | None = None

    def run(self, k: int, record: bool) -> None:
        """``k`` updates through ``Trainer.fit``; with ``record``, their times and memory are kept."""
        if k <= 0:
            return
        cuda = self.device.type == "cuda"
        if cuda and record:
            base = torch.cuda.memory_allocated(self.device) - _state_bytes(self.model, self.optimizer)
            torch.cuda.reset_peak_memory_stats(self.device)
        first = self.trainer.data.i
        self.clock.stamps = []
        self.trainer.config.max_updates = k
        result = self.trainer.fit()
        _sync(self.device)
        end = CLOCK()
        if result.status != "completed":
            raise RuntimeError(f"{self.name}: training {result.status} during the benchmark")
        self.trainer.rows.clear()
        self.optimizer.zero_grad(set_to_none=True)  # free the gradients while the other model runs
        if record:
            if self.clock.sync or self.device.type != "cuda":
                stamps = [*self.clock.stamps, end]
                self.times += [b - a for a, b in zip(stamps, stamps[1:])]
            else:  # --sync round: only the round's total is a device time
                self.times += [(end - self.clock.stamps[0]) / k] * k
            self.batch_ids += list(range(first, first + k))
            if cuda:
                self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device) - base)


def summarise(runner: Runner, batches: Sequence[Mapping[str, Tensor]], flops: Sequence[float],
              peak: Mapping[str, Any] | None, sync: str) -> dict[str, Any]:
    """Per-model numbers of the recorded updates."""
    times = np.array(runner.times)
    ids = [i % len(batches) for i in runner.batch_ids]
    tgt = sum(int(batches[i]["ntokens"]) for i in ids)
    src = sum(int(batches[i]["src"].ne(PAD).sum()) for i in ids)
    total_flops = sum(flops[i] for i in ids)
    secs = float(times.sum())
    out: dict[str, Any] = {
        "updates": len(times),
        "median_ms": 1e3 * float(np.median(times)),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "mean_ms": 1e3 * secs / len(times),
        "target_tokens": tgt,
        "target_tokens_per_s": tgt / secs,
        "source_tokens_per_s": src / secs,
        "model_tflops_per_s": total_flops / secs / 1e12,
        "params": sum(p.numel() for p in runner.model.parameters()),
        "times_ms": [round(1e3 * x, 3) for x in times.tolist()],
        "batch_index": ids,  # position in the epoch's batch order (same for both models)
    }
    out["batch_shapes"] = [[*batches[i]["src"].shape, batches[i]["prev"].shape[1]] for i in ids]  # B, S, T
    if peak is not None:
        out["mfu"] = out["model_tflops_per_s"] / peak["tflops"]
    if runner.compile_warmup_s is not None:
        out["compile_warmup_s"] = runner.compile_warmup_s
    if runner.device.type == "cuda":
        out["peak_mem_mib"] = runner.peak_bytes / 2**20
        out["peak_mem_kind"] = "cuda max_memory_allocated attributable to this model (params, grads, Adam, activations)"
    if sync == "round" and runner.device.type == "cuda":
        out["note"] = "per-update times are round means (sync only at round ends)"
    return out


def build_runners(args: argparse.Namespace, device: torch.device, bf16: bool, corpus: Corpus,
                  indices: Sequence[np.ndarray], which: Sequence[str]) -> tuple[list[Runner], dict]:
    """Our model (fast and/or plain path) and/or the nn.Transformer reference, each inside its own Trainer."""
    cfg = paper_config(ROOT / args.config)
    model_cfg, layers = model_spec(cfg, args.preset, args.layers)
    method = cfg["methods"][args.method]
    opt_cfg = dict(cfg["optimizers"][method["optimizer"]])
    vocab = args.vocab or corpus.vocab
    eps = float(cfg["training"].get("label_smoothing", 0.0))
    fast = set(FAST_PARTS) if args.fast == "all" else {p for p in args.fast.split(",") if p}
    if fast - set(FAST_PARTS):
        raise SystemExit(f"--fast: unknown part(s) {sorted(fast - set(FAST_PARTS))}; use all or {FAST_PARTS}")
    runners = []
    torch.manual_seed(args.seed)
    for name in which:
        on = fast if name in ("ours", "compiled") else set()
        # compiled: the plain loss (the fused one selects non-pad rows, a data-dependent shape that breaks the
        # graph); the compiler fuses the log-softmax of the full logits itself
        step_fn = functools.partial(translation_step, eps=eps, pad=PAD, fused="loss" in on and name != "compiled")
        collate_fn = functools.partial(corpus.collate, vectorised="collate" in on)
        if name == "compiled":
            step_fn = CompiledStep(step_fn, args.compile_mode, args.compile_backend)

            def collate_fn(i: np.ndarray, c: Callable = collate_fn) -> dict[str, Tensor]:
                return bucket_batch(c(i), args.bucket_rows, args.bucket_len)

        data = Cycle(indices, collate_fn)
        if name in ("ours", "plain", "compiled"):
            gen = torch.Generator().manual_seed(args.seed)
            s2s = dataclasses.replace(methods.model_config(model_cfg, method, layers, vocab, PAD),
                                      fast="attention" in on, fast_dropout="dropout" in on)
            model = EncoderDecoder(s2s, gen)
            before = [lambda t, m=model: m.set_tau(methods.tau_at(t, method))]
        elif name == "torch":
            model = TorchTransformer(vocab, model_cfg["d_model"], model_cfg["n_heads"], model_cfg["d_ff"], layers,
                                     float(model_cfg.get("dropout", 0.0)), int(model_cfg.get("max_positions", 1024)))
            before = []
        else:
            raise SystemExit(f"--models: unknown model {name!r}; use ours, plain, compiled, torch")
        runners.append(Runner(name, model, opt_cfg, step_fn, data, device, bf16, args.sync, fused_adam="adam" in on,
                              extra_before=before))
    info = {"model": model_cfg, "layers_per_stack": layers, "vocab": vocab, "method": args.method,
            "method_config": method, "optimizer": opt_cfg, "label_smoothing": eps,
            "fast_parts": sorted(fast),
            "compiled": {"mode": args.compile_mode, "backend": args.compile_backend, "dynamic": True,
                         "bucket_rows": args.bucket_rows, "bucket_len": args.bucket_len},
            "torch_reference": "nn.Transformer(batch_first=True, norm_first=False, dropout=model.dropout, bias=True)"
                               " + shared embedding x sqrt(d) + sinusoidal positions + tied read-out; plain loss,"
                               " default AdamW, sentence-by-sentence collation"}
    return runners, info


def rss_probe(args: argparse.Namespace, dtype: str, which: str) -> dict[str, Any]:
    """Peak RSS of a fresh process that trains ``which`` alone (warm-up 1, then 2 updates)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--device", "cpu", "--dtype", dtype, "--preset", args.preset,
           "--max-tokens", str(args.max_tokens), "--updates", "2", "--warmup", "1", "--models", which,
           "--method", args.method, "--config", args.config, "--data", args.data, "--seed", str(args.seed),
           "--fast", args.fast, "--data-dir", args.data_dir, "--rss-probe"]
    for flag, value in (("--layers", args.layers), ("--vocab", args.vocab), ("--threads", args.threads),
                        ("--clock", args.clock)):
        if value:
            cmd += [flag, str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, device: torch.device, dtype: str, corpus: Corpus,
            indices: Sequence[np.ndarray], batches: list[Mapping[str, Tensor]]) -> dict[str, Any]:
    """Warm-up, then interleaved rounds of both models; numbers per model and their ratio."""
    bf16 = dtype == "bf16"
    which = args.models.split(",")
    runners, info = build_runners(args, device, bf16, corpus, indices, which)
    d, ff = info["model"]["d_model"], info["model"]["d_ff"]
    flops = [train_flops(b, d, ff, info["layers_per_stack"], info["vocab"]) for b in batches]
    peak = None
    if not args.rss_probe:
        # CUDA: the bf16 tensor-core peak for both dtypes; CPU: the fp32 peak (CPUs without native bf16, like
        # this project's AVX2 EPYC, emulate bf16 matmuls far below it, so a bf16 "peak" would mean little)
        peak = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    rss_start = _rss_mb("VmRSS")
    for r in runners:
        if r.name == "compiled":  # compile and record every bucket shape of the epoch, then start it over
            tic = time.perf_counter()
            r.run(len(indices), record=False)
            _sync(device)
            r.compile_warmup_s = time.perf_counter() - tic
            r.trainer.data.i = 0
    for r in runners:
        r.run(args.warmup, record=False)
    done = 0
    while done < args.updates:
        k = min(args.round, args.updates - done)
        for r in runners:
            r.run(k, record=True)
        done += k
    if args.rss_probe:
        return {"rss_before_models_mib": rss_start, "peak_rss_mib": _rss_mb("VmHWM")}
    # measured again after the updates: the larger of the two (a busy machine lowers either)
    after = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    peak = {**max(peak, after, key=lambda p: p["tflops"]), "tflops_before": peak["tflops"],
            "tflops_after": after["tflops"]}
    out: dict[str, Any] = {"device": str(device), "dtype": dtype, "config": info, "matmul_peak": peak,
                           "models": {r.name: summarise(r, batches, flops, peak, args.sync) for r in runners}}
    if device.type == "cpu" and not args.no_rss:
        for r in runners:
            out["models"][r.name]["peak_rss"] = rss_probe(args, dtype, r.name)
    m = out["models"]
    by_name = {r.name: r for r in runners}
    for a, b in PAIRS:
        if a in m and b in m:
            fast_r, ref_r = by_name[a], by_name[b]
            assert fast_r.batch_ids == ref_r.batch_ids  # the same batches in the same order
            paired = np.array(ref_r.times) / np.array(fast_r.times)
            out[f"{a}_vs_{b}"] = {
                "tokens_per_s_ratio": m[a]["target_tokens_per_s"] / m[b]["target_tokens_per_s"],
                "median_ms_ratio": m[a]["median_ms"] / m[b]["median_ms"],
                "paired_speedup_median": float(np.median(paired)),  # per batch: b's time / a's time
                "paired_speedup_p25_p75": [float(np.percentile(paired, 25)), float(np.percentile(paired, 75))],
            }
    return out


# --------------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------------


def _git() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def table(measurements: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of every measurement."""
    head = (f"{'device':6} {'dtype':5} {'model':8} {'ms/upd med':>10} {'p10-p90':>15} {'tgt tok/s':>10} "
            f"{'TFLOP/s':>8} {'MFU':>6} {'peak mem MiB':>13}")
    lines = [head, "-" * len(head)]
    for ms in measurements:
        if "error" in ms:
            lines.append(f"{ms['device']:6} {ms['dtype']:5} error: {ms['error']}")
            continue
        for name, r in ms["models"].items():
            mem = r.get("peak_mem_mib", r.get("peak_rss", {}).get("peak_rss_mib", float("nan")))
            mfu = f"{100 * r['mfu']:5.1f}%" if "mfu" in r else "   n/a"
            lines.append(f"{ms['device']:6} {ms['dtype']:5} {name:8} {r['median_ms']:10.1f} "
                         f"{r['p10_ms']:7.1f}-{r['p90_ms']:<7.1f} {r['target_tokens_per_s']:10.0f} "
                         f"{r['model_tflops_per_s']:8.3f} {mfu} {mem:13.0f}")
        for key in (f"{a}_vs_{b}" for a, b in PAIRS):
            if key not in ms:
                continue
            a, b = key.split("_vs_")
            cmp = ms[key]
            ratio, pair = cmp["tokens_per_s_ratio"], cmp["paired_speedup_median"]
            lines.append(f"{'':15}{a} / {b} target tokens/s = {ratio:.3f}; same batch, "
                         f"median {b} time / {a} time = {pair:.3f} "
                         f"(IQR {cmp['paired_speedup_p25_p75'][0]:.3f}-{cmp['paired_speedup_p25_p75'][1]:.3f})")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda, all (cpu + cuda when present) or auto "
                    "(cuda when present, else cpu)")
    ap.add_argument("--dtype", default="both", choices=["fp32", "bf16", "both"], help="bf16 = autocast")
    ap.add_argument("--updates", type=int, default=None, help="measured updates per model (default: cuda 100, "
                    "cpu 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed updates per model first (cuda 10, cpu 2)")
    ap.add_argument("--round", type=int, default=None, help="updates per model before switching models "
                    "(default: cuda 10, cpu 2)")
    ap.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch (paper: 4096)")
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int, default=None, help="blocks per stack (default: the preset's)")
    ap.add_argument("--vocab", type=int, default=None, help="default: the data's dictionary (iwslt14-mini: 9784), "
                    f"else {PAPER_VOCAB}")
    ap.add_argument("--method", default="adam_postln", help="a method of the config (its norm, alphas, optimiser)")
    ap.add_argument("--config", default="config/paper.yaml")
    ap.add_argument("--data", default="auto", choices=["auto", "mini", "shared", "synthetic"])
    ap.add_argument("--models", default="ours,torch", help="comma-separated: ours (the pipeline's fast path), "
                    "plain (our model on the plain path), compiled (ours, torch.compile on shape buckets), "
                    "torch (nn.Transformer)")
    ap.add_argument("--compile-mode", default="reduce-overhead", help="model 'compiled': torch.compile's mode "
                    "(inductor only; 'none' for its default)")
    ap.add_argument("--compile-backend", default="inductor", help="model 'compiled': torch.compile's backend "
                    "(aot_eager traces without code generation: a quick CPU check of the wiring)")
    ap.add_argument("--bucket-rows", type=int, default=8, help="model 'compiled': sentences per batch padded to "
                    "a multiple of this")
    ap.add_argument("--bucket-len", type=int, default=16, help="model 'compiled': source and target lengths "
                    "padded to a multiple of this")
    ap.add_argument("--fast", default="all", help=f"the fast parts of 'ours': all, or comma-separated of {FAST_PARTS}")
    ap.add_argument("--batches", type=int, default=None, help="the first N batches of the epoch only (default: "
                    "all; the models cycle through them)")
    ap.add_argument("--data-dir", default=str(MINI), help="binarised iwslt14-mini (train.pt, dict.txt)")
    ap.add_argument("--sync", default="update", choices=["update", "round"], help="CUDA: synchronise before every "
                    "update (per-update times) or only at round ends (no host/device overlap lost)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"], help="time updates by the wall clock, or by "
                    "this process's CPU time: with --threads 1, a proxy for the quiet-machine time on a busy machine "
                    "(time spent waiting for a core is not counted; with more threads, their spin-waits are)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-rss", action="store_true", help="CPU: skip the per-model peak-RSS subprocesses")
    ap.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="JSON path (default: bench/results/train_throughput_...json)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    has_cuda = torch.cuda.is_available()
    devices = {"auto": ["cuda" if has_cuda else "cpu"], "all": ["cpu"] + (["cuda"] if has_cuda else []),
               "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    if "cuda" in devices and not has_cuda:
        raise SystemExit("--device cuda: CUDA is not available")
    dtypes = ["fp32", "bf16"] if args.dtype == "both" else [args.dtype]
    started = dt.datetime.now().astimezone()
    load_start = os.getloadavg()

    corpus = Corpus(args.data, args.vocab or PAPER_VOCAB, args.seed, Path(args.data_dir))
    idx = corpus.batch_indices(args.max_tokens, args.seed, 1024)[: args.batches]
    collate_ms = {}
    for vectorised in (False, True):  # both collations of the whole epoch (also timed inside every update)
        tic = time.perf_counter()
        batches = [corpus.collate(i, vectorised) for i in idx]
        collate_ms["vectorised" if vectorised else "per_sentence"] = 1e3 * (time.perf_counter() - tic) / len(batches)

    measurements = []
    for dev in devices:
        device = torch.device(dev)
        cuda = device.type == "cuda"
        a = argparse.Namespace(**vars(args))
        a.updates = args.updates if args.updates is not None else (100 if cuda else 10)
        a.warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
        a.round = args.round if args.round is not None else (10 if cuda else 2)
        for dtype in dtypes:
            tic = time.perf_counter()
            try:
                ms = measure(a, device, dtype, corpus, idx, batches)
            except Exception as exc:  # noqa: BLE001 - e.g. bf16 autocast unsupported on this CPU
                if args.rss_probe:
                    raise
                ms = {"device": dev, "dtype": dtype, "error": f"{type(exc).__name__}: {exc}"}
            ms["wall_s"] = time.perf_counter() - tic
            ms.update({"updates": a.updates, "warmup": a.warmup, "round": a.round})
            if cuda:
                ms["device_name"] = torch.cuda.get_device_name(device)
                ms["float32_matmul_precision"] = torch.get_float32_matmul_precision()
            measurements.append(ms)
            if args.rss_probe:
                print(json.dumps(ms))
                return

    ntok = [int(b["ntokens"]) for b in batches]
    record = {
        "benchmark": "train_throughput",
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/train_throughput.py", *(sys.argv[1:] if argv is None else argv)]),
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "clock": args.clock,
        "cuda_available": has_cuda,
        "gpu": torch.cuda.get_device_name(0) if has_cuda else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git": _git(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "preset": args.preset,
        "max_tokens": args.max_tokens,
        "data": {"source": corpus.source, "batches": len(batches), "sentences_per_batch_median":
                 float(np.median([len(i) for i in idx])), "target_tokens_per_batch_mean": float(np.mean(ntok)),
                 "collate_ms_per_batch": collate_ms},
        "fast": args.fast,
        "measurements": measurements,
    }
    load_end = record["loadavg_end"]
    print(f"{record['date']}  {record['cpu']} x{record['cpu_count']} (torch threads {record['torch_threads']})"
          f"  clock {args.clock}  gpu: {record['gpu']}  torch {record['torch']}"
          f"  load {load_start[0]:.2f} -> {load_end[0]:.2f}")
    print(f"preset {args.preset}, max-tokens {args.max_tokens}, data: {corpus.source}; {len(batches)} batches, "
          f"{np.mean(ntok):.0f} target tokens/batch on average; collation ms/batch: per sentence "
          f"{collate_ms['per_sentence']:.2f}, vectorised {collate_ms['vectorised']:.2f} (timed inside every update)")
    print(table(measurements))
    stamp = started.strftime("%Y%m%d-%H%M%S")
    name = f"train_throughput_{'-'.join(devices)}_{args.preset}_mt{args.max_tokens}_{stamp}.json"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
