"""The training methods of Table 1 (and Fig 1's scaled POST-LN), from their config entries.

A method (config ``methods.<name>``) fixes the architecture variant and the optimiser:
``norm`` (post / pre / none), residual scales ``alpha`` (or ``alpha1``/``alpha2``; a number or
``"1/sqrt(L)"``), ``trainable_alpha``, ``shared_alpha`` (one scale per block for all its sub-layers,
as ReZero's code), the inverse temperature ``tau`` with its linear warm-up
``tau_warmup`` (``tau_t = tau * min(1, t / tau_warmup)`` at update t = 1, 2, ...), ``init``
(fairseq / paper / tfixup) and ``optimizer`` (a key of ``translation.optimizers``).

Optimisers (``translation.optimizers.<name>``): ``kind: adam`` (AdamW: decoupled weight decay
``p -= lr * wd * p``, as fairseq's Adam), ``kind: radam`` (``torch.optim.RAdam`` with the same
decoupled weight decay: the rectified Adam that T-Fixup's and Transformer-Clinic's fairseq forks run
under the name ``adam``) or ``kind: sgd`` (SGD with the same decoupled weight
decay, Loshchilov & Hutter); ``schedule`` (a function of the update t = 1, 2, ..., see
:mod:`sigprop.train.schedules`): ``inverse_sqrt`` (fairseq: linear warm-up from
``warmup_init_lr`` over ``warmup_updates``, then ``lr * sqrt(warmup / t)``), ``inverse_sqrt_nowarmup``
(T-Fixup's fairseq fork: ``lr * sqrt(P / (P + t))``, P = ``decay_period``), ``step``
(``lr * gamma ** #{milestones <= t}``, milestones as fractions of ``updates``), or ``constant``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from sigprop.model import EncoderDecoder, Seq2SeqConfig, block_config
from sigprop.train import schedules
from sigprop.train.schedules import Schedule

MODEL_KEYS = ("d_model", "n_heads", "d_ff", "dropout", "attn_dropout", "act_dropout", "bias", "qk_fan", "activation")


def model_config(
    model: Mapping[str, Any], method: Mapping[str, Any], layers: int, vocab: int, pad: int = 1
) -> Seq2SeqConfig:
    """The encoder-decoder for ``method`` with ``layers`` encoder and ``layers`` decoder blocks."""
    alpha = method.get("alpha", 1.0)
    block = block_config(
        {k: model[k] for k in MODEL_KEYS if k in model},
        n_layers=int(layers),
        norm=method.get("norm", "post"),
        alpha1=method.get("alpha1", alpha),
        alpha2=method.get("alpha2", alpha),
        trainable_alpha=bool(method.get("trainable_alpha", False)),
        shared_alpha=bool(method.get("shared_alpha", False)),
        tau=tau_at(0, method),
    )
    return Seq2SeqConfig(
        block=block,
        vocab=int(vocab),
        pad_index=int(pad),
        init=method.get("init", model.get("init", "fairseq")),
        scale_embedding=bool(model.get("scale_embedding", True)),
        max_positions=int(model.get("max_positions", 1024)),
    )


def build_model(
    model: Mapping[str, Any],
    method: Mapping[str, Any],
    layers: int,
    vocab: int,
    pad: int = 1,
    generator: torch.Generator | None = None,
) -> EncoderDecoder:
    """Instantiate :func:`model_config` (weights drawn from ``generator`` or the global RNG)."""
    return EncoderDecoder(model_config(model, method, layers, vocab, pad), generator)


def tau_at(update: int, method: Mapping[str, Any]) -> float:
    """Inverse temperature at update ``t``: ``tau * min(1, t / tau_warmup)`` (docs/translation.md; t = 0 at init)."""
    tau = float(method.get("tau", 1.0))
    warmup = int(method.get("tau_warmup", 0))
    return tau * min(1.0, update / warmup) if warmup > 0 else tau


def inverse_sqrt_nowarmup(lr: float, decay_period: float) -> Schedule:
    """T-Fixup's fairseq fork (``inverse_sqrt_nowarmup``): ``lr * sqrt(P / (P + t))``, no warm-up."""
    return lambda t: lr * (decay_period / (decay_period + t)) ** 0.5


