"""The Transformer family studied by Noci et al. (2022), in one readable module.

A block follows the paper's equations (docs/init-time.md)::

    Z      = alpha1 * S(X) + X
    Y      = W2 sigma(W1 Z)
    X_next = alpha2 * Y + Z
    S(X)   = A(X) X Wv,   A(X) = softmax(tau / sqrt(d_k) * X Wq (X Wk)^T)

with layer normalisation placed after each residual add (``post``), on each
sub-layer input plus a final LN (``pre``), or nowhere (``none``). Every
forward pass returns the hidden state after each block, so per-layer probes
need no hooks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.params import resolve_alpha

Norm = Literal["post", "pre", "none"]
AttentionKind = Literal["softmax", "uniform"]
Activation = Literal["relu", "linear"]
Init = Literal["paper", "glorot", "torch"]


@dataclass
class ModelConfig:
    """Hyper-parameters of one stack of blocks (all defaults are the paper's encoder of Fig. 3)."""

    d_model: int = 512
    n_heads: int = 4
    d_ff: int = 2048
    n_layers: int = 48
    norm: Norm = "post"
    alpha1: float | str = 1.0
    alpha2: float | str = 1.0
    trainable_alpha: bool = False
    #: one residual scale per block for all its sub-layers (ReZero's single ``resweight``): alpha2 is alpha1
    shared_alpha: bool = False
    tau: float = 1.0
    attention: AttentionKind = "softmax"
    activation: Activation = "relu"
    init: Init = "paper"
    qk_fan: Literal["d_k", "d_model"] = "d_k"
    out_proj: bool = True
    bias: bool = False
    dropout: float = 0.0
    attn_dropout: float = 0.0
    act_dropout: float = 0.0

    @property
    def d_k(self) -> int:
        """Per-head query/key (and value) dimension."""
        return self.d_model // self.n_heads


def block_config(values: Mapping[str, Any], **over: Any) -> ModelConfig:
    """A :class:`ModelConfig` from the keys of ``values`` that are its fields (a parameter point, a config
    section; other keys are ignored), ``alpha`` setting both residual scales, then ``over`` on top."""
    cfg = {k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__}
    if "alpha" in values:
        cfg["alpha1"] = cfg["alpha2"] = values["alpha"]
    return ModelConfig(**{**cfg, **over})


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
        b, n, _ = x.shape
        return x.view(b, n, self.cfg.n_heads, self.cfg.d_k).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """Attend from ``x`` (batch, n, d) to ``memory`` (default: ``x``).

        ``key_padding_mask`` is True at padded key positions.
        """
        src = x if memory is None else memory
        if self.fast and self.cfg.attention == "softmax":
            return self._fast_forward(x, src, key_padding_mask, causal)
        q, k, v = self._heads(self.wq(x)), self._heads(self.wk(src)), self._heads(self.wv(src))
        scale = self.tau / math.sqrt(self.cfg.d_k)
        drop = self.cfg.attn_dropout if self.training else 0.0
        if self.cfg.attention == "softmax":
            mask = None
            if key_padding_mask is not None:
                mask = ~key_padding_mask[:, None, None, :]
            if causal and (mask is not None or scale == 0.0):  # SDPA's is_causal path is NaN at scale 0 (tau = 0)
                n, m = x.shape[1], src.shape[1]
                tri = torch.ones(n, m, dtype=torch.bool, device=x.device).tril()
                mask = tri if mask is None else mask & tri
                causal = False
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal, scale=scale)
        else:
            if causal or key_padding_mask is not None:
                raise ValueError("uniform attention is defined for unmasked encoders only")
            a = attention_weights(scale * q @ k.transpose(-2, -1), "uniform")
            out = F.dropout(a, drop, self.training) @ v
        b, h, n, dk = out.shape
        return self.wo(out.transpose(1, 2).reshape(b, n, h * dk))


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
        scale = self.tau / math.sqrt(self.cfg.d_k)
        drop = self.cfg.attn_dropout if self.training else 0.0
        b, h, n, dk = q.shape
        m = k.shape[2]
        if drop == 0.0 or x.device.type != "cpu":
            # SDPA's fused kernels (on the CPU only without dropout); the mask as a broadcast boolean view
            mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
            if causal and (mask is not None or scale == 0.0):  # SDPA's is_causal path is NaN at scale 0 (tau = 0)
                tri = torch.ones(n, m, dtype=torch.bool, device=x.device).tril()
                mask = tri if mask is None else mask & tri
                causal = False
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal,
                                                 scale=scale)
        else:
            # with dropout SDPA on the CPU falls back to its unfused math path (q and k scaled separately, the
            # mask converted per call); here the scale rides on the score GEMM and the mask is added
            # in place, broadcast
            scores = torch.baddbmm(q.new_zeros(()), q.reshape(b * h, n, dk), k.reshape(b * h, m, dk).transpose(1, 2),
                                   beta=0.0, alpha=scale).view(b, h, n, m)
            if key_padding_mask is not None:
                scores.add_(_additive_mask(key_padding_mask, scores.dtype))  # broadcast (b, 1, 1, m)
            if causal:
                scores.add_(_causal_bias(n, m, scores.dtype, scores.device))  # broadcast (n, m)
            drop_fn = dropout if self.fast_dropout else F.dropout
            a = drop_fn(torch.softmax(scores, dim=-1), drop, True).view(b * h, n, m)
            out = torch.bmm(a, v.reshape(b * h, m, dk)).view(b, h, n, dk)
        return self.wo(out.transpose(1, 2).reshape(b, n, h * dk))


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


