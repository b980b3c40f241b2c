"""Fig S7: a rank-collapse probe of models people build, at initialisation (docs/supplementary.md).

Real architectures of Hugging Face ``transformers`` (the optional extra ``models``: ``pip install -e
".[models]"``), built from configs constructed here, with random weights and nothing downloaded
(``HF_HUB_OFFLINE=1``): GPT-2 (PRE-LN, causal LM), BERT (POST-LN, masked LM), Llama (PRE-RMSNorm, SwiGLU,
rotary positions, causal LM) and ViT (PRE-LN, image classification). Each is built at the library's own
initialisation (``initializer_range`` 0.02), then measured per block through forward hooks on the residual
stream: the mean pairwise token cosine and the mean token norm of the input of block 1 (layer 0) and of
every block's output, and the Frobenius norms of the gradients of the query, key and value weights of one
loss on a fixed batch (the same for every seed, arm and depth: ``batch_seed``).

Arms (``arm``), paired: seed s draws the same weights in every arm of a model (``torch.manual_seed(s)``
before the build), and an arm only rescales some of them:

* GPT-2 ``built`` as the library initialises it (``c_proj`` of attention and MLP with std
  0.02/sqrt(2 L), GPT-2's "scale the weights of residual layers by 1/sqrt(N)"); ``unscaled``: the same
  ``c_proj`` weights times sqrt(2 L), i.e. drawn from N(0, 0.02^2): the init of ``transformers`` 5.14.1,
  where the scaling was silently skipped (huggingface/transformers#47458, fixed by #47459 in 5.15.0);
* Llama ``default``: every linear weight N(0, 0.02^2) (the library's init); ``scaled``: ``o_proj`` and
  ``down_proj`` times 1/sqrt(2 L) (GPT-2's rule applied to Llama's residual output projections);
* ``twin`` (GPT-2 and BERT): the model with ReLU instead of GELU, in float64, measured beside the project's
  own block (:class:`sigprop.model.Stack`, PRE-LN for GPT-2, POST-LN for BERT) with the same weights copied
  in, run from the same layer-0 hidden state through the model's own head and loss: an independent
  cross-check of :mod:`sigprop.model` (``xcheck_*`` rows: largest deviation per layer).

Losses: GPT-2 and Llama the causal LM loss on random token ids (labels = inputs, shifted inside the model),
BERT the masked-LM loss predicting every input token (no token masked: at init only the gradient's path
matters), ViT cross-entropy of random labels on N(0, 1) images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.model import ModelConfig, Stack
from sigprop.tasks.measure import token_cosine

#: the version of ``transformers`` the extra pins (pyproject.toml), quoted in messages
TRANSFORMERS_PIN = "5.25.0"
INSTALL = f'pip install -e ".[models]"  (transformers=={TRANSFORMERS_PIN}; CPU torch is enough)'

MODELS = ("gpt2", "bert", "llama", "vit")
#: the arms of each model; the first is the model as the library builds it
ARMS: dict[str, tuple[str, ...]] = {
    "gpt2": ("built", "unscaled", "twin"),
    "bert": ("built", "twin"),
    "llama": ("default", "scaled"),
    "vit": ("built",),
}
MODEL_LABELS = {"gpt2": "GPT-2", "bert": "BERT", "llama": "Llama", "vit": "ViT"}
ARM_LABELS = {
    "built": "as built",
    "unscaled": "c_proj unscaled (#47458)",
    "default": "default std",
    "scaled": "o/down_proj / sqrt(2L)",
    "twin": "ReLU twin (cross-check)",
}
#: the std the library draws linear weights from (every config here leaves initializer_range at 0.02)
INIT_STD = 0.02


class MissingExtra(ImportError):
    """The optional dependency ``transformers`` is not installed: the message says what to install."""


def require_transformers() -> Any:
    """Import ``transformers`` offline (``HF_HUB_OFFLINE=1``); raise :class:`MissingExtra` naming the install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ModuleNotFoundError as err:
        raise MissingExtra(f"Fig S7 (the model probe) needs Hugging Face transformers, which is not installed: "
                           f"{INSTALL}") from err
    return transformers