def lr_schedule(opt: Mapping[str, Any]) -> Schedule:
    """The learning rate of update ``t`` (1, 2, ...), built on :mod:`sigprop.train.schedules`."""
    lr = float(opt["lr"])
    sched = opt.get("schedule", {"kind": "constant"})
    kind = sched["kind"]
    if kind == "constant":
        return schedules.constant(lr)
    if kind == "inverse_sqrt":
        return schedules.inverse_sqrt(lr, int(sched["warmup_updates"]), float(sched.get("warmup_init_lr", 0.0)))
    if kind == "inverse_sqrt_nowarmup":
        return inverse_sqrt_nowarmup(lr, float(sched["decay_period"]))
    if kind == "step":
        total = int(opt["updates"])
        return schedules.step_decay(lr, [round(f * total) for f in sched["milestones"]], float(sched["gamma"]))
    raise ValueError(f"unknown schedule kind {kind!r}; use constant, inverse_sqrt, inverse_sqrt_nowarmup or step")


class SGDW(torch.optim.SGD):
    """SGD with decoupled weight decay: ``p <- p - lr * wd * p`` before the (momentum) SGD step."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=0.0, **kw)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = weight_decay

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102
        for group in self.param_groups:
            wd = group.get("decoupled_weight_decay", 0.0)
            if wd:
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    torch._foreach_mul_(params, 1.0 - group["lr"] * wd)
        return super().step(closure)


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    opt: Mapping[str, Any],
    device: torch.device | str = "cpu",
    fused: bool = True,
) -> torch.optim.Optimizer:
    """AdamW, RAdam or SGDW from an optimiser config; ``fused``: PyTorch's fused kernels (CPU and CUDA).

    ``fused=False`` gives PyTorch's default implementation (per-parameter loops on the CPU). RAdam has no
    fused kernel in PyTorch: it uses the multi-tensor (``foreach``) implementation.
    """
    fused = {"fused": True} if fused and torch.device(device).type in ("cpu", "cuda") else {}
    kind = opt["kind"]
    if kind in ("adam", "radam"):
        adam = {
            "lr": float(opt["lr"]),
            "betas": tuple(opt.get("betas", (0.9, 0.999))),
            "eps": float(opt.get("eps", 1e-8)),
            "weight_decay": float(opt.get("weight_decay", 0.0)),
        }
        if kind == "adam":
            return torch.optim.AdamW(params, **adam, **fused)
        return torch.optim.RAdam(params, **adam, decoupled_weight_decay=True)
    if kind == "sgd":
        return SGDW(
            params,
            lr=float(opt["lr"]),
            momentum=float(opt.get("momentum", 0.0)),
            weight_decay=float(opt.get("weight_decay", 0.0)),
            **fused,
        )
    raise ValueError(f"unknown optimizer kind {kind!r}; use adam, radam or sgd")


def label_smoothed_nll(
    logits: torch.Tensor, target: torch.Tensor, eps: float, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """fairseq's ``label_smoothed_cross_entropy``: (loss, nll), both summed over non-pad target tokens.

    ``loss = (1 - eps - eps/(V-1)) * nll + eps/(V-1) * sum_v(-log p_v)``.
    """
    lprobs = torch.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    target = target.reshape(-1)
    keep = target.ne(pad)  # masking by multiplication: no copy of the (tokens, vocab) tensor
    nll = -lprobs.gather(1, target[:, None]).squeeze(1)
    smooth = -lprobs.sum(-1)
    eps_i = eps / (lprobs.shape[-1] - 1)
    loss = (1.0 - eps - eps_i) * nll + eps_i * smooth
    return (loss * keep).sum(), (nll * keep).sum()


#: rows of the (rows, vocab) logits block :func:`linear_label_smoothed_nll` holds at a time
LOSS_CHUNK_ROWS = 256


def _smoothed_chunk(x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, eps: float, grad: bool):  # noqa: ANN202
    """Loss and NLL (both summed) of one chunk of rows and, with ``grad``, ``p - (1 - eps - eps_i) onehot``.

    d loss_i / d logit_v = p_v - (1 - eps - eps_i) [v = t_i] - eps_i: the constant ``- eps_i`` is left to
    the caller, who applies it to the products with ``weight`` and ``x`` once for all chunks.
    """
    logits = (x @ weight.T).float()
    vocab = logits.shape[-1]
    eps_i = eps / (vocab - 1)
    top, arg = logits.max(dim=-1, keepdim=True)
    p = torch.softmax(logits, dim=-1)
    # log-sum-exp from the most likely class (p >= 1/vocab there: no underflow), without a second exp pass
    lse = top - p.gather(1, arg).log()
    nll = (lse - logits.gather(1, target[:, None])).sum()
    smooth = (vocab * lse.sum() - logits.sum())  # sum over rows and v of -log p_v
    loss = (1.0 - eps - eps_i) * nll + eps_i * smooth
    if not grad:
        return loss, nll, None
    p.scatter_add_(1, target[:, None], p.new_full((p.shape[0], 1), -(1.0 - eps - eps_i)))
    return loss, nll, p


class _LinearLabelSmoothedNLL(torch.autograd.Function):
    """Read-out and label-smoothed NLL in one pass over row chunks; the gradient is formed on the way."""

    @staticmethod
    def forward(ctx, x, weight, target, eps, chunk):  # noqa: ANN001, ANN205, D102
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros_like(weight)
        loss = x.new_zeros((), dtype=torch.float32)
        nll = x.new_zeros((), dtype=torch.float32)
        for s in range(0, x.shape[0], chunk):
            xs = x[s : s + chunk]
            ls, nl, g = _smoothed_chunk(xs, weight, target[s : s + chunk], eps, grad=True)
            g = g.to(x.dtype)
            loss, nll = loss + ls, nll + nl
            grad_x[s : s + chunk] = g @ weight
            grad_w.addmm_(g.T, xs)
        # the - eps_i of every logit's gradient: - eps_i * sum_v w_v for each row, - eps_i * sum_i x_i for each w_v
        eps_i = eps / (weight.shape[0] - 1)
        grad_x.sub_(eps_i * weight.sum(0))
        grad_w.sub_(eps_i * x.sum(0))
        ctx.save_for_backward(grad_x, grad_w)
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll):  # noqa: ANN001, ANN205, D102
        grad_x, grad_w = ctx.saved_tensors
        gx = grad_x * grad_loss if ctx.needs_input_grad[0] else None
        gw = grad_w * grad_loss if ctx.needs_input_grad[1] else None
        return gx, gw, None, None, None


def linear_label_smoothed_nll(
    x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, eps: float, pad: int, chunk: int = LOSS_CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`label_smoothed_nll` of the logits ``x @ weight.T``, computed without them.

    ``x`` (..., d) are decoder outputs, ``weight`` (vocab, d) the read-out, ``target`` (...) the
    target ids. Only non-pad rows are projected, ``chunk`` rows at a time, and with autograd on, the
    gradients of ``x`` and ``weight`` are formed in the same pass (the (tokens, vocab) log-probabilities
    are never stored, nor the pad rows' logits computed). Equal to
    ``label_smoothed_nll(x @ weight.T, target, eps, pad)`` up to floating-point rounding.
    """
    x = x.reshape(-1, x.shape[-1])
    target = target.reshape(-1)
    keep = target.ne(pad).nonzero().squeeze(1)
    x, target = x.index_select(0, keep), target.index_select(0, keep)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _LinearLabelSmoothedNLL.apply(x, weight, target, float(eps), int(chunk))
    loss = nll = x.new_zeros((), dtype=torch.float32)
    for s in range(0, x.shape[0], chunk):
        ls, nl, _ = _smoothed_chunk(x[s : s + chunk], weight, target[s : s + chunk], eps, grad=False)
        loss, nll = loss + ls, nll + nl
    return loss, nll
