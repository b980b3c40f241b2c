"""Fig 5's toy task: reverse a sequence of digits with a small POST-LN encoder trained by Adam.

docs/toy.md; [paper]: 20 digits 0-9, embedding width 16 (N(0, 1) init) plus sinusoidal positions, a
5-layer POST-LN encoder with one head and a ReLU feed-forward layer, alpha1 = alpha2 = 1, Adam
(0.9, 0.999), lr 0.01, no weight decay, no warm-up (the paper mentions none). [chosen]: FFN width 64,
batch 64, 2000 updates, 5 seeds, a separate linear read-out head (``readout: head``; ``tied`` reads out
with the embedding matrix, ``logits = h E^T``, whose N(0, 1) rows give logits with std about sqrt(d) = 4
at init, and the model then stays at chance), and PyTorch's default ``nn.Linear`` initialisation
(``init: torch``, what ``nn.TransformerEncoderLayer`` gives; embeddings N(0, 1)). ``init: paper`` gives
the theory init of Figs 3, 4, 9 (every residual branch as large as the skip); ``warmup`` > 0 adds a linear
lr warm-up over that many updates (docs/assumptions.md). ``clip_norm`` > 0 clips the global gradient norm.

What is logged (tidy rows: ``step`` (the update), ``metric``, ``value``, and ``layer``/``matrix`` per layer):

* every ``log_every`` updates: training loss and token accuracy (averaged over the interval), and per
  block (layer 1..L) and attention matrix (wq, wk, wv) the median and mean over entries of Adam's
  effective learning rate lr / (sqrt(v_hat) + eps) (``eff_lr_median``, ``eff_lr_mean``) and the
  Frobenius norm of the update's gradient (``grad_norm``);
* every ``eval_every`` updates: loss and token accuracy on a fixed held-out batch (``val_loss``,
  ``val_accuracy``), drawn from ``val_seed`` and the same for every seed.

Seed ``s`` draws the weights from ``torch.Generator().manual_seed(s)`` and the training batches from
a second generator seeded with ``s + DATA_SEED_OFFSET``, so the same seed gives the same table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.codehash import module_hash
from sigprop.io import config_hash
from sigprop.model import Encoder, ModelConfig, block_config
from sigprop.tasks.measure import attention_effective_lrs, grad_norms
from sigprop.train import LogContext, SeededBatches, TrainConfig, Trainer, schedules

Params = Mapping[str, Any]
DATA_SEED_OFFSET = 1_000_003
MATRICES = ("wq", "wk", "wv")

DEFAULTS: dict[str, Any] = {
    "d_model": 16,
    "n_heads": 1,
    "d_ff": 64,
    "n_layers": 5,
    "norm": "post",
    "alpha": "1",
    "activation": "relu",
    "attention": "softmax",
    "n_tokens": 20,
    "vocab": 10,
    "emb_std": 1.0,
    "readout": "head",
    "init": "torch",
    "batch_size": 64,
    "max_updates": 2000,
    "lr": 0.01,
    "warmup": 0,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.0,
    "clip_norm": 0.0,
    "log_every": 20,
    "eval_every": 100,
    "eval_size": 1024,
    "val_seed": 2**31 - 1,
    "checkpoint_every": 500,
    "device": "cpu",
}


def reversal_batch(generator: torch.Generator, batch_size: int, n_tokens: int, vocab: int) -> tuple[Tensor, Tensor]:
    """``(digits, targets)``: uniform random digits (batch_size, n_tokens) and the same rows reversed."""
    digits = torch.randint(0, vocab, (batch_size, n_tokens), generator=generator)
    return digits, digits.flip(-1)


class ReversalModel(nn.Module):
    """An :class:`~sigprop.model.Encoder` with the tied read-out (or a linear head): tokens to logits."""

    def __init__(self, cfg: ModelConfig, vocab: int, n_tokens: int, emb_std: float = 1.0,
                 readout: str = "tied") -> None:
        super().__init__()
        if readout not in {"tied", "head"}:
            raise ValueError(f"readout {readout!r}: use 'tied' or 'head'")
        self.encoder = Encoder(cfg, vocab=vocab, emb_std=emb_std, max_len=n_tokens)
        self.head = nn.Linear(cfg.d_model, vocab) if readout == "head" else None

    @property
    def blocks(self) -> nn.ModuleList:
        """The encoder's blocks (for per-layer measurements)."""
        return self.encoder.stack.blocks

    def reset_parameters(self, generator: torch.Generator) -> None:
        """The encoder's ``cfg.init``; the head (if any) N(0, 1/d) with zero bias, or torch's default for ``torch``."""
        self.encoder.reset_parameters(generator)
        if self.head is not None:
            with torch.no_grad():
                if self.encoder.cfg.init == "torch":
                    bound = self.head.in_features**-0.5
                    self.head.weight.uniform_(-bound, bound, generator=generator)
                    self.head.bias.uniform_(-bound, bound, generator=generator)
                else:
                    self.head.weight.normal_(0.0, self.head.in_features**-0.5, generator=generator)
                    self.head.bias.zero_()

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (batch, n, vocab)."""
        out, _ = self.encoder(tokens)
        return self.encoder.logits(out) if self.head is None else self.head(out)


def loss_and_accuracy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and token accuracy over every position."""
    loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten())
    accuracy = (logits.argmax(-1) == targets).float().mean()
    return loss, accuracy


