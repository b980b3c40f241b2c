"""Init-time experiments: each takes one parameter point and a list of seeds and returns a tidy table.

Every function returns a long DataFrame with columns ``seed``, ``layer`` (where it applies),
``metric`` and ``value``; the runner (:func:`run_point`) adds the parameter columns. Seed ``s``
seeds one ``torch.Generator`` that draws the inputs and the weights, so the same seed gives the
same numbers at every parameter point (paired comparisons) and on every run (bit-identical tables).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sigprop.depth_rules import reference as rule_reference
from sigprop.grid import iter_inner
from sigprop.model import Encoder, ModelConfig, Stack, attention_weights, block_config
from sigprop.params import input_std
from sigprop.patterns import attention_pattern
from sigprop.tasks.measure import (
    attention_concentration,
    attention_jacobian_sq_norms,
    equicorrelated_tokens,
    grad_norms,
    inner_product_stats,
    relative_residual,
    stable_rank,
    token_cosine,
)

Params = Mapping[str, Any]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _rows(seed: int, metrics: Mapping[str, Iterable[float]], first_layer: int = 0) -> list[dict]:
    return [
        {"seed": seed, "layer": first_layer + i, "metric": name, "value": float(v)}
        for name, values in metrics.items()
        for i, v in enumerate(values)
    ]


#: Figs 3, 4, 9 where a parameter point leaves them out (docs/assumptions.md)
ENCODER_INIT_DEFAULTS = {"qk_fan": "d_model", "readout": "head"}


def encoder_init(p: Params, seeds: list[int]) -> pd.DataFrame:
    """Figs 3, 4, 9: token cosine, correlation statistics and Q/K/V gradient norms per layer at init.

    Random token ids (``n_tokens`` from ``vocab``), N(0,1) embeddings plus sinusoidal positions,
    cross-entropy against random targets of a read-out: ``readout: head`` (default) a separate
    N(0, 1/d) linear map, ``tied`` the embedding matrix (logits with std about sqrt(d): a saturated
    softmax). ``qk_fan`` (default ``d_model``): variance 1/d_model or 1/d_k of queries and keys.
    ``logit_std`` (logged at layer L) is the std of the read-out's logits.
    """
    p = {**ENCODER_INIT_DEFAULTS, **p}
    if p["readout"] not in {"tied", "head"}:
        raise ValueError(f"readout {p['readout']!r}: use 'head' or 'tied'")
    cfg = block_config(p)
    dtype = DTYPES[p.get("dtype", "float32")]
    vocab, n, d = int(p["vocab"]), int(p["n_tokens"]), cfg.d_model
    model = Encoder(cfg, vocab=vocab, emb_std=1.0, max_len=n).to(dtype)
    rows: list[dict] = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        model.reset_parameters(g)
        model.zero_grad(set_to_none=True)
        tokens = torch.randint(0, vocab, (1, n), generator=g)
        targets = torch.randint(0, vocab, (1, n), generator=g)
        out, hidden = model(tokens)
        if p["readout"] == "head":
            head = torch.randn(vocab, d, generator=g, dtype=dtype) / math.sqrt(d)
            logits = out[0] @ head.T
        else:
            logits = model.logits(out)[0]
        loss = F.cross_entropy(logits, targets[0])
        loss.backward()
        h = torch.stack([x[0].detach() for x in hidden])  # (L+1, n, d)
        offdiag, sq = inner_product_stats(h)
        rows += _rows(seed, {"cosine": token_cosine(h), "offdiag": offdiag, "sq_norm": sq})
        rows += _rows(seed, {"rel_residual": relative_residual(h), "stable_rank": stable_rank(h)})  # Fig S3
        g_norms = grad_norms(model.stack.blocks)
        rows += _rows(seed, {f"grad_{k}": v for k, v in g_norms.items()}, first_layer=1)
        rows += _rows(seed, {"logit_std": [float(logits.detach().std())]}, first_layer=cfg.n_layers)
    return pd.DataFrame(rows)


def residual_rules(p: Params, seeds: list[int]) -> pd.DataFrame:
    """Fig S5: one build of a residual/init rule (``residual_rule``, ``norm``, ``alpha``) at one depth L at init.

    Per seed (paired: the seed draws the tokens, the targets and the read-out first, then the weights, so every
    rule and every depth sees the same tokens for the same seed): the token cosine per layer, the Frobenius norms
    of the gradients of the self-attention Wq, Wk, Wv per block, and the gradient norms of the loss (as
    :func:`encoder_init`: cross-entropy of a separate N(0, 1/d) read-out against random targets) with respect
    to the stack's input X^0 (``grad_input``) and output X^L (``grad_output``, before PRE-LN's final LN).

    Where the rule is the paper's residual scaling at init (:func:`sigprop.depth_rules.reference`), the
    reference build (``residual_rule: none``, alpha1 = alpha2 = that alpha, the same norm) is drawn from the same
    generator state and run on the same input, for the first seed of the job: ``equiv_dev`` (at layer L) is
    max over layers l of |X^l_rule - X^l_ref|_F / |X^l_ref|_F.
    """
    p = {**ENCODER_INIT_DEFAULTS, **p, "readout": "head"}
    cfg = block_config(p)
    dtype = DTYPES[p.get("dtype", "float32")]
    vocab, n, d = int(p["vocab"]), int(p["n_tokens"]), cfg.d_model
    model = Encoder(cfg, vocab=vocab, emb_std=1.0, max_len=n).to(dtype)
    ref_alpha = rule_reference(cfg.residual_rule, cfg.norm, p.get("alpha", 1.0), cfg.n_layers)
    rows: list[dict] = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, vocab, (1, n), generator=g)
        targets = torch.randint(0, vocab, (1, n), generator=g)
        head = torch.randn(vocab, d, generator=g, dtype=dtype) / math.sqrt(d)
        weights_state = g.get_state()
        model.reset_parameters(g)
        model.zero_grad(set_to_none=True)
        x0 = (model.embed(tokens) + model.pos[:n].to(dtype)).detach().requires_grad_()
        out, hidden = model.stack(x0)
        hidden[-1].retain_grad()
        F.cross_entropy(out[0] @ head.T, targets[0]).backward()
        h = torch.stack([x[0].detach() for x in hidden])  # (L+1, n, d)
        rows += _rows(seed, {"cosine": token_cosine(h)})
        rows += _rows(seed, {f"grad_{k}": v for k, v in grad_norms(model.stack.blocks).items()}, first_layer=1)
        grads = {"grad_input": [float(x0.grad.norm())], "grad_output": [float(hidden[-1].grad.norm())]}
        rows += _rows(seed, grads, first_layer=cfg.n_layers)
        if cfg.residual_rule != "none" and ref_alpha is not None and seed == seeds[0]:
            ref_cfg = block_config(p, residual_rule="none", alpha1=ref_alpha, alpha2=ref_alpha)
            rows += _rows(seed, {"equiv_dev": [_max_relative_deviation(ref_cfg, vocab, n, dtype, weights_state, h)]},
                          first_layer=cfg.n_layers)
    return pd.DataFrame(rows)


def _max_relative_deviation(cfg: ModelConfig, vocab: int, n: int, dtype: torch.dtype, state: torch.Tensor,
                            hidden: torch.Tensor) -> float:
    """Build ``cfg`` from the generator state ``state`` (the same weights as the build whose hidden states are
    ``hidden``, (L+1, n, d)), run it on the same input hidden[0] and return max over layers of
    |X^l - hidden[l]|_F / |X^l|_F."""
    g = torch.Generator()
    g.set_state(state)
    ref = Encoder(cfg, vocab=vocab, emb_std=1.0, max_len=n).to(dtype)
    ref.reset_parameters(g)
    with torch.no_grad():
        _, ref_hidden = ref.stack(hidden[0][None])
    r = torch.stack([x[0] for x in ref_hidden])
    return float(((r - hidden).flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).max())


def _fixed_input(p: Params, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(p.get("input_seed", 0)))
    n, d = int(p["n_tokens"]), int(p["d_model"])
    return input_std(p.get("input_std", 1.0), d) * torch.randn(1, n, d, generator=g, dtype=dtype)


def signal_propagation(p: Params, seeds: list[int]) -> pd.DataFrame:
    """Figs 8 and 10: |X^l|_F^2 and inner-product statistics per layer of a bare stack, fixed input.

    The input X (``n_tokens`` x ``d_model``, iid N(0, input_std^2), drawn from ``input_seed``) is
    the same for every seed, so the closed forms (docs/init-time.md) apply conditionally on it; each
    seed draws new weights.
    """
    dtype = DTYPES[p.get("dtype", "float64")]
    cfg = block_config(p)
    stack = Stack(cfg).to(dtype)
    x = _fixed_input(p, dtype)
    rows: list[dict] = []
    with torch.no_grad():
        for seed in seeds:
            stack.reset_parameters(torch.Generator().manual_seed(seed))
            _, hidden = stack(x)
            offdiag, sq = inner_product_stats(torch.stack([h[0] for h in hidden]))
            rows += _rows(seed, {"offdiag": offdiag, "sq_norm": sq})
    return pd.DataFrame(rows)


def fixed_attention(p: Params, seeds: list[int]) -> pd.DataFrame:
    """Fig S6: the Gram matrix X^l X^l^T per layer of a bare stack (No-LN, linear) whose attention is a fixed
    row-stochastic matrix A (``pattern``, ``band``: :func:`sigprop.patterns.attention_pattern`), fixed input.

    The stack is the model's (:class:`sigprop.model.Stack`, its init), built with uniform attention; a forward
    hook replaces each block's attention output by A V (``wo(A x Wv)``: A mixes tokens, so it commutes with the
    heads' split), so the queries and keys are drawn but not used. The input is fixed as in
    :func:`signal_propagation`; each seed draws new weights. Metrics ``gram_i_j`` (i <= j): the entries.
    """
    dtype = DTYPES[p.get("dtype", "float64")]
    cfg = block_config({**p, "attention": "uniform"})
    n = int(p["n_tokens"])
    a = torch.as_tensor(attention_pattern(str(p["pattern"]), n, int(p.get("band", 1))), dtype=dtype)
    stack = Stack(cfg).to(dtype)
    for block in stack.blocks:
        block.attn.register_forward_hook(lambda mod, args, out: mod.wo(a @ mod.wv(args[0])))
    x = _fixed_input(p, dtype)
    iu = torch.triu_indices(n, n)
    names = [f"gram_{i}_{j}" for i, j in iu.T.tolist()]
    frames = []
    with torch.no_grad():
        for seed in seeds:
            stack.reset_parameters(torch.Generator().manual_seed(seed))
            _, hidden = stack(x)
            h = torch.stack([hh[0] for hh in hidden])  # (L+1, n, d)
            gram = (h @ h.transpose(-1, -2))[:, iu[0], iu[1]].numpy()  # (L+1, n(n+1)/2)
            layers = len(gram)
            frames.append(pd.DataFrame({"seed": seed, "layer": np.repeat(np.arange(layers), len(names)),
                                        "metric": np.tile(names, layers), "value": gram.ravel()}))
    return pd.concat(frames, ignore_index=True)


def attention_concentration_vs_dk(p: Params, seeds: list[int]) -> pd.DataFrame:
    """Fig 7: (1/n^2)|A - (1/n) 1 1^T|_F^2 of one softmax attention matrix at Glorot init.

    X (n x d_v) iid N(0,1); Wq, Wk (d_v x d_k) with variance 2/(d_v + d_k).
    """
    n, d_v, d_k = int(p["n_tokens"]), int(p["d_v"]), int(p["d_k"])
    std = math.sqrt(2.0 / (d_v + d_k))
    rows = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, d_v, generator=g, dtype=torch.float64)
        wq = std * torch.randn(d_v, d_k, generator=g, dtype=torch.float64)
        wk = std * torch.randn(d_v, d_k, generator=g, dtype=torch.float64)
        a = attention_weights((x @ wq) @ (x @ wk).T / math.sqrt(d_k), "softmax")
        rows.append({"seed": seed, "metric": "concentration", "value": float(attention_concentration(a))})
    return pd.DataFrame(rows)


def attention_jacobians(p: Params, seeds: list[int]) -> pd.DataFrame:
    """Figs 11-13: exact |dS/dWq|_F^2 and |dS/dWv|_F^2 of one attention layer on equicorrelated tokens.

    Tokens: Gaussian, variance s^2, correlation rho; d_k = d_v = d; all weights variance 1/d.
    """
    n, d = int(p["n_tokens"]), int(p["d_model"])
    s, rho = float(p["s"]), float(p["rho"])
    dtype = DTYPES[p.get("dtype", "float64")]
    rows = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        x = equicorrelated_tokens(n, d, s, rho, g, dtype)
        wq, wk, wv = (torch.randn(d, d, generator=g, dtype=dtype) / math.sqrt(d) for _ in range(3))
        q, v = attention_jacobian_sq_norms(
            x, wq, wk, wv, p["attention"], float(p.get("tau", 1.0)), p.get("jacobian", "contraction")
        )
        rows.append({"seed": seed, "metric": "grad_q_sq", "value": float(q)})
        rows.append({"seed": seed, "metric": "grad_v_sq", "value": float(v)})
    return pd.DataFrame(rows)


def run_point(run: str, fixed: Params, point: Params, inner: Any, seeds: list[int]) -> pd.DataFrame:
    """Run one job: every inner point of ``point`` for ``seeds``; return the tidy table with parameter columns.

    ``run`` is the job spec's ``"sigprop.tasks.init_time:<function>"`` (its kind's entry in
    :mod:`sigprop.analysis.registry`), or the bare function name. It must name a function of this module: the
    simulate rule's code inputs are this module's imports (:mod:`sigprop.codehash`), so a kind run from elsewhere
    would go stale unseen.
    """
    module, sep, name = run.partition(":")
    if not sep:
        module, name = __name__, run
    fn = globals().get(name) if module == __name__ else None
    if not callable(fn):
        raise ValueError(f"job spec run={run!r}: the simulate rule runs functions of {__name__} only "
                         f"('{__name__}:<function>'); fix the kind's entry in sigprop.analysis.registry")
    frames = []
    for params in iter_inner(fixed, point, inner):
        df = fn(params, seeds)
        for key in sorted(params, reverse=True):
            value = params[key]
            df.insert(0, key, str(value) if isinstance(value, str) else value)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
