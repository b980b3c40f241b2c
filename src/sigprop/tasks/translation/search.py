"""Greedy and beam search for :class:`~sigprop.model.EncoderDecoder`, following fairseq's ``SequenceGenerator``.

Rules shared by both (fairseq defaults): decoding starts from EOS; PAD is never produced; EOS is
forbidden before ``min_len`` tokens; the output length is capped at
``max_len = min(max_len_a * src_len + max_len_b, max_positions - 1)`` with ``src_len`` the padded
source length of the batch, and EOS is forced at that step. Beam search keeps ``2 * beam``
candidates per step, finalises candidates ending in EOS that rank within the top ``beam``
(score normalised by ``length ** lenpen``, length counting EOS), continues with the best ``beam``
others, and stops a sentence once it has ``beam`` finished hypotheses. With ``beam = 1`` it
returns exactly the greedy output. Decoding is incremental (:class:`Decoding`: the decoder's own
forward with its key/value cache, :class:`~sigprop.model.StackCache`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sigprop.model import EncoderDecoder


@dataclass(frozen=True)
class SearchConfig:
    """Decoding options (fairseq ``generate`` names)."""

    beam: int = 5
    lenpen: float = 1.0
    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1
    eos: int = 2


def _max_len(model: EncoderDecoder, src: Tensor, cfg: SearchConfig) -> int:
    return int(min(cfg.max_len_a * src.shape[1] + cfg.max_len_b, model.cfg.max_positions - 1))


class Decoding:
    """Step-by-step decoding: the model's own decoder with a key/value cache (:meth:`EncoderDecoder.decode`).

    Each step feeds only the newest token; self-attention reads the cached keys and values of the
    earlier positions, cross-attention the encoder memory's, computed at the first step.
    """

    def __init__(self, model: EncoderDecoder, memory: Tensor, memory_mask: Tensor) -> None:
        self.model = model
        self.memory, self.memory_mask = memory, memory_mask
        self.cache = model.new_cache()

    def step(self, tokens: Tensor) -> Tensor:
        """Logits (batch, vocab) after feeding the newest tokens (batch,)."""
        logits, _ = self.model.decode(tokens[:, None], self.memory, self.memory_mask, last_only=True, cache=self.cache)
        return logits[:, 0]

    def reorder(self, rows: Tensor) -> None:
        """Keep (and reorder) the hypotheses ``rows`` of the batch."""
        self.cache.reorder(rows)
        self.memory, self.memory_mask = self.memory[rows], self.memory_mask[rows]


def _mask_lprobs(logits: Tensor, step: int, max_len: int, cfg: SearchConfig, pad: int) -> Tensor:
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    eos = cfg.eos
    lprobs[:, pad] = -math.inf
    if step >= max_len:
        lprobs[:, :eos] = -math.inf
        lprobs[:, eos + 1 :] = -math.inf
    elif step < cfg.min_len:
        lprobs[:, eos] = -math.inf
    return lprobs


@torch.no_grad()
def greedy_search(model: EncoderDecoder, src: Tensor, cfg: SearchConfig | None = None) -> list[list[int]]:
    """Arg-max decoding; returns each hypothesis's token ids without the final EOS."""
    cfg = cfg or SearchConfig(beam=1)
    model.eval()
    eos, pad = cfg.eos, model.cfg.pad_index
    memory, mask, _ = model.encode(src)
    max_len = _max_len(model, src, cfg)
    cache = Decoding(model, memory, mask)
    tokens = torch.full((src.shape[0], 1), eos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for step in range(max_len + 1):
        nxt = _mask_lprobs(cache.step(tokens[:, -1]), step, max_len, cfg, pad).argmax(-1)
        nxt = nxt.masked_fill(done, pad)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt.eq(eos)
        if bool(done.all()):
            break
    return [_strip(row[1:].tolist(), eos, pad) for row in tokens]


def _strip(ids: list[int], eos: int, pad: int) -> list[int]:
    out = []
    for i in ids:
        if i == eos:
            break
        if i != pad:
            out.append(i)
    return out


@torch.no_grad()
def beam_search(model: EncoderDecoder, src: Tensor, cfg: SearchConfig | None = None) -> list[list[int]]:
    """Beam search (see the module docstring); returns the best hypothesis per sentence, EOS removed."""
    cfg = cfg or SearchConfig()
    model.eval()
    eos, k = cfg.eos, cfg.beam
    n_sent = src.shape[0]
    memory, mask, _ = model.encode(src)
    max_len = _max_len(model, src, cfg)
    cache = Decoding(model, memory.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0))
    device = src.device
    tokens = torch.full((n_sent * k, 1), eos, dtype=torch.long, device=device)
    scores = torch.full((n_sent, k), -math.inf, device=device)
    scores[:, 0] = 0.0  # at the first step only one beam is live (all beams are identical)
    active = list(range(n_sent))  # sentence ids still being decoded, in tensor order
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n_sent)]
    for step in range(max_len + 1):
        lprobs = _mask_lprobs(cache.step(tokens[:, -1]), step, max_len, cfg, model.cfg.pad_index)
        vocab = lprobs.shape[-1]
        cand = (scores.reshape(-1, 1) + lprobs).view(len(active), k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=-1)
        beam_idx, tok = top_idx // vocab, top_idx % vocab
        is_eos = tok.eq(eos) & torch.isfinite(top_scores)
        eos_rows, eos_cols = torch.nonzero(is_eos[:, :k], as_tuple=True)
        for row, col in zip(eos_rows.tolist(), eos_cols.tolist(), strict=True):
            sent = active[row]
            if len(finished[sent]) < k:
                seq = tokens[row * k + int(beam_idx[row, col]), 1:].tolist()
                finished[sent].append((float(top_scores[row, col]) / (step + 1) ** cfg.lenpen, seq))
        keep = [row for row, sent in enumerate(active) if len(finished[sent]) < k]
        if not keep or step >= max_len:
            break
        live = top_scores.masked_fill(tok.eq(eos), -math.inf)
        sel_scores, sel = live.topk(k, dim=-1)
        sel_beam = beam_idx.gather(1, sel)
        sel_tok = tok.gather(1, sel)
        rows = torch.tensor(keep, device=device)
        base = (rows * k)[:, None]
        src_rows = (base + sel_beam[rows]).reshape(-1)
        tokens = torch.cat([tokens[src_rows], sel_tok[rows].reshape(-1, 1)], dim=1)
        scores = sel_scores[rows]
        cache.reorder(src_rows)
        active = [active[r] for r in keep]
    out = []
    for hyps in finished:
        best = max(hyps, key=lambda h: h[0])[1] if hyps else []
        out.append(best)
    return out


def translate(model: EncoderDecoder, src: Tensor, cfg: SearchConfig) -> list[list[int]]:
    """Beam search, or greedy search when ``cfg.beam == 1``."""
    return greedy_search(model, src, cfg) if cfg.beam == 1 else beam_search(model, src, cfg)
