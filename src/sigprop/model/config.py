"""Hyper-parameters: one stack of blocks (:class:`ModelConfig`) and the encoder-decoder (:class:`Seq2SeqConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

Norm = Literal["post", "pre", "none"]
AttentionKind = Literal["softmax", "uniform"]
Activation = Literal["relu", "linear"]
Init = Literal["paper", "glorot", "torch"]
Seq2SeqInit = Literal["fairseq", "paper", "tfixup"]
#: published residual/init rules (Fig S5; constants and sources in :mod:`sigprop.depth_rules`)
ResidualRule = Literal["none", "gpt2", "depth_mup", "deepnorm", "layerscale", "zero_branch", "shaped"]


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
    #: a published residual/init rule on top of the family (Fig S5, :mod:`sigprop.depth_rules`): ``gpt2`` Wo and
    #: W2 times 1/sqrt(2L); ``depth_mup`` every branch times 1/sqrt(L); ``deepnorm`` (POST-LN) skip times
    #: (2L)^(1/4), Wv, Wo, W1, W2 times (8L)^(-1/4); ``layerscale`` a per-channel diagonal on every branch, CaiT's
    #: init; ``zero_branch`` Wo and W2 zero; ``shaped`` attention matrix I + softmax - 11^T/n (Noci et al. 2023)
    residual_rule: ResidualRule = "none"
    #: the training fast path, read when the modules are built: packed Q/K/V GEMMs and, with attention dropout
    #: on the CPU, the scale and mask fused into the score GEMM (:class:`~sigprop.model.MultiHeadAttention`;
    #: the same function up to rounding)
    fast: bool = False
    #: :func:`~sigprop.model.dropout`'s cheaper CPU masks for every dropout (other, equally distributed draws
    #: than ``F.dropout``'s); None: as ``fast``
    fast_dropout: bool | None = None

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model = {self.d_model} is not divisible by n_heads = {self.n_heads}: each head "
                             "takes d_model / n_heads columns; choose d_model a multiple of n_heads")

    @property
    def d_k(self) -> int:
        """Per-head query/key (and value) dimension."""
        return self.d_model // self.n_heads

    @property
    def uses_fast_dropout(self) -> bool:
        """Whether dropout draws :func:`~sigprop.model.dropout`'s masks (``fast_dropout``, default ``fast``)."""
        return self.fast if self.fast_dropout is None else bool(self.fast_dropout)


def block_config(values: Mapping[str, Any], **over: Any) -> ModelConfig:
    """A :class:`ModelConfig` from the keys of ``values`` that are its fields (a parameter point, a config
    section; other keys are ignored), ``alpha`` setting both residual scales, then ``over`` on top."""
    cfg = {k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__}
    if "alpha" in values:
        cfg["alpha1"] = cfg["alpha2"] = values["alpha"]
    return ModelConfig(**{**cfg, **over})


@dataclass
class Seq2SeqConfig:
    """An encoder-decoder built from the block family.

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
      * ``paper``: the model family's init (:func:`~sigprop.model.init.init_paper_`), embeddings as ``fairseq``.
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
    #: the training fast path of both stacks (:attr:`ModelConfig.fast`, which it sets; the same function up to
    #: rounding and dropout's random draws)
    fast: bool = True
    #: :attr:`ModelConfig.fast_dropout` of both stacks and the embedding (None: as ``fast``)
    fast_dropout: bool | None = None

    @property
    def encoder(self) -> ModelConfig:
        """Configuration of the encoder stack."""
        return replace(self.block, fast=self.fast, fast_dropout=self.fast_dropout)

    @property
    def decoder(self) -> ModelConfig:
        """Configuration of the decoder stack (``decoder_layers`` blocks)."""
        return replace(self.encoder, n_layers=self.decoder_layers or self.block.n_layers)
