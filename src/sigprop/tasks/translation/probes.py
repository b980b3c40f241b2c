"""Per-layer measurements logged during translation training (tidy rows: metric, side, layer, value).

``side`` is ``encoder`` or ``decoder`` (not "stack": that is a DataFrame method).

Layer 0 is the embedding (input of the first block), layer l the residual stream after block l.
Token statistics are taken per sentence over its non-padding tokens and averaged over the
sentences of a fixed validation batch, with the model in eval mode (no dropout):

* ``cosine``: mean over pairs k != k' of cos(X_k, X_k') (docs/init-time.md);
* ``act_norm``: mean token norm |X_k|_2;

``grad_wq``, ``grad_wk``, ``grad_wv``: Frobenius norms of the loss gradient of each block's
self-attention matrices on the current training batch; ``alpha1``, ``alpha2``: residual scales.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sigprop.model import EncoderDecoder
from sigprop.tasks.measure import grad_norms, masked_token_stats

#: the self-attention matrices whose gradient norms are logged
NAMES = ("wq", "wk", "wv")


@torch.no_grad()
def hidden_state_rows(model: EncoderDecoder, batch: dict[str, Tensor]) -> list[dict]:
    """``cosine`` and ``act_norm`` of every layer of both stacks on ``batch`` (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        _, states = model(batch["src"], batch["prev"])
    finally:
        model.train(was_training)
    return token_stat_rows(states, batch["src"], batch["prev"], model.cfg.pad_index)


def token_stat_rows(states: dict[str, list[Tensor]], src: Tensor, prev: Tensor, pad: int) -> list[dict]:
    """``cosine`` and ``act_norm`` of every hidden state of both stacks (``states`` as the model returns them)."""
    masks = {"encoder": src.ne(pad), "decoder": prev.ne(pad)}
    rows = []
    for stack, hidden in states.items():
        for layer, h in enumerate(hidden):
            cos, act = masked_token_stats(h.detach(), masks[stack])
            rows.append({"metric": "cosine", "side": stack, "layer": layer, "value": cos})
            rows.append({"metric": "act_norm", "side": stack, "layer": layer, "value": act})
    return rows


def grad_rows(model: EncoderDecoder) -> list[dict]:
    """Gradient norms of Wq, Wk, Wv (self-attention) per block, after ``backward()``."""
    rows = []
    for stack_name, stack in (("encoder", model.encoder), ("decoder", model.decoder)):
        norms = grad_norms(stack.blocks, NAMES)
        for i in range(len(stack.blocks)):
            for name in NAMES:
                rows.append({"metric": f"grad_{name}", "side": stack_name, "layer": i + 1, "value": norms[name][i]})
    return rows


def alpha_rows(model: EncoderDecoder) -> list[dict]:
    """Current residual scales per block."""
    rows = []
    for stack, pairs in model.alphas().items():
        for i, (a1, a2) in enumerate(pairs, start=1):
            rows.append({"metric": "alpha1", "side": stack, "layer": i, "value": a1})
            rows.append({"metric": "alpha2", "side": stack, "layer": i, "value": a2})
    return rows
