"""Published residual and initialisation rules for deep Transformers (Fig S5), as constants of the depth.

Kept free of torch (as :mod:`sigprop.params`) so that aggregation and plotting read the rules' names, sources and
regimes without importing the model. The model applies them through ``ModelConfig.residual_rule``
(:mod:`sigprop.model.blocks`, :func:`sigprop.model.init.apply_residual_rule_`); docs/supplementary.md (Fig S5)
states each rule's source and which variant is built.

Every rule is written as what it does at initialisation to the block of docs/init-time.md
(``Z = alpha1 S(X) + X``, ``X_next = alpha2 FFN(Z) + Z``, with LN after each add (POST-LN) or on each sub-layer
input (PRE-LN)). Where that is the paper's own residual scaling with some alpha, :func:`reference` gives that
alpha, derived here by hand and independently of how the model builds the rule: Fig S5's equivalence checks
compare the hidden states of the two builds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sigprop.params import resolve_alpha


@dataclass(frozen=True)
class Rule:
    """One residual/init rule: its label, the norm placement its source uses, and its source."""

    label: str
    norm: str  # post, pre or none: the placement the rule is published with (and built with in Fig S5)
    source: str


#: the rules of ``ModelConfig.residual_rule`` (``none``: the paper's family alone)
RULES: dict[str, Rule] = {
    "none": Rule("the paper's family", "any", "Noci et al. (2022)"),
    "gpt2": Rule("GPT-2", "pre", "Radford et al. (2019), GPT-2, Sec. 2.3"),
    "depth_mup": Rule(r"depth-$\mu$P", "pre",
                      "Yang et al. (2024), Tensor Programs VI; Bordelon et al. (2024)"),
    "deepnorm": Rule("DeepNorm", "post", "Wang et al. (2022), DeepNet, Fig. 2 (encoder-only)"),
    "layerscale": Rule("LayerScale", "pre", "Touvron et al. (2021), CaiT, Sec. 2"),
    "zero_branch": Rule("zero branch", "none",
                        "De & Smith (2020); Bachlechner et al. (2021); Zhang et al. (2019)"),
    "shaped": Rule("shaped attention", "none", "Noci et al. (2023), the shaped Transformer, Sec. 3"),
}


def gpt2_scale(n_layers: int) -> float:
    """GPT-2's factor on the residual output projections (attention output and second FFN layer):
    1/sqrt(N), N = 2L residual layers (two sub-layers per block)."""
    return 1.0 / math.sqrt(2 * n_layers)


def depth_mup_multiplier(n_layers: int) -> float:
    """Depth-muP's branch multiplier a/sqrt(L) with a = 1, on every residual branch."""
    return 1.0 / math.sqrt(n_layers)


def deepnorm_alpha(n_layers: int) -> float:
    """DeepNorm's skip multiplier for an encoder-only model of N blocks: (2N)^(1/4)."""
    return (2 * n_layers) ** 0.25


def deepnorm_beta(n_layers: int) -> float:
    """DeepNorm's init gain on the value, attention-output and both FFN weights (encoder-only): (8N)^(-1/4)."""
    return (8 * n_layers) ** -0.25


def layerscale_init(n_layers: int) -> float:
    """CaiT's LayerScale initial diagonal: 0.1 up to depth 18, 1e-5 at depth 24 (here: 19-24), 1e-6 deeper."""
    if n_layers <= 18:
        return 0.1
    return 1e-5 if n_layers <= 24 else 1e-6