def _additive_mask(key_padding_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``-inf`` at padded keys, 0 elsewhere: (batch, 1, 1, m)."""
    zeros = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
    return zeros.masked_fill_(key_padding_mask, float("-inf"))[:, None, None, :]


def _causal_bias(n: int, m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``-inf`` above the diagonal: (n, m)."""
    return torch.full((n, m), float("-inf"), dtype=dtype, device=device).triu_(1)


class FeedForward(nn.Module):
    """``W2 sigma(W1 z)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fast = False  # the fast dropout (:func:`dropout`); see MultiHeadAttention.fast
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, z: Tensor) -> Tensor:
        """Apply the two-layer feed-forward map."""
        h = self.w1(z)
        if self.cfg.activation == "relu":
            h = F.relu(h)
        h = (dropout if self.fast else F.dropout)(h, self.cfg.act_dropout, self.training)
        return self.w2(h)


class _Block(nn.Module):
    """Shared parts of a block: sub-layers, residual scales, optional cross-attention."""

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
        self.fast = False  # the fast dropout (:func:`dropout`); see MultiHeadAttention.fast
        n_norms = 3 if cross else 2
        use_ln = cfg.norm != "none"
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) if use_ln else nn.Identity() for _ in range(n_norms))

    def _drop(self, x: Tensor) -> Tensor:
        return (dropout if self.fast else F.dropout)(x, self.cfg.dropout, self.training)


class PostNormBlock(_Block):
    """LN after each residual add (the original Transformer; ``norm='none'`` uses Identity)."""

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """One block: ``x`` (batch, n, d) to the next hidden state."""
        z = self.norms[0](self.alpha1 * self._drop(self.attn(x, None, self_mask, causal)) + x)
        if self.cross is not None:
            c = self.cross(z, memory, memory_mask)
            z = self.norms[2](self.alpha1 * self._drop(c) + z)
        return self.norms[1](self.alpha2 * self._drop(self.ffn(z)) + z)


class PreNormBlock(_Block):
    """LN on each sub-layer input; the stack adds a final LN."""

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """One block: ``x`` (batch, n, d) to the next hidden state."""
        z = self.alpha1 * self._drop(self.attn(self.norms[0](x), None, self_mask, causal)) + x
        if self.cross is not None:
            c = self.cross(self.norms[2](z), memory, memory_mask)
            z = self.alpha1 * self._drop(c) + z
        return self.alpha2 * self._drop(self.ffn(self.norms[1](z))) + z


class Stack(nn.Module):
    """``n_layers`` blocks with independent weights; returns the output and every hidden state."""

    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        block = PreNormBlock if cfg.norm == "pre" else PostNormBlock
        self.blocks = nn.ModuleList(block(cfg, cross=cross) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every weight from the paper's initialisation (see :func:`init_paper_`)."""
        init_paper_(self, self.cfg, generator)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:
        """Return ``(output, hidden)`` with ``hidden[l]`` the residual stream after block ``l``.

        ``hidden[0]`` is the input; for PRE-LN the output carries the final LN.
        """
        hidden = [x]
        for block in self.blocks:
            x = block(x, memory, self_mask, memory_mask, causal)
            hidden.append(x)
        return self.final_norm(x), hidden


def sinusoidal_positions(n: int, d: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal position encodings (Vaswani et al. 2017), shape (n, d)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe.to(dtype)


@torch.no_grad()
def init_paper_(module: nn.Module, cfg: ModelConfig, generator: torch.Generator | None = None) -> None:
    """Draw every weight from the paper's initialisation (in place, reproducible with ``generator``).

    Queries and keys: variance 1/d_k (``qk_fan='d_k'``, per head) or 1/d_model; values,
    output and feed-forward weights: 1/fan_in (2/fan_in for W1 with ReLU). ``init='glorot'``
    gives queries and keys 2/(d_model + d_k). Biases are zero; LayerNorms are reset.
    ``init='torch'``: PyTorch's default ``nn.Linear`` init instead, weight and bias
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every linear layer (drawn from ``generator``).
    """
    if cfg.init == "torch":
        _init_torch_default_(module, cfg, generator)
        return
    qk_fan = cfg.d_k if cfg.qk_fan == "d_k" else cfg.d_model
    for m in module.modules():
        if isinstance(m, MultiHeadAttention):
            if cfg.init == "glorot":
                qk_var = 2.0 / (cfg.d_model + cfg.d_k)
            else:
                qk_var = 1.0 / qk_fan
            for lin, var in ((m.wq, qk_var), (m.wk, qk_var), (m.wv, 1.0 / cfg.d_model)):
                lin.weight.normal_(0.0, math.sqrt(var), generator=generator)
            if isinstance(m.wo, nn.Linear):
                m.wo.weight.normal_(0.0, math.sqrt(1.0 / m.wo.in_features), generator=generator)
        elif isinstance(m, FeedForward):
            gain = 2.0 if cfg.activation == "relu" else 1.0
            m.w1.weight.normal_(0.0, math.sqrt(gain / cfg.d_model), generator=generator)
            m.w2.weight.normal_(0.0, math.sqrt(1.0 / cfg.d_ff), generator=generator)
        elif isinstance(m, _Block):
            m.alpha1.fill_(resolve_alpha(cfg.alpha1, cfg.n_layers))  # exact in the module's dtype
            m.alpha2.fill_(resolve_alpha(cfg.alpha2, cfg.n_layers))
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()


@torch.no_grad()
def _init_torch_default_(module: nn.Module, cfg: ModelConfig, generator: torch.Generator | None) -> None:
    """``nn.Linear.reset_parameters`` (kaiming_uniform with a = sqrt(5)) with a generator; alphas and LNs reset."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.uniform_(-bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, _Block):
            m.alpha1.fill_(resolve_alpha(cfg.alpha1, cfg.n_layers))
            m.alpha2.fill_(resolve_alpha(cfg.alpha2, cfg.n_layers))
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()


class Encoder(nn.Module):
    """Token embedding (N(0, emb_std^2)) plus sinusoidal positions, a :class:`Stack`, and a tied read-out."""

    def __init__(self, cfg: ModelConfig, vocab: int, emb_std: float = 1.0, max_len: int = 1024) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab, cfg.d_model)
        self.emb_std = emb_std
        self.register_buffer("pos", sinusoidal_positions(max_len, cfg.d_model), persistent=False)
        self.stack = Stack(cfg)
        with torch.no_grad():
            self.embed.weight.normal_(0.0, emb_std)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights (paper init; embeddings N(0, emb_std^2))."""
        with torch.no_grad():
            self.embed.weight.normal_(0.0, self.emb_std, generator=generator)
        self.stack.reset_parameters(generator)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Embed ``tokens`` (batch, n) and return ``(output, hidden states)``."""
        x = self.embed(tokens) + self.pos[: tokens.shape[1]].to(self.embed.weight.dtype)
        return self.stack(x, self_mask=padding_mask)

    def logits(self, out: Tensor) -> Tensor:
        """Tied read-out: ``out @ E^T``."""
        return out @ self.embed.weight.T


# --------------------------------------------------------------------------------------------
# encoder-decoder for translation (docs/translation.md)
# --------------------------------------------------------------------------------------------

Seq2SeqInit = Literal["fairseq", "paper", "tfixup"]


@dataclass
class Seq2SeqConfig:
    """An encoder-decoder built from the block family above.

    ``block`` holds what both stacks share (width, heads, norm, alphas, tau, dropouts);
    ``block.n_layers`` is the number of encoder blocks, ``decoder_layers`` that of the decoder
    (default: the same). A residual scale ``1/sqrt(L)`` uses each stack's own L.

    One joint dictionary: a single embedding matrix serves the encoder input, the decoder input
    and the (tied) output projection, as fairseq's ``--share-all-embeddings``. Embeddings are
    multiplied by sqrt(d) (fairseq's ``embed_scale``; ``scale_embedding=False`` drops it) and
    sinusoidal positions are added (from position 0; fairseq starts at padding_idx + 1, which
    only shifts the phase). Dropout ``block.dropout`` follows the embedding and every sub-layer.

    ``init``:
      * ``fairseq``: fairseq >= 0.10's transformer (``TransformerEncoderLayer``/``DecoderLayer``
        and ``MultiheadAttention.reset_parameters`` of fairseq 0.10-0.12): embeddings N(0, d^-1/2)
        with a zero padding row; query/key/value weights Xavier-uniform with gain 1/sqrt(2), their
        biases PyTorch's default U(+-1/sqrt(fan_in)) (``reset_parameters`` leaves them); attention
        output Xavier-uniform (gain 1), bias zero; feed-forward fc1/fc2 PyTorch's default
        ``nn.Linear`` init (weight and bias U(+-1/sqrt(fan_in)); fairseq <= 0.9 used Xavier, bias 0).
      * ``paper``: the model family's init (:func:`init_paper_`), embeddings as ``fairseq``.
      * ``tfixup``: T-Fixup (Huang et al., 2020) as the authors' code (layer6ai-labs/T-Fixup, a fork of
        fairseq 0.9.0): queries and keys Xavier-uniform with gain 1/sqrt(2) (not rescaled), values with
        gain 1 (their 1/sqrt(2) times sqrt(2)), attention output and fc1/fc2 Xavier-uniform (gain 1,
        bias 0: fairseq 0.9's ``Linear``), query/key/value biases PyTorch's default; embeddings
        N(0, d^-1/2) times (9 N)^-1/4; in every encoder block the value, attention-output and both
        feed-forward weights times 0.67 N^-1/4; in every decoder block the same weights (self- and
        cross-attention) times (9 N)^-1/4 (N = blocks of that stack; as the authors' code, the shared
        embedding is scaled once, with the encoder's N).
    """

    block: ModelConfig
    vocab: int
    decoder_layers: int | None = None
    pad_index: int = 1
    init: Seq2SeqInit = "fairseq"
    scale_embedding: bool = True
    max_positions: int = 1024
    #: the training fast path of :meth:`EncoderDecoder.set_fast` (the same function up to rounding and
    #: dropout's random draws)
    fast: bool = True

    @property
    def encoder(self) -> ModelConfig:
        """Configuration of the encoder stack."""
        return self.block

    @property
    def decoder(self) -> ModelConfig:
        """Configuration of the decoder stack (``decoder_layers`` blocks)."""
        from dataclasses import replace

        return replace(self.block, n_layers=self.decoder_layers or self.block.n_layers)


def _xavier_(w: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> None:
    fan_out, fan_in = w.shape
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    w.uniform_(-bound, bound, generator=generator)


def _default_uniform_(t: Tensor, fan_in: int, generator: torch.Generator | None = None) -> None:
    """``nn.Linear``'s default init of a weight or bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    t.uniform_(-bound, bound, generator=generator)


class EncoderDecoder(nn.Module):
    """Encoder-decoder Transformer: shared embeddings, causal decoder, cross-attention.

    ``forward(src, prev)`` returns ``(logits, states)`` with ``states["encoder"]`` and
    ``states["decoder"]`` the residual stream before and after every block (as :class:`Stack`).
    ``src`` and ``prev`` are (batch, n) token ids, right-padded with ``pad_index``; ``prev`` is
    the target shifted right (fairseq starts it with EOS).
    """

    def __init__(self, cfg: Seq2SeqConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.block.d_model
        self.embed = nn.Embedding(cfg.vocab, d, padding_idx=cfg.pad_index)
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.register_buffer("pos", sinusoidal_positions(cfg.max_positions, d), persistent=False)
        self.encoder = Stack(cfg.encoder)
        self.decoder = Stack(cfg.decoder, cross=True)
        self._attention = [m for m in self.modules() if isinstance(m, MultiHeadAttention)]
        self._fast = False
        self.set_fast(cfg.fast)
        self.reset_parameters(generator)

    def set_fast(self, fast: bool = True, *, dropout: bool | None = None) -> None:
        """The training fast path or the plain one (both compute the same function, see :class:`Seq2SeqConfig`).

        ``fast``: packed Q/K/V GEMMs and fused scale and mask in attention (else separate GEMMs and
        SDPA); ``dropout`` (default: ``fast``): :func:`dropout`'s cheaper masks on the CPU everywhere
        (else ``F.dropout``).
        """
        drop = bool(fast if dropout is None else dropout)
        self._fast = drop
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.fast, m.fast_dropout = bool(fast), drop
            elif isinstance(m, FeedForward | _Block):
                m.fast = drop

    # ---- initialisation -------------------------------------------------------------------

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every weight from ``cfg.init`` (see :class:`Seq2SeqConfig`)."""
        cfg, d = self.cfg, self.cfg.block.d_model
        self.embed.weight.normal_(0.0, d**-0.5, generator=generator)
        if cfg.init == "paper":
            self.encoder.reset_parameters(generator)
            self.decoder.reset_parameters(generator)
        else:
            tfixup = cfg.init == "tfixup"
            for m in self.modules():
                if isinstance(m, MultiHeadAttention):
                    for lin in (m.wq, m.wk, m.wv):
                        _xavier_(lin.weight, 2**-0.5, generator)
                        if lin.bias is not None:
                            _default_uniform_(lin.bias, lin.in_features, generator)
                    if isinstance(m.wo, nn.Linear):
                        _xavier_(m.wo.weight, 1.0, generator)
                        if m.wo.bias is not None:
                            m.wo.bias.zero_()
                elif isinstance(m, FeedForward):
                    for lin in (m.w1, m.w2):
                        if tfixup:  # fairseq 0.9's Linear(): Xavier-uniform, bias 0
                            _xavier_(lin.weight, 1.0, generator)
                            if lin.bias is not None:
                                lin.bias.zero_()
                        else:  # fairseq >= 0.10: nn.Linear's default init
                            _default_uniform_(lin.weight, lin.in_features, generator)
                            if lin.bias is not None:
                                _default_uniform_(lin.bias, lin.in_features, generator)
                elif isinstance(m, nn.LayerNorm):
                    m.reset_parameters()
            if tfixup:
                n_enc, n_dec = len(self.encoder.blocks), len(self.decoder.blocks)
                self.embed.weight.mul_((9 * n_enc) ** -0.25)
                for stack, scale in ((self.encoder, 0.67 * n_enc**-0.25), (self.decoder, (9 * n_dec) ** -0.25)):
                    for block in stack.blocks:
                        attns = [block.attn] + ([block.cross] if block.cross is not None else [])
                        for a in attns:  # the values' gain 1/sqrt(2) -> 1, as the authors' code
                            a.wv.weight.mul_(2**0.5)
                        weights = [a.wv.weight for a in attns] + [block.ffn.w1.weight, block.ffn.w2.weight]
                        weights += [a.wo.weight for a in attns if isinstance(a.wo, nn.Linear)]
                        for w in weights:
                            w.mul_(scale)
        self.embed.weight[cfg.pad_index].zero_()

    # ---- forward --------------------------------------------------------------------------

    def set_tau(self, tau: float) -> None:
        """Set the inverse temperature of every attention (encoder, decoder self and cross)."""
        for m in self._attention:
            m.tau = float(tau)

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """``sqrt(d) E[tokens] + positions``, then dropout."""
        x = self.embed_scale * self.embed(tokens) + self.pos[: tokens.shape[1]].to(self.embed.weight.dtype)
        return (dropout if self._fast else F.dropout)(x, self.cfg.block.dropout, self.training)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Return ``(memory, memory_padding_mask, encoder hidden states)``."""
        mask = src.eq(self.cfg.pad_index)
        out, hidden = self.encoder(self.embed_tokens(src), self_mask=mask)
        return out, mask, hidden

    def decode(
        self, prev: Tensor, memory: Tensor, memory_mask: Tensor, last_only: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Decoder output logits (batch, n, vocab) and its hidden states, for target prefix ``prev``.

        Self-attention is causal; padding sits at the end of each row (right padding), so
        the causal mask already hides padded keys from every real position. ``last_only``:
        logits of the last position only (batch, 1, vocab), for step-by-step decoding.
        """
        out, hidden = self.decoder(self.embed_tokens(prev), memory=memory, memory_mask=memory_mask, causal=True)
        if last_only:
            out = out[:, -1:]
        return self.output_projection(out), hidden

    def output_projection(self, out: Tensor) -> Tensor:
        """Tied read-out: decoder output (..., d) to logits (..., vocab), ``out @ E^T``."""
        return out @ self.embed.weight.T

    def features(self, src: Tensor, prev: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
        """Teacher-forced decoder output before the read-out (batch, n, d), and the hidden states.

        ``output_projection(features(src, prev)[0])`` is ``forward(src, prev)[0]``; a loss that
        needs the logits of some positions only (e.g. non-pad targets) projects just those.
        """
        memory, mask, enc_hidden = self.encode(src)
        out, dec_hidden = self.decoder(self.embed_tokens(prev), memory=memory, memory_mask=mask, causal=True)
        return out, {"encoder": enc_hidden, "decoder": dec_hidden}

    def forward(self, src: Tensor, prev: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
        """Teacher-forced logits and the hidden states of both stacks."""
        out, states = self.features(src, prev)
        return self.output_projection(out), states

    def alphas(self) -> dict[str, list[tuple[float, float]]]:
        """Current ``(alpha1, alpha2)`` of every block, per stack."""
        return {
            name: [(float(b.alpha1.detach()), float(b.alpha2.detach())) for b in stack.blocks]
            for name, stack in (("encoder", self.encoder), ("decoder", self.decoder))
        }
