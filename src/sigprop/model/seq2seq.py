"""The encoder-decoder for translation (docs/translation.md)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sigprop.model.attention import MultiHeadAttention
from sigprop.model.config import Seq2SeqConfig
from sigprop.model.functional import dropout_fn, sinusoidal_positions
from sigprop.model.init import init_seq2seq_
from sigprop.model.stack import Stack, StackCache


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
        self.encoder = Stack(cfg.encoder, init=False)  # reset_parameters below draws every weight
        self.decoder = Stack(cfg.decoder, cross=True, init=False)
        self._attention = [m for m in self.modules() if isinstance(m, MultiHeadAttention)]
        self._fast_dropout = cfg.encoder.uses_fast_dropout
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every weight from ``cfg.init`` (:func:`~sigprop.model.init.init_seq2seq_`)."""
        init_seq2seq_(self, generator)

    def set_tau(self, tau: float) -> None:
        """Set the inverse temperature of every attention (encoder, decoder self and cross)."""
        for m in self._attention:
            m.tau = float(tau)

    def embed_tokens(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """``sqrt(d) E[tokens] + positions`` (from position ``offset``), then dropout: (batch, n) -> (batch, n, d)."""
        n = tokens.shape[1]
        if offset + n > self.pos.shape[0]:
            raise ValueError(f"positions up to {offset + n - 1} but max_positions is {self.pos.shape[0]}: "
                             "raise Seq2SeqConfig.max_positions or decode shorter outputs")
        x = self.embed_scale * self.embed(tokens) + self.pos[offset : offset + n].to(self.embed.weight.dtype)
        return dropout_fn(self._fast_dropout)(x, self.cfg.block.dropout, self.training)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Return ``(memory, memory_padding_mask, encoder hidden states)`` for ``src`` (batch, m)."""
        mask = src.eq(self.cfg.pad_index)
        out, hidden = self.encoder(self.embed_tokens(src), self_mask=mask)
        return out, mask, hidden

    def new_cache(self) -> StackCache:
        """An empty decoder cache for step-by-step decoding with :meth:`decode`."""
        return self.decoder.new_cache()

    def decode(
        self, prev: Tensor, memory: Tensor, memory_mask: Tensor, last_only: bool = False,
        cache: StackCache | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Decoder output logits (batch, n, vocab) and its hidden states, for target prefix ``prev`` (batch, n).

        Self-attention is causal; padding sits at the end of each row (right padding), so
        the causal mask already hides padded keys from every real position. ``last_only``:
        logits of the last position only (batch, 1, vocab), for step-by-step decoding.
        ``cache`` (:meth:`new_cache`): incremental decoding; ``prev`` holds only the positions after
        the ``cache.length`` already fed (whose keys and values the cache holds, updated in place);
        ``memory`` and ``memory_mask`` are the current rows (after any :meth:`StackCache.reorder`).
        """
        x = self.embed_tokens(prev, 0 if cache is None else cache.length)
        out, hidden = self.decoder(x, memory=memory, memory_mask=memory_mask, causal=True, cache=cache)
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
