"""Weight initialisations: the paper's family (:func:`init_paper_`) and the encoder-decoder's (:func:`init_seq2seq_`).

Every function draws in place, in module order, from ``generator`` (reproducible draws).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sigprop import depth_rules
from sigprop.model.attention import MultiHeadAttention
from sigprop.model.blocks import Block, FeedForward
from sigprop.model.config import ModelConfig
from sigprop.params import resolve_alpha


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
        apply_residual_rule_(module, cfg)
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
        elif isinstance(m, Block):
            m.alpha1.fill_(resolve_alpha(cfg.alpha1, cfg.n_layers))  # exact in the module's dtype
            m.alpha2.fill_(resolve_alpha(cfg.alpha2, cfg.n_layers))
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()
    apply_residual_rule_(module, cfg)


@torch.no_grad()
def apply_residual_rule_(module: nn.Module, cfg: ModelConfig) -> None:
    """Apply ``cfg.residual_rule`` (:mod:`sigprop.depth_rules`, Fig S5) to freshly drawn weights of every block
    (draws nothing: the weights of a rule's build are those of the plain build with the same generator, rescaled).

    * ``gpt2``: Wo and W2 times 1/sqrt(2L) (GPT-2: residual layers times 1/sqrt(N), N = 2L residual layers);
    * ``depth_mup``: the branch multiplier 1/sqrt(L) (``Block.branch_mult``);
    * ``deepnorm``: skip multiplier (2L)^(1/4) (``Block.skip``); Wv, Wo, W1, W2 times (8L)^(-1/4) (encoder-only);
    * ``layerscale``: every diagonal entry CaiT's init (0.1, 1e-5 or 1e-6 by depth);
    * ``zero_branch``: Wo and W2 (and their biases) zero: each branch is zero, the block the identity;
    * ``shaped``, ``none``: nothing to set.
    """
    rule, n = cfg.residual_rule, cfg.n_layers
    if rule in ("none", "shaped"):
        return
    for b in module.modules():
        if not isinstance(b, Block):
            continue
        attns = [b.attn] + ([b.cross] if b.cross is not None else [])
        outs = [a.wo for a in attns if isinstance(a.wo, nn.Linear)] + [b.ffn.w2]
        if rule == "gpt2":
            for lin in outs:
                lin.weight.mul_(depth_rules.gpt2_scale(n))
        elif rule == "depth_mup":
            b.branch_mult.fill_(depth_rules.depth_mup_multiplier(n))
        elif rule == "deepnorm":
            b.skip.fill_(depth_rules.deepnorm_alpha(n))
            for lin in [a.wv for a in attns] + outs + [b.ffn.w1]:
                lin.weight.mul_(depth_rules.deepnorm_beta(n))
        elif rule == "layerscale":
            for gamma in b.layerscale:
                gamma.fill_(depth_rules.layerscale_init(n))
        elif rule == "zero_branch":
            for lin in outs:
                lin.weight.zero_()
                if lin.bias is not None:
                    lin.bias.zero_()


@torch.no_grad()
def _init_torch_default_(module: nn.Module, cfg: ModelConfig, generator: torch.Generator | None) -> None:
    """``nn.Linear.reset_parameters`` (kaiming_uniform with a = sqrt(5)) with a generator; alphas and LNs reset."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            _default_uniform_(m.weight, m.in_features, generator)
            if m.bias is not None:
                _default_uniform_(m.bias, m.in_features, generator)
        elif isinstance(m, Block):
            m.alpha1.fill_(resolve_alpha(cfg.alpha1, cfg.n_layers))
            m.alpha2.fill_(resolve_alpha(cfg.alpha2, cfg.n_layers))
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()


def _xavier_(w: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> None:
    fan_out, fan_in = w.shape
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    w.uniform_(-bound, bound, generator=generator)


def _default_uniform_(t: Tensor, fan_in: int, generator: torch.Generator | None = None) -> None:
    """``nn.Linear``'s default init of a weight or bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    t.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def init_seq2seq_(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Draw every weight of ``model``, an :class:`~sigprop.model.EncoderDecoder`, from ``model.cfg.init``
    (see :class:`~sigprop.model.config.Seq2SeqConfig`)."""
    cfg, d = model.cfg, model.cfg.block.d_model
    if cfg.block.residual_rule != "none" and cfg.init != "paper":
        raise ValueError(f"residual_rule {cfg.block.residual_rule!r} is applied by the paper's init only: set the "
                         f"translation model's init: paper (got {cfg.init!r}) or residual_rule: none")
    model.embed.weight.normal_(0.0, d**-0.5, generator=generator)
    if cfg.init == "paper":
        model.encoder.reset_parameters(generator)
        model.decoder.reset_parameters(generator)
    else:
        tfixup = cfg.init == "tfixup"
        for m in model.modules():
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
            n_enc, n_dec = len(model.encoder.blocks), len(model.decoder.blocks)
            model.embed.weight.mul_((9 * n_enc) ** -0.25)
            for stack, scale in ((model.encoder, 0.67 * n_enc**-0.25), (model.decoder, (9 * n_dec) ** -0.25)):
                for block in stack.blocks:
                    attns = [block.attn] + ([block.cross] if block.cross is not None else [])
                    for a in attns:  # the values' gain 1/sqrt(2) -> 1, as the authors' code
                        a.wv.weight.mul_(2**0.5)
                    weights = [a.wv.weight for a in attns] + [block.ffn.w1.weight, block.ffn.w2.weight]
                    weights += [a.wo.weight for a in attns if isinstance(a.wo, nn.Linear)]
                    for w in weights:
                        w.mul_(scale)
    model.embed.weight[cfg.pad_index].zero_()
