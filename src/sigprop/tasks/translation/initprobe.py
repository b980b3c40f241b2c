"""Fig S1: the translation models of Table 1's methods at initialisation, on real IWSLT batches.

One job = one method (its norm placement, residual scales, initialisation and tau) at one depth X
(X encoder and X decoder blocks) and a list of seeds. Seed ``s`` draws the weights (as a training run
of that seed would) and picks the training batch: the first batch of epoch 0 of the seed's shuffled
``max_tokens`` batches (:func:`sigprop.tasks.translation.batching.token_batches`), so every method and depth
sees the same sentences for the same seed (paired comparisons). The model is in eval mode (no
dropout) and the label-smoothed cross-entropy per target token, the loss training starts from, is
back-propagated once. Rows (tidy; ``side`` = encoder or decoder):

* ``cosine`` (layer 0 = embedding, l = after block l): mean pairwise token cosine over the
  non-padding tokens of each sentence, averaged over the batch's sentences (as the training probes);
* ``grad_wq``, ``grad_wk``, ``grad_wv`` (layer 1..X): Frobenius norm of the loss gradient of each
  block's self-attention matrices;
* ``loss`` and ``ntokens`` (side ``batch``, layer 0): the loss value and the batch's target tokens.

``tau_at``: ``final`` (the method's ``tau`` after its warm-up) or ``init`` (``tau`` at update 0, which
is 0 with a warm-up: uniform attention); methods without ``tau`` have tau = 1 either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sigprop.data.iwslt.binarize import Dictionary, load_split
from sigprop.grid import iter_inner
from sigprop.tasks.translation import methods, probes
from sigprop.tasks.translation.batching import make_batch, token_batches

TAU_AT = ("final", "init")


def method_tau(method: Mapping[str, Any], tau_at: str) -> float:
    """The inverse temperature of ``method`` at its final value or at update 0."""
    if tau_at not in TAU_AT:
        raise ValueError(f"tau_at {tau_at!r}: use 'final' or 'init'")
    return methods.tau_at(0, method) if tau_at == "init" else float(method.get("tau", 1.0))


def seed_batch(data_dir: str | Path, split: str, max_tokens: int, seed: int, max_positions: int) -> dict:
    """The first batch of epoch 0 of ``split`` shuffled with ``seed``: src, prev, tgt, ntokens."""
    pairs = load_split(data_dir, split)
    batches = token_batches(pairs.src_sizes, pairs.tgt_sizes, max_tokens, seed=seed, epoch=0,
                            max_positions=max_positions)
    return make_batch(pairs, batches[0], pairs.pad, pairs.eos)


def probe_model(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], eps: float, pad: int) -> list[dict]:
    """Per-layer token cosine and self-attention gradient norms of one forward/backward pass (eval mode)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    out, states = model.features(batch["src"], batch["prev"])  # the training loss: tied read-out, non-pad rows
    loss_sum, _ = methods.linear_label_smoothed_nll(out, model.embed.weight, batch["tgt"], eps, pad)
    loss = loss_sum / batch["ntokens"].float()
    loss.backward()
    rows = [r for r in probes.token_stat_rows(states, batch["src"], batch["prev"], pad) if r["metric"] == "cosine"]
    rows += probes.grad_rows(model)
    rows += [
        {"metric": "loss", "side": "batch", "layer": 0, "value": float(loss.detach())},
        {"metric": "ntokens", "side": "batch", "layer": 0, "value": float(batch["ntokens"])},
    ]
    return rows


def attention_only_grads(model: torch.nn.Module) -> None:
    """Let only the blocks' self-attention Wq, Wk, Wv require gradients (saves the other weight gradients)."""
    keep = {id(getattr(b.attn, n).weight) for s in (model.encoder, model.decoder) for b in s.blocks
            for n in ("wq", "wk", "wv")}
    for param in model.parameters():
        param.requires_grad_(id(param) in keep)


def run(spec: Mapping[str, Any], data_dir: str | Path) -> pd.DataFrame:
    """One job: every inner point of ``spec`` for every seed.

    ``spec``: :func:`sigprop.tasks.translation.plan.method_init_spec`.

    One model per point, re-drawn for each seed with ``reset_parameters(Generator(seed))``: the same
    weights as a fresh model built with that generator (a training run of that seed starts from them).
    """
    dictionary = Dictionary.load(Path(data_dir) / "dict.txt")
    eps = float(spec["label_smoothing"])
    frames = []
    for p in iter_inner(spec["fixed"], spec["point"], spec["inner"]):
        method = spec["methods"][p["method"]]
        tau_at = p.get("tau_at", "final")
        tau = method_tau(method, tau_at)
        model = methods.build_model(spec["model"], method, int(p["layers"]), len(dictionary), dictionary.pad_index)
        attention_only_grads(model)
        for seed in spec["seeds"]:
            batch = seed_batch(data_dir, p.get("split", "train"), int(p["max_tokens"]), seed,
                               int(spec["model"].get("max_positions", 1024)))
            model.reset_parameters(torch.Generator().manual_seed(seed))
            model.set_tau(tau)
            rows = probe_model(model, batch, eps, dictionary.pad_index)
            keys = {"dataset": p["dataset"], "method": p["method"], "method_label": method.get("label", p["method"]),
                    "tau_at": tau_at, "tau": tau, "layers": int(p["layers"]), "seed": seed}
            frames.append(pd.DataFrame(rows).assign(**keys))
    df = pd.concat(frames, ignore_index=True)
    return df[[*keys, "side", "layer", "metric", "value"]]

