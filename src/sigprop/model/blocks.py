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
from typing import get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.model.attention import KVCache, MultiHeadAttention
from sigprop.model.config import ModelConfig, ResidualRule
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
        self._build_rule(cfg, n_norms)

    def _build_rule(self, cfg: ModelConfig, n_branches: int) -> None:
        """The state of ``cfg.residual_rule`` (:mod:`sigprop.depth_rules`; values set by
        :func:`~sigprop.model.init.apply_residual_rule_`): ``skip`` multiplies the residual stream (DeepNorm's
        alpha), ``branch_mult`` every sub-layer's output (depth-muP's fixed multiplier), ``layerscale[i]`` the
        output of sub-layer i (LayerScale's per-channel diagonal, trained as in CaiT); None where the rule has
        none (then the block computes exactly what it computes without the option)."""
        rule = cfg.residual_rule
        if rule not in get_args(ResidualRule):
            raise ValueError(f"residual_rule {rule!r}: use one of {', '.join(get_args(ResidualRule))}")
        needs = {"deepnorm": cfg.norm == "post", "gpt2": cfg.out_proj, "shaped": not cfg.bias}
        if not needs.get(rule, True):
            why = {"deepnorm": "norm: post (DeepNorm is a POST-LN rule)", "gpt2": "out_proj: true (it scales Wo)",
                   "shaped": "bias: false (the centred value path is bias-free)"}[rule]
            raise ValueError(f"residual_rule {rule!r} needs {why}")
        self.register_buffer("skip", torch.tensor(1.0) if rule == "deepnorm" else None)
        self.register_buffer("branch_mult", torch.tensor(1.0) if rule == "depth_mup" else None)
        self.layerscale = (nn.ParameterList(nn.Parameter(torch.ones(cfg.d_model)) for _ in range(n_branches))
                           if rule == "layerscale" else None)
        self.shaped = rule == "shaped"

    def _branch(self, i: int, y: Tensor) -> Tensor:
        """Sub-layer ``i``'s output (0 self-attention, 1 FFN, 2 cross-attention) times its rule multiplier."""
        if self.branch_mult is not None:
            y = self.branch_mult * y
        return y if self.layerscale is None else self.layerscale[i] * y

    def _skip(self, x: Tensor) -> Tensor:
        return x if self.skip is None else self.skip * x

    def _self_attention(self, h: Tensor, mask: Tensor | None, causal: bool, cache: KVCache | None) -> Tensor:
        """Self-attention of ``h``; shaped (Noci et al. 2023): the attention matrix A becomes I + A - 11^T/n, i.e.
        the centred values (h - mean over tokens) Wv Wo are added (unmasked encoders only)."""
        out = self.attn(h, None, mask, causal, cache)
        if self.shaped:
            if mask is not None or causal or cache is not None:
                raise ValueError("residual_rule 'shaped' centres over all tokens: unmasked encoders only")
            v = F.linear(h - h.mean(dim=-2, keepdim=True), self.attn.wv.weight)
            out = out + (F.linear(v, self.attn.wo.weight) if isinstance(self.attn.wo, nn.Linear) else v)
        return out

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
        a = self._branch(0, self._drop(self._self_attention(x, self_mask, causal, self_cache)))
        z = self.norms[0](self.alpha1 * a + self._skip(x))
        if self.cross is not None:
            c = self.cross(z, memory, memory_mask, cache=cross_cache)
            z = self.norms[2](self.alpha1 * self._branch(2, self._drop(c)) + self._skip(z))
        return self.norms[1](self.alpha2 * self._branch(1, self._drop(self.ffn(z))) + self._skip(z))


class PreNormBlock(Block):
    """LN on each sub-layer input; the stack adds a final LN."""

    def forward(self, x: Tensor, memory: Tensor | None = None, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, causal: bool = False, cache: BlockCache | None = None) -> Tensor:
        """One block: ``x`` (batch, n, d) to the next hidden state; arguments as :meth:`PostNormBlock.forward`."""
        self_cache, cross_cache = self._caches(cache)
        a = self._branch(0, self._drop(self._self_attention(self.norms[0](x), self_mask, causal, self_cache)))
        z = self.alpha1 * a + self._skip(x)
        if self.cross is not None:
            c = self.cross(self.norms[2](z), memory, memory_mask, cache=cross_cache)
            z = self.alpha1 * self._branch(2, self._drop(c)) + self._skip(z)
        return self.alpha2 * self._branch(1, self._drop(self.ffn(self.norms[1](z)))) + self._skip(z)
