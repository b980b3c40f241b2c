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
from sigprop.model.functional import additive_mask, attention_weights, causal_bias, dropout_fn


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
    """Multi-head (self- or cross-) attention with inverse temperature ``tau``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, dh = cfg.d_model, cfg.n_heads * cfg.d_k
        self.wq = nn.Linear(d, dh, bias=cfg.bias)
        self.wk = nn.Linear(d, dh, bias=cfg.bias)
        self.wv = nn.Linear(d, dh, bias=cfg.bias)
        self.wo = nn.Linear(dh, d, bias=cfg.bias) if cfg.out_proj else nn.Identity()
        self.tau = cfg.tau
        #: the training fast path (:meth:`EncoderDecoder.set_fast`): one GEMM for Q, K, V (K, V for
        #: cross-attention) and, with attention dropout on the CPU, the scale in the score GEMM.
        #: The parameters stay separate (same init and RNG order); off by default, so the init-time
        #: experiments keep the plain, bit-reproducible path.
        self.fast = False
        self.fast_dropout = False

    def _heads(self, x: Tensor) -> Tensor:
        """(batch, n, heads * d_k) -> (batch, heads, n, d_k)."""
        b, n, _ = x.shape
        return x.view(b, n, self.cfg.n_heads, self.cfg.d_k).transpose(1, 2)

    def _merge(self, out: Tensor) -> Tensor:
        """Heads (batch, heads, n, d_k) -> output projection (batch, n, d_model)."""
        b, h, n, dk = out.shape
        return self.wo(out.transpose(1, 2).reshape(b, n, h * dk))

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, causal: bool,
              drop: float) -> Tensor:
        """Softmax attention by SDPA; ``causal`` lets query i (of n) see keys up to ``m - n + i`` (the queries
        are the last n positions), ``key_padding_mask`` (batch, m) hides padded keys."""
        scale = self.tau / math.sqrt(self.cfg.d_k)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (batch, 1, 1, m)
        n, m = q.shape[2], k.shape[2]
        # SDPA's is_causal path is NaN at scale 0 (tau = 0) and aligns its mask with the first key
        if causal and (mask is not None or scale == 0.0 or n != m):
            tri = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
            mask = tri if mask is None else mask & tri
            causal = False
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal, scale=scale)

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
        if cache is not None:
            return self._cached_forward(x, memory, key_padding_mask, causal, cache)
        src = x if memory is None else memory
        if self.fast and self.cfg.attention == "softmax":
            return self._fast_forward(x, src, key_padding_mask, causal)
        q, k, v = self._heads(self.wq(x)), self._heads(self.wk(src)), self._heads(self.wv(src))
        drop = self.cfg.attn_dropout if self.training else 0.0
        if self.cfg.attention == "softmax":
            out = self._sdpa(q, k, v, key_padding_mask, causal, drop)
        else:
            if causal or key_padding_mask is not None:
                raise ValueError("uniform attention is defined for unmasked encoders only")
            scale = self.tau / math.sqrt(self.cfg.d_k)
            a = attention_weights(scale * q @ k.transpose(-2, -1), "uniform")
            out = F.dropout(a, drop, self.training) @ v
        return self._merge(out)

    def _cached_forward(self, x: Tensor, memory: Tensor | None, key_padding_mask: Tensor | None, causal: bool,
                        cache: KVCache) -> Tensor:
        """:meth:`forward` with a :class:`KVCache` (separate projections, as the plain path)."""
        if self.cfg.attention != "softmax":
            raise ValueError("a KV cache is for decoding, which needs softmax attention (uniform attention is "
                             "defined for unmasked encoders only)")
        q = self._heads(self.wq(x))
        if memory is None:  # self-attention: this call's positions follow the cached ones
            k, v = cache.extend(self._heads(self.wk(x)), self._heads(self.wv(x)))
            causal = causal and x.shape[1] > 1  # one new position sees every cached one: nothing to mask
        else:  # cross-attention: the memory's keys and values once
            if cache.k is None:
                cache.extend(self._heads(self.wk(memory)), self._heads(self.wv(memory)))
            k, v = cache.k, cache.v
        drop = self.cfg.attn_dropout if self.training else 0.0
        return self._merge(self._sdpa(q, k, v, key_padding_mask, causal, drop))

    def _packed(self, x: Tensor, lins: tuple[nn.Linear, ...]) -> Tensor:
        """``x`` through several projections at once: (len(lins), batch, heads, n, d_k)."""
        weight = torch.cat([lin.weight for lin in lins])
        bias = torch.cat([lin.bias for lin in lins]) if lins[0].bias is not None else None
        b, n, _ = x.shape
        y = F.linear(x, weight, bias).view(b, n, len(lins), self.cfg.n_heads, self.cfg.d_k)
        return y.permute(2, 0, 3, 1, 4)

    def _fast_forward(self, x: Tensor, src: Tensor, key_padding_mask: Tensor | None, causal: bool) -> Tensor:
        """Softmax attention as :meth:`forward`, with packed projections (equal up to rounding)."""
        if src is x:
            q, k, v = self._packed(x, (self.wq, self.wk, self.wv)).unbind(0)
        else:
            q = self._packed(x, (self.wq,))[0]
            k, v = self._packed(src, (self.wk, self.wv)).unbind(0)
        drop = self.cfg.attn_dropout if self.training else 0.0
        if drop == 0.0 or x.device.type != "cpu":
            # SDPA's fused kernels (on the CPU only without dropout); the mask as a broadcast boolean view
            return self._merge(self._sdpa(q, k, v, key_padding_mask, causal, drop))
        # with dropout SDPA on the CPU falls back to its unfused math path (q and k scaled separately, the
        # mask converted per call); here the scale rides on the score GEMM and the mask is added
        # in place, broadcast
        scale = self.tau / math.sqrt(self.cfg.d_k)
        b, h, n, dk = q.shape
        m = k.shape[2]
        scores = torch.baddbmm(q.new_zeros(()), q.reshape(b * h, n, dk), k.reshape(b * h, m, dk).transpose(1, 2),
                               beta=0.0, alpha=scale).view(b, h, n, m)
        if key_padding_mask is not None:
            scores.add_(additive_mask(key_padding_mask, scores.dtype))  # broadcast (b, 1, 1, m)
        if causal:
            scores.add_(causal_bias(n, m, scores.dtype, scores.device))  # broadcast (n, m)
        a = dropout_fn(self.fast_dropout)(torch.softmax(scores, dim=-1), drop, True).view(b * h, n, m)
        return self._merge(torch.bmm(a, v.reshape(b * h, m, dk)).view(b, h, n, dk))