def depth_scaled_std(n_layers: int, std: float = INIT_STD) -> float:
    """GPT-2's std of a residual output projection: std / sqrt(2 L) (two residual branches per block)."""
    return std / math.sqrt(2 * n_layers)


@dataclass
class Built:
    """One model ready to probe: its blocks (the residual stream's steps), their q/k/v weights and residual-branch
    output weights, and the loss on the fixed batch (``loss(model)``, a forward pass)."""

    model: nn.Module
    blocks: list[nn.Module]
    qkv: Callable[[nn.Module], tuple[Tensor, Tensor, Tensor]]  # block -> grads of Wq, Wk, Wv
    out_weights: Callable[[nn.Module], list[Tensor]]  # block -> its residual-branch output projections
    loss: Callable[[], Tensor]
    head_loss: Callable[[Tensor], Tensor] | None = None  # last hidden state -> loss (the twin's tail)


def _ints(p: Mapping[str, Any], *keys: str) -> list[int]:
    return [int(p[k]) for k in keys]


def _batch(p: Mapping[str, Any]) -> dict[str, Tensor]:
    """The fixed batch: from ``batch_seed``, the same for every seed, arm and depth."""
    g = torch.Generator().manual_seed(int(p.get("batch_seed", 0)))
    b, n, vocab = _ints(p, "batch_size", "n_tokens", "vocab")
    if p["model"] == "vit":
        size = int(p["image_size"])
        return {"pixel_values": torch.randn(b, 3, size, size, generator=g),
                "labels": torch.randint(0, int(p["n_labels"]), (b,), generator=g)}
    return {"input_ids": torch.randint(0, vocab, (b, n), generator=g)}


def _lm_loss(logits: Tensor, ids: Tensor, causal: bool) -> Tensor:
    """Mean token cross-entropy: next token (causal) or the token itself (BERT's MLM head on unmasked input)."""
    if causal:
        logits, ids = logits[:, :-1], ids[:, 1:]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))


