"""Fig S7's adapters: GPT-2, BERT, Llama and ViT built from ``transformers`` configs at init, measured through
hooks on the residual stream, and the twin cross-check against :mod:`sigprop.model` (the design:
:mod:`sigprop.tasks.probe`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigprop.model import ModelConfig, Stack
from sigprop.tasks.measure import token_cosine
from sigprop.tasks.probe import (
    ARM_LABELS,
    ARMS,
    INIT_STD,
    MODEL_LABELS,
    MODELS,
    depth_scaled_std,
    require_transformers,
)


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


def _weights(*paths: str) -> Callable[[nn.Module], list[Tensor]]:
    """A block -> the weights of its linear layers at these attribute paths (e.g. ``"self_attn.o_proj"``)."""
    getters = [attrgetter(f"{path}.weight") for path in paths]
    return lambda block: [get(block) for get in getters]


def _grads(*paths: str) -> Callable[[nn.Module], tuple[Tensor, ...]]:
    """A block -> the gradients of the weights at these attribute paths (the query, key and value projections)."""
    weights = _weights(*paths)
    return lambda block: tuple(w.grad for w in weights(block))


def build(p: Mapping[str, Any], seed: int) -> Built:
    """Build ``p['model']`` at depth ``n_layers`` with the library's init from ``torch.manual_seed(seed)``, apply
    the arm, and bind the fixed batch and the loss."""
    tf = require_transformers()
    model_name, arm = p["model"], p["arm"]
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

        out_weights = _weights("attn.c_proj", "mlp.c_proj")

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

        qkv = _grads("attention.self.query", "attention.self.key", "attention.self.value")
        out_weights = _weights("attention.output.dense", "output.dense")

        def head_loss(h: Tensor) -> Tensor:
            return _lm_loss(model.cls(h), batch["input_ids"], causal=False)
    elif model_name == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=d_ff, num_hidden_layers=n_layers,
                             num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=n,
                             initializer_range=INIT_STD, tie_word_embeddings=False, **drop)
        model = tf.LlamaForCausalLM(cfg)
        blocks = list(model.model.layers)

        qkv = _grads("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
        out_weights = _weights("self_attn.o_proj", "mlp.down_proj")

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

        qkv = _grads("attention.q_proj", "attention.k_proj", "attention.v_proj")
        out_weights = _weights("attention.o_proj", "mlp.fc2")

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


def arms_of(p: Mapping[str, Any]) -> list[str]:
    """The arms one parameter point runs: ``arm`` if given, else every arm of the model, the twin only at the
    depths ``twin_layers`` (default: none)."""
    if "arm" in p:
        return [p["arm"]]
    if p["model"] not in ARMS:
        raise ValueError(f"model {p['model']!r}: the probe builds {', '.join(MODELS)}")
    twin = int(p["n_layers"]) in [int(v) for v in p.get("twin_layers", [])]
    return [a for a in ARMS[p["model"]] if a != "twin" or twin]


def probe_arm(p: Mapping[str, Any], seeds: list[int]) -> pd.DataFrame:
    """One model, arm and depth for ``seeds``: the tidy table (seed, layer, metric, value)."""
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
        if p["arm"] == "twin":
            for layer, dev in enumerate(twin_deviations(built, p, hidden, grads)):
                rows += _rows(seed, layer, dev)
    return pd.DataFrame(rows)


def probe(p: Mapping[str, Any], seeds: list[int]) -> pd.DataFrame:
    """One parameter point (model, depth, sizes) for ``seeds``, every arm of :func:`arms_of`: the tidy table
    (arm, seed, layer, metric, value).

    Metrics per layer l = 0..L: ``cosine``, ``norm`` (mean token norm); per block l = 1..L: ``grad_q``,
    ``grad_k``, ``grad_v`` (Frobenius norms), ``out_rms`` (root mean square of the block's residual-branch
    output weights, attention and MLP pooled) and ``out_numel`` (their number of entries); ``loss`` at layer L;
    the twin arm also ``xcheck_*`` (:func:`twin_deviations`).
    """
    frames = [probe_arm({**p, "arm": arm}, seeds).assign(arm=arm) for arm in arms_of(p)]
    df = pd.concat(frames, ignore_index=True)
    return df[["arm", *[c for c in df.columns if c != "arm"]]]


def run(spec: Mapping[str, Any]) -> pd.DataFrame:
    """One job of ``experiments.model_probe`` (its JSON spec): every inner point for the spec's seeds, with the
    parameter columns (as :func:`sigprop.tasks.init_time.run_point`)."""
    from sigprop.grid import iter_inner

    frames = []
    for params in iter_inner(spec["fixed"], spec["point"], spec.get("inner")):
        df = probe(params, list(spec["seeds"]))
        for key in sorted(set(params) - set(df.columns), reverse=True):
            value = params[key]
            df.insert(0, key, json.dumps(value) if isinstance(value, list | dict) else value)
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
            "twin max dev": g[g.metric.str.startswith("xcheck_")].value.max(),
        })
    return pd.DataFrame(rows)


def probe_table(fixed: Mapping[str, Any], models: list[str], layers: list[int], seeds: list[int]) -> pd.DataFrame:
    """Every arm of ``models`` at each depth of ``layers`` for ``seeds``, sizes from ``fixed`` (the twin at the
    smallest depth): the summary table."""
    frames = [probe({**fixed, "model": model, "n_layers": n_layers, "twin_layers": layers[:1]}, seeds)
              .assign(model=model, n_layers=n_layers) for model in models for n_layers in layers]
    return summary_table(pd.concat(frames, ignore_index=True))