def step(model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    """The training step for :class:`~sigprop.train.Trainer`: loss plus token accuracy."""
    digits, targets = batch
    loss, accuracy = loss_and_accuracy(model(digits), targets)
    return {"loss": loss, "accuracy": accuracy}


def attention_probe(ctx: LogContext) -> list[dict[str, Any]]:
    """Log hook: per block and attention matrix, Adam's effective lr (median, mean) and the gradient norm."""
    blocks = ctx.model.blocks
    eff = attention_effective_lrs(ctx.optimizer, blocks, MATRICES)
    grads = grad_norms(blocks, MATRICES)
    rows = []
    for name in MATRICES:
        for layer, ((median, mean), g) in enumerate(zip(eff[name], grads[name]), start=1):
            rows += [{"layer": layer, "matrix": name, "metric": "eff_lr_median", "value": median},
                     {"layer": layer, "matrix": name, "metric": "eff_lr_mean", "value": mean},
                     {"layer": layer, "matrix": name, "metric": "grad_norm", "value": g}]
    return rows


def fingerprint(p: Params, seed: int, code: str | None = None) -> str:
    """Identifies a run: its full parameters, its seed and the code it imports.

    ``code`` defaults to :func:`sigprop.codehash.module_hash` of this module (the files it can import): a
    checkpoint written by other code or for other parameters is not resumed.
    """
    code = module_hash(__name__) if code is None else code
    return config_hash({"params": dict(p), "seed": seed, "code": code})


def run_toy(
    params: Params,
    seed: int,
    *,
    checkpoint_dir: str | Path | None = None,
    log_path: str | Path | None = None,
    progress: bool | None = False,
) -> pd.DataFrame:
    """Train one seed; return its tidy table (``seed``, ``step``, ``layer``, ``matrix``, ``metric``, ``value``).

    ``step`` is the update number (the loop's ``update``).

    ``params`` override :data:`DEFAULTS`. With ``checkpoint_dir`` the run saves a checkpoint every
    ``checkpoint_every`` updates and resumes from it when restarted with the same parameters, seed and code
    (:func:`fingerprint`).
    """
    p = {**DEFAULTS, **params}
    model = ReversalModel(block_config(p), int(p["vocab"]), int(p["n_tokens"]), float(p["emb_std"]), p["readout"])
    model.reset_parameters(torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(p["lr"]), betas=tuple(p["betas"]),
                                 eps=float(p["eps"]), weight_decay=float(p["weight_decay"]))
    shape = (int(p["batch_size"]), int(p["n_tokens"]), int(p["vocab"]))
    data = SeededBatches(lambda g: reversal_batch(g, *shape), seed + DATA_SEED_OFFSET)
    val_x, val_y = reversal_batch(torch.Generator().manual_seed(int(p["val_seed"])), int(p["eval_size"]),
                                  *shape[1:])

    def validate(m: nn.Module) -> dict[str, float]:
        x, y = val_x.to(trainer.device), val_y.to(trainer.device)
        loss, accuracy = loss_and_accuracy(m(x), y)
        return {"val_loss": float(loss), "val_accuracy": float(accuracy)}

    config = TrainConfig(
        max_updates=int(p["max_updates"]),
        log_every=int(p["log_every"]),
        eval_every=int(p["eval_every"]),
        checkpoint_every=int(p["checkpoint_every"]),
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
        device=str(p["device"]),
        progress=progress,
        clip_norm=float(p["clip_norm"]),
        best_metric="val_accuracy",
        fingerprint=fingerprint(p, seed),
    )
    warmup = int(p["warmup"])
    schedule = schedules.linear_warmup(float(p["lr"]), warmup) if warmup > 0 else None
    trainer = Trainer(model, step, optimizer, data, config, lr_schedule=schedule, hooks=[attention_probe],
                      validate=validate)
    result = trainer.fit()
    if result.diverged:
        logging.getLogger(__name__).warning("seed %d diverged at update %d", seed, result.updates)
    table = result.table()
    for col in ("layer", "matrix"):
        if col not in table:
            table[col] = None
    table["layer"] = table["layer"].astype("Int64")
    table.insert(0, "seed", seed)
    table = table.rename(columns={"update": "step"})  # as in the translation logs (and not DataFrame.update)
    return table[["seed", "step", "layer", "matrix", "metric", "value"]]
