"""The blocks of the family (docs/init-time.md), with ``x`` (batch, n, d) the residual stream::

    Z      = alpha1 * S(X) + X
    Y      = W2 sigma(W1 Z)
    X_next = alpha2 * Y + Z

:class:`PostNormBlock` puts a LayerNorm after each residual add (``norm='none'``: Identity),
:class:`PreNormBlock` on each sub-layer input (its stack adds a final LN). A decoder block has a
cross-attention sub-layer between the two, with the same residual scale ``alpha1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.model.attention import KVCache, MultiHeadAttention
from sigprop.model.config import ModelConfig
from sigprop.model.functional import dropout_fn
from sigprop.params import resolve_alpha


class FeedForward(nn.Module):
    """``W2 sigma(W1 z)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fast = cfg.uses_fast_dropout  # the fast dropout (ModelConfig.fast_dropout)
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, z: Tensor) -> Tensor:
        """Apply the two-layer feed-forward map: (batch, n, d) -> (batch, n, d)."""
        h = self.w1(z)  # (batch, n, d_ff)
        if self.cfg.activation == "relu":
            h = F.relu(h)
        h = dropout_fn(self.fast)(h, self.cfg.act_dropout, self.training)
        return self.w2(h)


@dataclass
class BlockCache:
    """A decoder block's state between decoding steps: the keys and values of its two attentions."""

    attn: KVCache = field(default_factory=KVCache)
    cross: KVCache = field(default_factory=KVCache)

    def reorder(self, rows: Tensor) -> None:
        """Keep the batch rows ``rows``, in that order."""
        self.attn.reorder(rows)
        self.cross.reorder(rows)


class Block(nn.Module):
    """Shared parts of a block: sub-layers, residual scales, optional cross-attention, LayerNorms.

    ``norms[0]`` belongs to self-attention, ``norms[1]`` to the feed-forward map, ``norms[2]`` to
    cross-attention.
    """

    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.attn = MultiHeadAttention(cfg)
        self.cross = MultiHeadAttention(cfg) if cross else None
        self.ffn = FeedForward(cfg)
        a1 = torch.tensor(resolve_alpha(cfg.alpha1, cfg.n_layers))
        a2 = torch.tensor(resolve_alpha(cfg.alpha2, cfg.n_layers))
        if cfg.shared_alpha and float(a1) != float(a2):
            raise ValueError(f"shared_alpha needs alpha1 = alpha2, got {cfg.alpha1} and {cfg.alpha2}")
        if cfg.trainable_alpha:
            self.alpha1 = nn.Parameter(a1)
            # shared: the same Parameter under both names (parameters() yields it once)
            self.alpha2 = self.alpha1 if cfg.shared_alpha else nn.Parameter(a2)
        else:
            self.register_buffer("alpha1", a1)
            self.register_buffer("alpha2", a1 if cfg.shared_alpha else a2)
        self.fast = cfg.uses_fast_dropout  # the fast dropout (ModelConfig.fast_dropout)
        n_norms = 3 if cross else 2
        use_ln = cfg.norm != "none"
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) if use_ln else nn.Identity() for _ in range(n_norms))

    def _drop(self, x: Tensor) -> Tensor:
        return dropout_fn(self.fast)(x, self.cfg.dropout, self.training)

    @staticmethod
    def _caches(cache: BlockCache | None) -> tuple[KVCache | None, KVCache | None]:
        return (None, None) if cache is None else (cache.attn, cache.cross)


class PostNormBlock(Block):
    """LN after each residual add (the original Transformer; ``norm='none'`` uses Identity)."""

    def forward(self, x: Tensor, memory: Tensor | None = None, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, causal: bool = False, cache: BlockCache | None = None) -> Tensor:
        """One block: ``x`` (batch, n, d) to the next hidden state; ``memory`` (batch, m, d) for cross-attention.

        ``cache``: step-by-step decoding, ``x`` the positions after the cached ones
        (:meth:`MultiHeadAttention.forward`).
        """
        self_cache, cross_cache = self._caches(cache)
        z = self.norms[0](self.alpha1 * self._drop(self.attn(x, None, self_mask, causal, self_cache)) + x)
        if self.cross is not None:
            c = self.cross(z, memory, memory_mask, cache=cross_cache)
            z = self.norms[2](self.alpha1 * self._drop(c) + z)
        return self.norms[1](self.alpha2 * self._drop(self.ffn(z)) + z)


class PreNormBlock(Block):
    """LN on each sub-layer input; the stack adds a final LN."""

    def forward(self, x: Tensor, memory: Tensor | None = None, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, causal: bool = False, cache: BlockCache | None = None) -> Tensor:
        """One block: ``x`` (batch, n, d) to the next hidden state; arguments as :meth:`PostNormBlock.forward`."""
        self_cache, cross_cache = self._caches(cache)
        z = self.alpha1 * self._drop(self.attn(self.norms[0](x), None, self_mask, causal, self_cache)) + x
        if self.cross is not None:
            c = self.cross(self.norms[2](z), memory, memory_mask, cache=cross_cache)
            z = self.alpha1 * self._drop(c) + z
        return self.alpha2 * self._drop(self.ffn(self.norms[1](z))) + z