def reference(rule: str, norm: str, alpha: float | str, n_layers: int) -> float | None:
    """The paper's residual scale alpha1 = alpha2 of the same norm placement whose build equals the rule's at
    initialisation (same weights drawn), or None where the rule is no alpha scaling (shaped attention changes the
    attention matrix). ``alpha``: the rule build's own alpha (1 for every rule of Fig S5).

    Derivations (bias-free linear layers, as the family):

    * gpt2: the attention branch A(X) X Wv Wo is linear in Wo and the FFN branch W2 relu(W1 z) in W2, so
      multiplying Wo and W2 by c multiplies each branch by c: alpha = alpha * c, c = 1/sqrt(2L).
    * depth_mup: a multiplier m on every branch is alpha * m (exact).
    * layerscale: a diagonal diag(eps 1) at init is the scalar eps: alpha * eps.
    * deepnorm: LN(a x + f_beta(x)); Wv, Wo (attention) and W1, W2 (FFN, ReLU is positively homogeneous) each
      scaled by beta scale each branch by beta^2, and LN(a y) = LN(y) (up to LN's eps), so
      LN(a x + beta^2 f(x)) = LN(x + (beta^2 / a) f(x)): alpha = alpha * beta^2 / a.
    * zero_branch: the last layer of each branch is zero, the block is the identity: alpha = 0.
    """
    a = resolve_alpha(alpha, n_layers)
    if rule == "none":
        return a
    if rule == "gpt2":
        return a / math.sqrt(2 * n_layers)
    if rule == "depth_mup":
        return a / math.sqrt(n_layers)
    if rule == "layerscale":
        return a * layerscale_init(n_layers)
    if rule == "deepnorm":
        return a * (8 * n_layers) ** -0.5 / (2 * n_layers) ** 0.25
    if rule == "zero_branch":
        return 0.0
    if rule == "shaped":
        return None
    raise ValueError(f"residual_rule {rule!r}: use one of {', '.join(RULES)}")


def branch_scale_sq_sum(rule: str, norm: str, alpha: float | str, n_layers: int) -> float:
    """sum over the L blocks of the effective branch scale squared at init, alpha_eff^2 (per branch): the
    quantity the paper's theory says must stay O(1) for the tokens not to align with depth. For shaped attention,
    whose residual scale is the family's alpha, that alpha."""
    eff = reference(rule, norm, alpha, n_layers)
    if eff is None:
        eff = resolve_alpha(alpha, n_layers)
    return n_layers * eff**2


def regime(rule: str, norm: str, alpha: float | str, depths: list[int]) -> str:
    """``bounded`` if sum alpha_eff^2 stays O(1) over ``depths`` (at most 2, i.e. never grows past the value of
    the paper's alpha = 1/sqrt(L), 1, by more than a factor 2 [chosen]), else ``grows``."""
    return "bounded" if max(branch_scale_sq_sum(rule, norm, alpha, L) for L in depths) <= 2.0 else "grows"


NORM_NAMES = {"post": "POST-LN", "pre": "PRE-LN", "none": "No-LN"}
#: how the reference alpha of each rule is written in Fig S5's legend
REFERENCE_TEXT = {
    "gpt2": r"$\alpha=1/\sqrt{2L}$",
    "depth_mup": r"$\alpha=1/\sqrt{L}$",
    "deepnorm": r"$\alpha=(8L)^{-1/2}(2L)^{-1/4}$",
    "layerscale": r"$\alpha=\epsilon(L)$",
    "zero_branch": r"$\alpha=0$",
}


def arm_label(rule: str, norm: str, alpha: str) -> str:
    """Fig S5's name of one build: the rule (or the paper's norm and alpha), its norm, what it equals at init."""
    norm_name = NORM_NAMES.get(norm, norm)
    if rule == "none":
        alpha_text = {"1": r"$\alpha=1$", "1/sqrt(L)": r"$\alpha=1/\sqrt{L}$"}.get(str(alpha), rf"$\alpha={alpha}$")
        return f"{norm_name} {alpha_text}"
    if rule == "shaped":
        return f"{RULES[rule].label} ({norm_name}, " + {"1/sqrt(L)": r"$\alpha=1/\sqrt{L}$"}.get(
            str(alpha), rf"$\alpha={alpha}$") + ")"
    return f"{RULES[rule].label} ({norm_name}) = {REFERENCE_TEXT[rule]}"


def plain_label(label: str) -> str:
    """A legend label without its TeX, for tables and check names: '$\\alpha=1/\\sqrt{L}$' -> 'alpha=1/sqrt(L)'."""
    for tex, text in ((r"\sqrt{2L}", "sqrt(2L)"), (r"\sqrt{L}", "sqrt(L)"), (r"\alpha", "alpha"), (r"\mu", "mu"),
                      (r"\epsilon", "eps"), ("$", ""), ("{", ""), ("}", "")):
        label = label.replace(tex, text)
    return label
