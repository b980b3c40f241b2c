"""Evaluation of one training run (rule ``evaluate_translation``): beam search from its best checkpoint, BLEU.

The training job (:mod:`sigprop.tasks.translation.job`) writes ``checkpoint_best.pt`` (the best validation
checkpoint) and ``train.json`` (its training summary); this module reads them and writes, in the same
run directory:

* ``eval.parquet`` (one row) and ``eval.json``: the training summary plus test BLEU of the best checkpoint
  (or ``diverged = true``: then nothing is decoded and the scores are NaN);
* ``hypotheses.txt``: the test translations (BPE removed), one per test sentence in test order.

Evaluation is a rule of its own so that editing the search or BLEU code reruns evaluation only, never
training: the training rule's code inputs (``sigprop.codehash``) do not reach this module, :mod:`.search`
or :mod:`.bleu`. Decoding is always in float32 (bf16 logits can tie or reorder beam candidates), whatever
precision the run trained in; the model is rebuilt from the spec and the checkpoint's weights loaded,
with the inverse temperature of the checkpoint's update.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sigprop.codehash import module_hash
from sigprop.data.iwslt.binarize import Dictionary, load_split
from sigprop.data.iwslt.bpe import detok_bpe
from sigprop.data.iwslt.textio import read_lines
from sigprop.io import atomic_path, provenance, write_table
from sigprop.model import EncoderDecoder
from sigprop.tasks.translation import methods
from sigprop.tasks.translation.batching import make_batch
from sigprop.tasks.translation.bleu import bleu_summary
from sigprop.tasks.translation.search import SearchConfig, translate
from sigprop.train import pick_device

log = logging.getLogger("sigprop.tasks.translation")

#: the training job's summary, read here (written by :func:`sigprop.tasks.translation.job.train_and_evaluate`)
TRAIN_SUMMARY = "train.json"


def search_config(ev: Mapping[str, Any], eos: int) -> SearchConfig:
    """The decoding options of ``translation.evaluation``."""
    return SearchConfig(
        beam=int(ev.get("beam", 5)),
        lenpen=float(ev.get("lenpen", 1.0)),
        max_len_a=float(ev.get("max_len_a", 0.0)),
        max_len_b=int(ev.get("max_len_b", 200)),
        eos=eos,
    )


def test_references(data_dir: str | Path, n: int | None = None) -> list[str]:
    """Tokenised, lowercased test references (BPE removed), as fairseq scores them."""
    refs = [detok_bpe(line) for line in read_lines(Path(data_dir) / "test.en")]
    return refs[:n] if n else refs


@torch.no_grad()
def decode_test(
    model: EncoderDecoder, data_dir: str | Path, ev: Mapping[str, Any], device: torch.device | str = "cpu"
) -> tuple[dict[str, Any], list[str]]:
    """Decode the first ``ev.max_sentences`` test sentences (all: null) in float32 and score them.

    Returns (scores, hypotheses); sentences are batched by source length, hypotheses come back in test order.
    """
    data_dir = Path(data_dir)
    dictionary = Dictionary.load(data_dir / "dict.txt")
    pad, eos = dictionary.pad_index, dictionary.eos_index
    test = load_split(data_dir, "test")
    n = min(int(ev.get("max_sentences") or len(test)), len(test))
    cfg = search_config(ev, eos)
    per = int(ev.get("batch_sentences", 128))
    order = sorted(range(n), key=lambda i: int(test.src_sizes[i]))
    hyps: list[str] = [""] * n
    model = model.float().eval()
    for start in range(0, n, per):
        idx = order[start : start + per]
        src = make_batch(test, idx, pad, eos)["src"].to(device)
        out = translate(model, src, cfg)
        for i, ids in zip(idx, out, strict=True):
            hyps[i] = dictionary.string(ids, bpe=True)
    summary = bleu_summary(hyps, test_references(data_dir, n))
    summary.update(
        {
            "test_sentences": n,
            "test_sentences_total": len(test),
            "beam": cfg.beam,
            "lenpen": cfg.lenpen,
            "max_len_a": cfg.max_len_a,
            "max_len_b": cfg.max_len_b,
            "decode_dtype": "float32",
        }
    )
    return summary, hyps


def load_best(
    spec: Mapping[str, Any], data_dir: str | Path, ckpt: Mapping[str, Any], device: torch.device
) -> EncoderDecoder:
    """The run's model with the checkpoint's weights and the inverse temperature of its update (float32)."""
    dictionary = Dictionary.load(Path(data_dir) / "dict.txt")
    model = methods.build_model(spec["model"], spec["method_config"], spec["layers"], len(dictionary),
                                dictionary.pad_index)
    model.load_state_dict(ckpt["model"])
    model.set_tau(methods.tau_at(int(ckpt["update"]), spec["method_config"]))
    return model.to(device).float().eval()


def evaluate_run(spec: Mapping[str, Any], data_dir: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """Evaluate a finished training run in ``run_dir`` (see the module docstring); returns the eval summary."""
    run = Path(run_dir)
    trained = json.loads((run / TRAIN_SUMMARY).read_text())
    summary: dict[str, Any] = dict(trained["summary"])
    # the training's identity (run keys, spec hash, fingerprint) + where and by which code this evaluation ran
    kept = ("config", "spec_hash", "fingerprint", "dataset", "method", "method_label", "layers", "seed")
    meta = provenance(**{k: v for k, v in trained.get("provenance", {}).items() if k in kept},
                      eval_code=module_hash(__name__))
    ev = spec["evaluation"]
    ckpt = torch.load(run / "checkpoint_best.pt", map_location="cpu", weights_only=True)
    hyps: list[str] = []
    if summary.get("diverged") or ckpt.get("model") is None:
        summary.update({"bleu": math.nan, "sacrebleu_detok": math.nan, "test_sentences": 0,
                        "beam": int(ev.get("beam", 5))})
    else:
        device = pick_device(spec.get("device", "cpu"), "decoding")
        model = load_best(spec, data_dir, ckpt, device)
        tic = time.perf_counter()
        scores, hyps = decode_test(model, data_dir, ev, device)
        summary.update(scores)
        summary["eval_wall_s"] = time.perf_counter() - tic
        log.info(
            "test BLEU %.2f (detok. sacreBLEU %.2f) on %d sentences, beam %d (best checkpoint: update %d)",
            summary["bleu"],
            summary["sacrebleu_detok"],
            summary["test_sentences"],
            summary["beam"],
            int(ckpt["update"]),
        )
    with atomic_path(run / "hypotheses.txt") as tmp:
        tmp.write_text("".join(h + "\n" for h in hyps))
    with atomic_path(run / "eval.json") as tmp:
        tmp.write_text(json.dumps({"summary": summary, "spec": spec, "provenance": meta}, indent=2, default=str) + "\n")
    row = {k: v for k, v in summary.items() if not isinstance(v, list | dict)}
    write_table(pd.DataFrame([row]), run / "eval.parquet", meta)
    return summary
