"""Multi-head attention with inverse temperature ``tau``, and its key/value cache for step-by-step decoding.

Shapes: ``x`` (batch, n, d_model) queries' input, ``memory`` (batch, m, d_model) keys' and values' input
(``x`` itself for self-attention); per head ``q`` (batch, heads, n, d_k), ``k`` and ``v`` (batch, heads, m, d_k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.model.config import ModelConfig
from sigprop.model.functional import attention_weights, causal_mask, dropout_fn


class KVCache:
    """Keys and values (batch, heads, m, d_k) of one attention layer, kept between decoding steps.

    Self-attention appends each step's keys and values (:meth:`extend`); cross-attention fills it once
    with those of the encoder memory and reads them at every later step.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def __len__(self) -> int:
        """Number of cached key positions."""
        return 0 if self.k is None else self.k.shape[2]

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the keys and values of new positions; return all of them."""
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v

    def reorder(self, rows: Tensor) -> None:
        """Keep the batch rows ``rows``, in that order (beam search's surviving hypotheses)."""
        if self.k is not None:
            self.k, self.v = self.k[rows], self.v[rows]


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention with inverse temperature ``tau``.

    Every call projects (:meth:`_project`: packed or not, through the cache or not), then attends once
    (:meth:`_attend`: one scale, one mask, one dropout).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, dh = cfg.d_model, cfg.n_heads * cfg.d_k
        self.wq = nn.Linear(d, dh, bias=cfg.bias)
        self.wk = nn.Linear(d, dh, bias=cfg.bias)
        self.wv = nn.Linear(d, dh, bias=cfg.bias)
        self.wo = nn.Linear(dh, d, bias=cfg.bias) if cfg.out_proj else nn.Identity()
        self.tau = cfg.tau
        #: the training fast path, read from the config here (as timm's ``fused_attn``): one GEMM for Q, K, V
        #: (K, V for cross-attention) and, with attention dropout on the CPU, the scale in the score GEMM and
        #: the mask filled in place. The parameters stay separate (same init and RNG order); off by default,
        #: so the init-time experiments keep the plain, bit-reproducible path.
        self.fast = cfg.fast
        #: :func:`~sigprop.model.functional.dropout` (cheaper masks on the CPU) for the attention weights
        self.fast_dropout = cfg.uses_fast_dropout

    def _heads(self, x: Tensor) -> Tensor:
        """(batch, n, heads * d_k) -> (batch, heads, n, d_k)."""
        b, n, _ = x.shape
        return x.view(b, n, self.cfg.n_heads, self.cfg.d_k).transpose(1, 2)

    def _merge(self, out: Tensor) -> Tensor:
        """Heads (batch, heads, n, d_k) -> output projection (batch, n, d_model)."""
        b, h, n, dk = out.shape
        return self.wo(out.transpose(1, 2).reshape(b, n, h * dk))

    def _linear(self, x: Tensor, lins: tuple[nn.Linear, ...]) -> tuple[Tensor, ...]:
        """``x`` through the projections ``lins``, per head (batch, heads, n, d_k) each; on the fast path several
        at once in one GEMM of the concatenated weights."""
        if not self.fast or len(lins) == 1:
            return tuple(self._heads(lin(x)) for lin in lins)
        weight = torch.cat([lin.weight for lin in lins])
        bias = torch.cat([lin.bias for lin in lins]) if lins[0].bias is not None else None
        b, n, _ = x.shape
        y = F.linear(x, weight, bias).view(b, n, len(lins), self.cfg.n_heads, self.cfg.d_k)
        return y.permute(2, 0, 3, 1, 4).unbind(0)

    def _project(self, x: Tensor, memory: Tensor | None, cache: KVCache | None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries from ``x``; keys and values from ``x`` (self-attention: ``memory`` is None) or ``memory``,
        through ``cache`` if given (self-attention appends to it; cross-attention fills it once, then reads it)."""
        if memory is None:
            q, k, v = self._linear(x, (self.wq, self.wk, self.wv))
            return (q, *cache.extend(k, v)) if cache is not None else (q, k, v)
        (q,) = self._linear(x, (self.wq,))
        if cache is None:
            return (q, *self._linear(memory, (self.wk, self.wv)))
        if cache.k is None:
            cache.extend(*self._linear(memory, (self.wk, self.wv)))
        return q, cache.k, cache.v

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, causal: bool) -> Tensor:
        """Heads' outputs (batch, heads, n, d_k): weights softmax(tau / sqrt(d_k) q k^T) (or uniform), masked,
        dropped out, times ``v``.

        ``key_padding_mask`` (batch, m) hides padded keys; ``causal`` lets query i see keys up to ``m - n + i``
        (:func:`~sigprop.model.functional.causal_mask`: the queries are the last n of the m positions).
        """
        scale = self.tau / math.sqrt(self.cfg.d_k)
        drop = self.cfg.attn_dropout if self.training else 0.0
        dropout = dropout_fn(self.fast_dropout)
        if self.cfg.attention != "softmax":
            if causal or key_padding_mask is not None:
                raise ValueError("uniform attention is defined for unmasked encoders only")
            return dropout(attention_weights(scale * q @ k.transpose(-2, -1), "uniform"), drop, self.training) @ v
        b, h, n, dk = q.shape
        m = k.shape[2]
        causal = causal and n > 1  # a single query is the last position: it sees every key
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (batch, 1, 1, m)
        # SDPA's fused kernels, except with attention dropout on the CPU on the fast path: there SDPA falls back
        # to its unfused math path (q and k scaled separately, the mask converted per call), so the scale rides
        # on the score GEMM and the mask is filled in place, broadcast
        explicit = self.fast and drop > 0.0 and q.device.type == "cpu"
        # SDPA's is_causal path is NaN at scale 0 (tau = 0) and aligns its mask with the first key
        if causal and (explicit or mask is not None or scale == 0.0 or n != m):
            tri = causal_mask(n, m, q.device)
            mask = tri if mask is None else mask & tri
            causal = False
        if not explicit:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal,
                                                  scale=scale)
        scores = torch.baddbmm(q.new_zeros(()), q.reshape(b * h, n, dk), k.reshape(b * h, m, dk).transpose(1, 2),
                               beta=0.0, alpha=scale).view(b, h, n, m)
        if mask is not None:
            scores.masked_fill_(~mask, float("-inf"))
        a = dropout(torch.softmax(scores, dim=-1), drop, True).view(b * h, n, m)
        return torch.bmm(a, v.reshape(b * h, m, dk)).view(b, h, n, dk)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Attend from ``x`` (batch, n, d) to ``memory`` (default: ``x``).

        ``key_padding_mask`` is True at padded key positions. ``cache``: step-by-step decoding. In
        self-attention ``x`` holds the positions after the cached ones: their keys and values are appended
        to the cache and they attend to every cached position (and, causally, to each other); in
        cross-attention the keys and values of ``memory`` are computed on the first call and then reused.
        """
        if cache is not None and self.cfg.attention != "softmax":
            raise ValueError("a KV cache is for decoding, which needs softmax attention (uniform attention is "
                             "defined for unmasked encoders only)")
        q, k, v = self._project(x, memory, cache)
        return self._merge(self._attend(q, k, v, key_padding_mask, causal))
