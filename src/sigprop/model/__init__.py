"""The Transformer family studied by Noci et al. (2022).

A block follows the paper's equations (docs/init-time.md)::

    Z      = alpha1 * S(X) + X
    Y      = W2 sigma(W1 Z)
    X_next = alpha2 * Y + Z
    S(X)   = A(X) X Wv,   A(X) = softmax(tau / sqrt(d_k) * X Wq (X Wk)^T)

with layer normalisation placed after each residual add (``post``), on each
sub-layer input plus a final LN (``pre``), or nowhere (``none``). Every
forward pass returns the hidden state after each block, so per-layer probes
need no hooks.

Modules, bottom up: ``config`` (the hyper-parameter dataclasses), ``functional`` (attention weights,
dropout, masks, positions), ``attention`` (multi-head attention and its :class:`KVCache`), ``blocks``
(:class:`PostNormBlock`, :class:`PreNormBlock`), ``init`` (initialisations), ``stack`` (a stack of
blocks and its decoding cache), ``encoder`` (the init-time experiments' model), ``seq2seq`` (the
translation model).
"""

from sigprop.model.attention import KVCache, MultiHeadAttention
from sigprop.model.blocks import Block, BlockCache, FeedForward, PostNormBlock, PreNormBlock
from sigprop.model.config import (
    Activation,
    AttentionKind,
    Init,
    ModelConfig,
    Norm,
    Seq2SeqConfig,
    Seq2SeqInit,
    block_config,
)
from sigprop.model.encoder import Encoder
from sigprop.model.functional import attention_weights, dropout, sinusoidal_positions
from sigprop.model.init import init_paper_, init_seq2seq_
from sigprop.model.seq2seq import EncoderDecoder
from sigprop.model.stack import Stack, StackCache
from sigprop.params import resolve_alpha

__all__ = [
    "Activation",
    "AttentionKind",
    "Block",
    "BlockCache",
    "Encoder",
    "EncoderDecoder",
    "FeedForward",
    "Init",
    "KVCache",
    "ModelConfig",
    "MultiHeadAttention",
    "Norm",
    "PostNormBlock",
    "PreNormBlock",
    "Seq2SeqConfig",
    "Seq2SeqInit",
    "Stack",
    "StackCache",
    "attention_weights",
    "block_config",
    "dropout",
    "init_paper_",
    "init_seq2seq_",
    "resolve_alpha",
    "sinusoidal_positions",
]