def build(p: Mapping[str, Any], seed: int) -> Built:
    """Build ``p['model']`` at depth ``n_layers`` with the library's init from ``torch.manual_seed(seed)``, apply
    the arm, and bind the fixed batch and the loss."""
    tf = require_transformers()
    model_name, arm = p["model"], p.get("arm", ARMS.get(p["model"], ("built",))[0])
    if model_name not in ARMS:
        raise ValueError(f"model {model_name!r}: the probe builds {', '.join(MODELS)}")
    if arm not in ARMS[model_name]:
        raise ValueError(f"arm {arm!r} of {model_name}: its arms are {', '.join(ARMS[model_name])}")
    d, heads, d_ff, n_layers, n, vocab = _ints(p, "d_model", "n_heads", "d_ff", "n_layers", "n_tokens", "vocab")
    twin = arm == "twin"
    act = "relu" if twin else None
    drop = {"attention_dropout": 0.0}
    torch.manual_seed(seed)
    batch = _batch(p)
    if model_name == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_positions=n, n_embd=d, n_layer=n_layers, n_head=heads, n_inner=d_ff,
                            activation_function=act or "gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                            initializer_range=INIT_STD)
        model = tf.GPT2LMHeadModel(cfg)
        blocks = list(model.transformer.h)

        def qkv(b: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
            return tuple(b.attn.c_attn.weight.grad.split(d, dim=1))  # Conv1D: (in, 3 d), q | k | v

        def out_weights(b: nn.Module) -> list[Tensor]:
            return [b.attn.c_proj.weight, b.mlp.c_proj.weight]

        def head_loss(h: Tensor) -> Tensor:
            return _lm_loss(model.lm_head(h), batch["input_ids"], causal=True)

        if arm == "unscaled":
            with torch.no_grad():
                for w in (w for b in blocks for w in out_weights(b)):
                    w.mul_(math.sqrt(2 * n_layers))
    elif model_name == "bert":
        cfg = tf.BertConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=n_layers, num_attention_heads=heads,
                            intermediate_size=d_ff, hidden_act=act or "gelu", hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, max_position_embeddings=n, initializer_range=INIT_STD)
        model = tf.BertForMaskedLM(cfg)
        blocks = list(model.bert.encoder.layer)

        def qkv(b: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
            s = b.attention.self
            return s.query.weight.grad, s.key.weight.grad, s.value.weight.grad

        def out_weights(b: nn.Module) -> list[Tensor]:
            return [b.attention.output.dense.weight, b.output.dense.weight]

        def head_loss(h: Tensor) -> Tensor:
            return _lm_loss(model.cls(h), batch["input_ids"], causal=False)
    elif model_name == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=d_ff, num_hidden_layers=n_layers,
                             num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=n,
                             initializer_range=INIT_STD, tie_word_embeddings=False, **drop)
        model = tf.LlamaForCausalLM(cfg)
        blocks = list(model.model.layers)

        def qkv(b: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
            a = b.self_attn
            return a.q_proj.weight.grad, a.k_proj.weight.grad, a.v_proj.weight.grad

        def out_weights(b: nn.Module) -> list[Tensor]:
            return [b.self_attn.o_proj.weight, b.mlp.down_proj.weight]

        head_loss = None
        if arm == "scaled":
            with torch.no_grad():
                for w in (w for b in blocks for w in out_weights(b)):
                    w.div_(math.sqrt(2 * n_layers))
    else:  # vit
        size, patch = _ints(p, "image_size", "patch_size")
        cfg = tf.ViTConfig(image_size=size, patch_size=patch, num_channels=3, hidden_size=d,
                           num_hidden_layers=n_layers, num_attention_heads=heads, intermediate_size=d_ff,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=int(p["n_labels"]),
                           initializer_range=INIT_STD)
        model = tf.ViTForImageClassification(cfg)
        blocks = list(model.vit.layers)

        def qkv(b: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
            a = b.attention
            return a.q_proj.weight.grad, a.k_proj.weight.grad, a.v_proj.weight.grad

        def out_weights(b: nn.Module) -> list[Tensor]:
            return [b.attention.o_proj.weight, b.mlp.fc2.weight]

        head_loss = None
    if twin:
        model = model.double()
    model.eval()  # no dropout anywhere (the configs set it to 0 as well)

    def loss() -> Tensor:
        if model_name == "vit":
            return model(pixel_values=batch["pixel_values"].to(model.dtype), labels=batch["labels"]).loss
        return _lm_loss(model(input_ids=batch["input_ids"]).logits, batch["input_ids"], model_name != "bert")

    return Built(model, blocks, qkv, out_weights, loss, head_loss)


def _block_output(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


def forward_backward(built: Built) -> tuple[list[Tensor], list[tuple[Tensor, Tensor, Tensor]], float]:
    """One forward and backward pass of the loss with hooks on the residual stream: the hidden states (layer 0 =
    the input of block 1, then every block's output), the q/k/v weight gradients per block, and the loss."""
    hidden: list[Tensor] = []
    hooks = [built.blocks[0].register_forward_pre_hook(
        lambda m, args, kwargs: hidden.append((args[0] if args else kwargs["hidden_states"]).detach()),
        with_kwargs=True)]
    hooks += [b.register_forward_hook(lambda m, a, out: hidden.append(_block_output(out).detach()))
              for b in built.blocks]
    try:
        built.model.zero_grad(set_to_none=True)
        loss = built.loss()
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    if len(hidden) != len(built.blocks) + 1:
        raise RuntimeError(f"the hooks saw {len(hidden)} hidden states for {len(built.blocks)} blocks")
    return hidden, [built.qkv(b) for b in built.blocks], float(loss.detach())


def stream_stats(h: Tensor) -> tuple[float, float]:
    """Mean pairwise token cosine and mean token norm of a batch of hidden states (batch, n, d)."""
    return float(token_cosine(h.double()).mean()), float(h.double().norm(dim=-1).mean())


def _rows(seed: int, layer: int, values: Mapping[str, float]) -> list[dict]:
    return [{"seed": seed, "layer": layer, "metric": k, "value": float(v)} for k, v in values.items()]


def twin_stack(built: Built, p: Mapping[str, Any]) -> Stack:
    """The project's own stack with the model's weights copied in (float64): PRE-LN for GPT-2, POST-LN for BERT.

    ReLU, biases, softmax attention with scale 1/sqrt(d_k), LayerNorm with the model's eps (GPT-2 1e-5, BERT
    1e-12); for GPT-2 the final LN is ``ln_f``.
    """
    model_name = p["model"]
    d, heads, d_ff, n_layers = _ints(p, "d_model", "n_heads", "d_ff", "n_layers")
    norm = {"gpt2": "pre", "bert": "post"}.get(model_name)
    if norm is None:
        raise ValueError(f"the twin cross-check builds GPT-2 and BERT blocks, not {model_name!r}")
    stack = Stack(ModelConfig(d_model=d, n_heads=heads, d_ff=d_ff, n_layers=n_layers, norm=norm, activation="relu",
                              bias=True, qk_fan="d_k")).double()

    def copy_linear(dst: nn.Linear, weight: Tensor, bias: Tensor) -> None:
        dst.weight.copy_(weight)
        dst.bias.copy_(bias)

    def copy_norm(dst: nn.LayerNorm, src: nn.LayerNorm) -> None:
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)
        dst.eps = src.eps

    with torch.no_grad():
        for ours, theirs in zip(stack.blocks, built.blocks, strict=True):
            if model_name == "gpt2":  # Conv1D stores (in, out): y = x W + b
                w, b = theirs.attn.c_attn.weight, theirs.attn.c_attn.bias
                for k, lin in enumerate((ours.attn.wq, ours.attn.wk, ours.attn.wv)):
                    copy_linear(lin, w[:, k * d:(k + 1) * d].T, b[k * d:(k + 1) * d])
                copy_linear(ours.attn.wo, theirs.attn.c_proj.weight.T, theirs.attn.c_proj.bias)
                copy_linear(ours.ffn.w1, theirs.mlp.c_fc.weight.T, theirs.mlp.c_fc.bias)
                copy_linear(ours.ffn.w2, theirs.mlp.c_proj.weight.T, theirs.mlp.c_proj.bias)
                copy_norm(ours.norms[0], theirs.ln_1)
                copy_norm(ours.norms[1], theirs.ln_2)
            else:
                s = theirs.attention.self
                for lin, src in ((ours.attn.wq, s.query), (ours.attn.wk, s.key), (ours.attn.wv, s.value),
                                 (ours.attn.wo, theirs.attention.output.dense),
                                 (ours.ffn.w1, theirs.intermediate.dense), (ours.ffn.w2, theirs.output.dense)):
                    copy_linear(lin, src.weight, src.bias)
                copy_norm(ours.norms[0], theirs.attention.output.LayerNorm)
                copy_norm(ours.norms[1], theirs.output.LayerNorm)
        if model_name == "gpt2":
            copy_norm(stack.final_norm, built.model.transformer.ln_f)
    return stack


def twin_deviations(built: Built, p: Mapping[str, Any], hidden: list[Tensor],
                    grads: list[tuple[Tensor, Tensor, Tensor]], stack: Stack | None = None) -> list[dict[str, float]]:
    """Per layer, the largest deviation of the project's stack (weights copied, :func:`twin_stack`) from the model:
    ``xcheck_cosine`` |cos - cos'|, ``xcheck_norm`` relative, ``xcheck_grad`` relative, largest of q, k, v
    (layers >= 1). The stack runs from the model's layer-0 hidden state through the model's head and loss."""
    stack = stack if stack is not None else twin_stack(built, p)
    out, ours = stack(hidden[0].clone(), causal=p["model"] == "gpt2")
    built.head_loss(out).backward()
    rows = []
    for layer, (h, g) in enumerate(zip(hidden, ours, strict=True)):
        (c, nrm), (c2, nrm2) = stream_stats(h), stream_stats(g.detach())
        row = {"xcheck_cosine": abs(c - c2), "xcheck_norm": abs(nrm2 / nrm - 1)}
        if layer >= 1:
            blk = stack.blocks[layer - 1].attn
            theirs = grads[layer - 1]
            row["xcheck_grad"] = max(abs(float(lin.weight.grad.norm() / t.norm()) - 1)
                                     for lin, t in zip((blk.wq, blk.wk, blk.wv), theirs, strict=True))
        rows.append(row)
    return rows


def probe(p: Mapping[str, Any], seeds: list[int]) -> pd.DataFrame:
    """One parameter point (model, arm, depth, sizes) for ``seeds``: the tidy table (seed, layer, metric, value).

    Metrics per layer l = 0..L: ``cosine``, ``norm`` (mean token norm); per block l = 1..L: ``grad_q``,
    ``grad_k``, ``grad_v`` (Frobenius norms), ``out_rms`` (root mean square of the block's residual-branch
    output weights, attention and MLP pooled) and ``out_numel`` (their number of entries); ``loss`` at layer L;
    twin arms also ``xcheck_*`` (:func:`twin_deviations`).
    """
    rows: list[dict] = []
    for seed in seeds:
        built = build(p, seed)
        hidden, grads, loss = forward_backward(built)
        for layer, h in enumerate(hidden):
            cos, nrm = stream_stats(h)
            rows += _rows(seed, layer, {"cosine": cos, "norm": nrm})
        for layer, (block, g) in enumerate(zip(built.blocks, grads, strict=True), start=1):
            w = torch.cat([x.detach().reshape(-1) for x in built.out_weights(block)]).double()
            rows += _rows(seed, layer, {"grad_q": g[0].norm(), "grad_k": g[1].norm(), "grad_v": g[2].norm(),
                                        "out_rms": w.pow(2).mean().sqrt(), "out_numel": w.numel()})
        rows += _rows(seed, len(built.blocks), {"loss": loss})
        if p.get("arm") == "twin":
            for layer, dev in enumerate(twin_deviations(built, p, hidden, grads)):
                rows += _rows(seed, layer, dev)
    return pd.DataFrame(rows)


def run(spec: Mapping[str, Any]) -> pd.DataFrame:
    """One job of ``experiments.model_probe`` (its JSON spec): every inner point for the spec's seeds, with the
    parameter columns (as :func:`sigprop.tasks.init_time.run_point`)."""
    from sigprop.grid import iter_inner

    frames = []
    for params in iter_inner(spec["fixed"], spec["point"], spec.get("inner")):
        df = probe(params, list(spec["seeds"]))
        for key in sorted(params, reverse=True):
            df.insert(0, key, params[key])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def summary_table(raw: pd.DataFrame) -> pd.DataFrame:
    """The printed table: per model, arm and depth, means over seeds of the last layer's token cosine and norm,
    the query-to-value gradient ratio at the first and last block, and the output-weight std over the
    depth-scaled one, 0.02/sqrt(2L)."""
    rows = []
    for (model, arm, n_layers), g in raw.groupby(["model", "arm", "n_layers"], sort=False):
        w = g.pivot_table(index=["seed", "layer"], columns="metric", values="value").reset_index()
        last, first = w[w.layer == n_layers], w[w.layer == 1]
        rows.append({
            "model": MODEL_LABELS.get(model, model), "arm": ARM_LABELS.get(arm, arm), "L": int(n_layers),
            "seeds": int(w.seed.nunique()),
            "cosine L": last.cosine.mean(), "norm L / norm 0": (last.norm.to_numpy() / w[w.layer == 0].norm.to_numpy()
                                                                ).mean(),
            "|gQ|/|gV| block 1": (first.grad_q / first.grad_v).mean(),
            "|gQ|/|gV| block L": (last.grad_q / last.grad_v).mean(),
            "out std / (0.02/sqrt(2L))": (w.out_rms.dropna() / depth_scaled_std(int(n_layers))).mean(),
        })
    return pd.DataFrame(rows)
