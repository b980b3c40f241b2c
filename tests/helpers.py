"""Helpers shared by several test files (fixtures live in conftest.py): a tiny encoder-decoder and a source
batch, a translation job's spec, the quick config, a copy of the package sources, a script of tools/ as a module."""

from __future__ import annotations

import importlib.util
import random
import shutil
import sys
from pathlib import Path

import torch

from sigprop.config import load_config
from sigprop.data.iwslt.binarize import binarize
from sigprop.data.iwslt.textio import write_lines
from sigprop.model import EncoderDecoder, ModelConfig, Seq2SeqConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
RULE_FILES = [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk"))]


def tiny_model(norm: str = "post", seed: int = 0, init: str = "fairseq", layers: int = 2, fast: bool = True,
               **kw) -> EncoderDecoder:
    torch.manual_seed(seed)
    block = ModelConfig(d_model=32, n_heads=4, d_ff=64, n_layers=layers, norm=norm, bias=True, **kw)
    return EncoderDecoder(Seq2SeqConfig(block=block, vocab=40, init=init, fast=fast)).eval()


def src_batch(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (5, 9), generator=g)
    src[:, -1] = 2
    src[1, 6:] = 1
    src[1, 5] = 2
    return src


def job_spec(**over) -> dict:
    spec = {
        "config": "test",
        "dataset": "iwslt14-mini",
        "method": "adam_postln",
        "layers": 1,
        "seed": 0,
        "device": "cpu",
        "method_config": {"label": "Adam POST-LN", "optimizer": "adam", "norm": "post", "alpha": 1},
        "optimizer": {
            "name": "adam",
            "kind": "adam",
            "lr": 1e-2,
            "betas": [0.9, 0.98],
            "weight_decay": 1e-4,
            "updates": 40,
            "schedule": {"kind": "inverse_sqrt", "warmup_updates": 5, "warmup_init_lr": 1e-7},
        },
        "model": {
            "d_model": 32,
            "n_heads": 2,
            "d_ff": 64,
            "dropout": 0.1,
            "attn_dropout": 0.1,
            "act_dropout": 0.1,
            "bias": True,
            "max_positions": 64,
        },
        "training": {
            "max_tokens": 96,
            "label_smoothing": 0.1,
            "log_every": 5,
            "valid_every": 10,
            "checkpoint_every": 10,
            "probe_sentences": 4,
        },
        "evaluation": {"beam": 2, "max_len_a": 1.0, "max_len_b": 5, "batch_sentences": 4},
    }
    for key, value in over.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return spec


def copy_src(dest: Path) -> Path:
    shutil.copytree(SRC / "sigprop", dest / "sigprop", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def quick_config() -> dict:
    """config/quick.yaml laid over its base, validated, the schema's defaults filled in."""
    return load_config(REPO_ROOT / "config" / "quick.yaml")


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


COPY_WORDS = "the cat sat on a mat and dog ran far away".split()


def copy_corpus(d: Path, sizes: tuple[int, int, int] = (64, 8, 6), max_words: int = 7) -> Path:
    """A synthetic 'translate = copy' corpus in the binarised IWSLT format in ``d`` (train, valid, test sizes)."""
    rng = random.Random(0)
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        lines = [" ".join(rng.choice(COPY_WORDS) for _ in range(rng.randint(3, max_words))) for _ in range(n)]
        write_lines(d / f"{split}.de", lines)
        write_lines(d / f"{split}.en", lines)
    binarize(d)
    return d
