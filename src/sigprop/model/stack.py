"""``n_layers`` blocks with independent weights (an encoder's or a decoder's), and its decoding cache."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigprop.model.blocks import BlockCache, PostNormBlock, PreNormBlock
from sigprop.model.config import ModelConfig
from sigprop.model.init import init_paper_


class StackCache:
    """A stack's state between decoding steps: one :class:`BlockCache` per block.

    :meth:`reorder` keeps (and reorders) batch rows, as beam search does with its hypotheses.
    """

    def __init__(self, n_blocks: int) -> None:
        self.blocks = [BlockCache() for _ in range(n_blocks)]

    @property
    def length(self) -> int:
        """Positions fed so far (the self-attention keys cached in each block)."""
        return len(self.blocks[0].attn) if self.blocks else 0

    def reorder(self, rows: Tensor) -> None:
        """Keep the batch rows ``rows``, in that order."""
        for block in self.blocks:
            block.reorder(rows)


class Stack(nn.Module):
    """``n_layers`` blocks with independent weights; returns the output and every hidden state.

    ``init``: draw the paper's initialisation (:meth:`reset_parameters`, global RNG) when built; False leaves
    the modules' defaults for an owner that draws every weight itself (:class:`~sigprop.model.EncoderDecoder`).
    """

    def __init__(self, cfg: ModelConfig, cross: bool = False, init: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        block = PreNormBlock if cfg.norm == "pre" else PostNormBlock
        self.blocks = nn.ModuleList(block(cfg, cross=cross) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        if init:
            self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every weight from the paper's initialisation (see :func:`init_paper_`)."""
        init_paper_(self, self.cfg, generator)

    def new_cache(self) -> StackCache:
        """An empty cache for step-by-step decoding with :meth:`forward`."""
        return StackCache(len(self.blocks))

    def forward(self, x: Tensor, memory: Tensor | None = None, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, causal: bool = False,
                cache: StackCache | None = None) -> tuple[Tensor, list[Tensor]]:
        """Return ``(output, hidden)`` with ``hidden[l]`` the residual stream after block ``l``.

        ``x`` (batch, n, d); ``hidden[0]`` is the input; for PRE-LN the output carries the final LN.
        ``cache`` (:meth:`new_cache`): ``x`` holds the positions after the ``cache.length`` cached ones,
        whose keys and values the blocks append to it.
        """
        caches = cache.blocks if cache is not None else [None] * len(self.blocks)
        hidden = [x]
        for block, block_cache in zip(self.blocks, caches, strict=True):
            x = block(x, memory, self_mask, memory_mask, causal, block_cache)
            hidden.append(x)
        return self.final_norm(x), hidden
