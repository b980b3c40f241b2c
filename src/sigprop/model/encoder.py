"""The encoder of the init-time experiments: embeddings, positions, a :class:`Stack`, a tied read-out."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigprop.model.config import ModelConfig
from sigprop.model.functional import sinusoidal_positions
from sigprop.model.stack import Stack


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
        """Embed ``tokens`` (batch, n) and return ``(output, hidden states)``, each (batch, n, d)."""
        x = self.embed(tokens) + self.pos[: tokens.shape[1]].to(self.embed.weight.dtype)
        return self.stack(x, self_mask=padding_mask)

    def logits(self, out: Tensor) -> Tensor:
        """Tied read-out: ``out @ E^T``."""
        return out @ self.embed.weight.T
