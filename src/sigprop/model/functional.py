"""Stateless pieces of the model: attention weights, the fast dropout, masks, sinusoidal positions."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from sigprop.model.config import AttentionKind


def attention_weights(logits: Tensor, kind: AttentionKind) -> Tensor:
    """Row-stochastic attention from logits ``tau/sqrt(d_k) Q K^T``.

    ``uniform`` has the VALUE 1/n but the DERIVATIVE of the softmax at the uniform
    point, (1/n)(I - 11^T/n) per row (docs/init-time.md), so queries and keys still
    receive the gradients the paper's theory describes.
    """
    if kind == "softmax":
        return torch.softmax(logits, dim=-1)
    if kind == "uniform":
        n = logits.shape[-1]
        dev = (logits - logits.mean(dim=-1, keepdim=True)) / n
        # (dev - dev.detach()) is exactly 0 in value, so A is exactly 1/n even for huge logits;
        # 1/n + dev - dev.detach() would round 1/n away once |dev| >> 1/n.
        return torch.full_like(logits, 1.0 / n) + (dev - dev.detach())
    raise ValueError(f"attention {kind!r}: use 'softmax' or 'uniform'")


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout`` (zero with probability ``p``, scale the rest by 1/(1-p)) with cheaper masks on the CPU.

    PyTorch's CPU dropout draws one Bernoulli variate per element (about 12 ns each on this project's
    CPUs, 20x the multiply it gates). Here one 64-bit draw of the default generator gives two
    elements: element i is kept when its 32-bit integer is below ``(1-p) 2^32``, so the keep probability
    is ``1-p`` to within 2^-32 (finer than ``torch.rand``'s 2^-24). Other devices use ``F.dropout``.
    The draws differ from ``F.dropout``'s, so the two give different (equally distributed) masks.
    """
    if not training or p == 0.0 or x.device.type != "cpu" or x.numel() == 0:
        return F.dropout(x, p, training)
    if not 0.0 < p < 1.0:
        return F.dropout(x, p, training)  # p = 1 (all zeros) and errors for p outside [0, 1]
    n = x.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, ((n + 1) // 2,), dtype=torch.int64).view(torch.int32)[:n]
    # kept: int32 < threshold, probability (threshold + 2^31) / 2^32
    threshold = min(round((1.0 - p) * 2**32) - 2**31, 2**31 - 1)
    noise = bits.view(x.shape).lt(threshold).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * noise


def dropout_fn(fast: bool) -> Callable[[Tensor, float, bool], Tensor]:
    """:func:`dropout` on the fast path, else ``F.dropout`` (looked up here, so a test can swap :func:`dropout`)."""
    return dropout if fast else F.dropout


def causal_mask(n: int, m: int, device: torch.device | None = None) -> Tensor:
    """Which keys each of ``n`` queries may see when the queries are the last ``n`` of ``m`` positions: (n, m),
    True where key ``j <= m - n + i`` (n = m: the lower triangle; cached decoding, n < m: every cached key too)."""
    return torch.ones(n, m, dtype=torch.bool, device=device).tril(m - n)


def sinusoidal_positions(n: int, d: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal position encodings (Vaswani et al. 2017), shape (n, d)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe.to(dtype)
