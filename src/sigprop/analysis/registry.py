"""The registry of figures: output names, the experiments they read, and their captions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the paper."""

    stem: str
    experiments: tuple[str, ...]
    caption: str
    raw: bool = True  # False: computed from the theory alone
    tables: tuple[str, ...] = ()  # aggregated tables the plot reads besides its own
    claim: str = ""  # what the paper says this figure shows, for the report
    translation: bool = False  # trains on IWSLT'14 (workflow/rules/translation.smk): built only when the data is there
    iwslt: bool = False  # reads IWSLT'14 batches without training (Fig S1): built only when its data is there

    @property
    def needs_data(self) -> bool:
        """Whether the figure needs the IWSLT'14 data (then the default target builds it only when it is there)."""
        return self.translation or self.iwslt

    @property
    def checked(self) -> bool:
        """Whether the checks (README "Checks", :mod:`sigprop.analysis.checks`) cover this figure."""
        return self.stem[:5] in CHECKED


FIGURES: dict[str, FigureSpec] = {
    "fig03": FigureSpec(
        "fig03_postln_init",
        ("encoder_init",),
        "POST-LN encoder at init: token cosine and Q/K, V gradient norms (relative to layer 1) per layer.",
        claim=(
            "Larger residual scales align the tokens faster with depth (rank collapse); as the tokens align, the "
            "query/key gradients vanish with depth while the value gradients do not. 1/sqrt(L) keeps the cosine "
            "bounded."
        ),
    ),
    "fig04": FigureSpec(
        "fig04_correlation_norms",
        ("encoder_init",),
        "Token correlation per layer for PRE-LN, POST-LN and No-LN (ReLU, softmax); solid unscaled, dashed "
        "1/sqrt(L); grey: No-LN with linear activation and uniform attention, with its closed-form theory (dotted).",
        claim=(
            "Without 1/sqrt(L) scaling the token correlation goes to 1 with depth for PRE-LN, POST-LN and No-LN; "
            "with it, the correlation stays bounded. The theory (dotted) is that of the No-LN block with linear "
            "activation and uniform attention, overlaid on a simulation of exactly that setting (grey); the No-LN "
            "curve of the ReLU, softmax encoder is shown beside it, not compared with it."
        ),
    ),
    "fig05": FigureSpec(
        "fig05_adam_effective_lr",
        ("toy_reversal",),
        "Adam's effective learning rate lr/(sqrt(v_hat)+eps) (median over entries) of Wq, Wk, Wv per layer while a "
        "5-layer POST-LN encoder learns to reverse 20 digits; last panel: token accuracy.",
        claim=(
            "Adam gives the queries and keys a larger effective learning rate than the values, compensating for "
            "their smaller gradients."
        ),
    ),
    "fig07": FigureSpec(
        "fig07_uniform_attention",
        ("attention_concentration",),
        "Distance of softmax attention from uniform, (1/n^2)|A - 11^T/n|^2, against d_k (Glorot init).",
        claim=(
            "At Glorot init the softmax attention approaches uniform as d_k grows, as 1/d_k^2 once d_k exceeds "
            "d_v: the uniform-attention assumption is accurate at large width."
        ),
    ),
    "fig08": FigureSpec(
        "fig08_signal_propagation",
        ("signal_propagation",),
        "Squared norm and correlation of the tokens per layer, No-LN linear, with theory (dashed).",
        claim=(
            "Under uniform attention the squared norm grows geometrically with depth and the correlation tends to 1 "
            "unless the residual branches are scaled by 1/sqrt(L); the closed-form theory matches the simulation."
        ),
    ),
    "fig09": FigureSpec(
        "fig09_preln_init",
        ("encoder_init",),
        "PRE-LN encoder at init: token cosine and Q/K, V gradient norms (relative to layer 1) per layer.",
        claim=(
            "PRE-LN shows the same ordering as POST-LN: larger alpha, faster token alignment and faster decay of "
            "the query/key gradients."
        ),
    ),
    "figS4": FigureSpec(
        "figS4_qk_init",
        ("encoder_init",),
        "Supplementary: Fig 3 (POST-LN at init) under two query/key init conventions, variance 1/d_model "
        "(top, Figs 3, 4, 9) and 1/d_k per head (bottom).",
        claim=(
            "Not in the paper: the query/key init variance changes Fig 3. With 1/d_k (4 heads) the attention "
            "logits are large, the attention is peaked and the value gradients no longer grow with depth; with "
            "1/d_model they grow, as the paper's caption says."
        ),
    ),
    "fig10": FigureSpec(
        "fig10_norm_density",
        ("norm_density",),
        "Density of |X^l|^2 for depths 1-10: uniform vs softmax attention, two input scales; one row per "
        "residual scale alpha.",
        claim=(
            "With input std 1/sqrt(d), uniform attention predicts the mean squared norm of softmax attention "
            "well; with std 1 the softmax deviates; the distribution grows heavy-tailed with depth. Here the "
            "first part holds for alpha < 1 (checked as within 10% at every depth), not at alpha = 1, where the "
            "softmax mean grows faster than the theory also at input std 1/sqrt(d)."
        ),
    ),
    "fig11": FigureSpec(
        "fig11_gradient_formulas",
        ("jacobian_sweeps",),
        "|dS/dWq|^2 and |dS/dWv|^2 from autodiff against the closed-form formulas.",
        claim=(
            "The closed-form gradient norms of queries (cubic in the input variance, ~(1-rho)^2) and values "
            "(linear in the variance, growing with rho) match autodiff; the softmax deviates as the input std "
            "grows."
        ),
    ),
    "fig12": FigureSpec(
        "fig12_gradient_ratio_empirical",
        ("jacobian_grid",),
        "log10 |grad Q| / |grad V| measured by autodiff over (rho, s, n, d).",
        tables=("fig13",),
        claim=(
            "The query gradients are much smaller than the value gradients for correlated or small-variance "
            "inputs; the gap depends on n, d, s and rho."
        ),
    ),
    "fig13": FigureSpec(
        "fig13_gradient_ratio_theory",
        ("jacobian_grid",),
        "log10 |grad Q| / |grad V| from the formulas over the grid of Fig 12.",
        raw=False,
        tables=("fig12",),
        claim="The formulas reproduce the pattern of the measured ratios of Fig 12.",
    ),
    "fig01": FigureSpec(
        "fig01_cosine_training",
        ("translation",),
        "Token cosine of the encoder during IWSLT'14 De-En training, POST-LN with Adam, increasing depth, "
        "with and without 1/sqrt(L) residual scaling.",
        translation=True,
        claim=(
            "Without residual scaling the tokens are more aligned at initialisation the deeper the model, which "
            "can inhibit training; with 1/sqrt(L) scaling the cosine stays low at every depth."
        ),
    ),
    "fig06": FigureSpec(
        "fig06_bleu_depth",
        ("translation",),
        "Test BLEU against the number of blocks X (X encoder, X decoder) for Adam POST-LN, Adam PRE-LN and SGD "
        "with residual scaling and temperature.",
        translation=True,
        claim=(
            "SGD with 1/sqrt(L) residual scaling and an inverse temperature keeps up with Adam and trains deeper "
            "models without layer normalisation."
        ),
    ),
    "fig14": FigureSpec(
        "fig14_sgd_temperature_dynamics",
        ("translation",),
        "During SGD-temperature training: token cosine, trained alpha1, alpha2 and token norm per layer at a few "
        "update steps. The update-0 curve is the initialisation, where the inverse temperature's warm-up starts: "
        "tau = 0, i.e. exactly uniform attention (the legend gives tau at each step).",
        translation=True,
        claim=(
            "The trained residual scales grow during training but the token correlation does not increase much; "
            "the activation norm grows slightly with depth."
        ),
    ),
    # ---- supplementary figures: the paper's init-time theory tested where the paper did not look ----
    "figS1": FigureSpec(
        "figS1_methods_init",
        ("method_init",),
        "Supplementary: the translation models of Table 1's methods at initialisation on real IWSLT'14 batches "
        "(dataset named in the figure): per-layer token cosine and self-attention Q/K, V gradient norms of the "
        "label-smoothed loss relative to layer 1, encoder (top) and decoder (bottom), and the last layer's "
        "cosine against the number of blocks per stack. Legend: the paper's Table 1 BLEU.",
        iwslt=True,
        claim=(
            "Not in the paper, which shows rank collapse at init on a synthetic encoder (Figs 3, 4, 9) and the "
            "methods only after training (Table 1). Its theory predicts that the unscaled POST-LN model starts "
            "more collapsed the deeper it is, and that 1/sqrt(L) residual scaling (res-scale) keeps the tokens "
            "apart at every depth."
        ),
    ),
    "figS2": FigureSpec(
        "figS2_depth_limit",
        ("depth_limit",),
        "Supplementary: last-layer correlation rho^L and squared norm |X^L|^2 against the depth L (No-LN, "
        "linear, Fig 8's setting), alpha^2 = 1/L against alpha = 1, uniform and softmax attention; lines: the "
        "finite-L closed form (dashed) and the L -> infinity limit (dotted).",
        claim=(
            "The paper states the L -> infinity limits without plotting them: with alpha^2 = a/L the correlation "
            "tends to a constant below 1 and the norm to a finite value; with constant alpha the correlation "
            "tends to 1 (rank collapse) and the norm diverges."
        ),
    ),
    "figS3": FigureSpec(
        "figS3_rank_measures",
        ("encoder_init",),
        "Supplementary: per layer, token cosine beside two rank measures, the relative residual "
        "|X - 1 xbar^T|_F / |X|_F (Dong et al., 2021) and the stable rank |X|_F^2 / |X|_2^2, for POST-LN, "
        "PRE-LN and No-LN encoders at init (the runs of Figs 3, 4, 9).",
        claim=(
            "Not in the paper, which measures collapse by the token angle only: if the alignment is rank "
            "collapse, the distance from rank one (relative residual) and the stable rank fall with alpha where "
            "the cosine rises."
        ),
    ),
}

CHECKED = frozenset({"fig03", "fig04", "fig05", "fig07", "fig08", "fig09", "figS4", "fig10", "fig11", "table1",
                     "figS1", "figS2", "figS3", "fig01", "fig06", "fig14"})

# experiment name in the config -> experiment kind in sigprop.tasks.init_time.KINDS
EXPERIMENT_KINDS: dict[str, str] = {
    "encoder_init": "encoder_init",
    "signal_propagation": "signal_propagation",
    "norm_density": "signal_propagation",
    "attention_concentration": "attention_concentration",
    "jacobian_sweeps": "attention_jacobians",
    "jacobian_grid": "attention_jacobians",
    "depth_limit": "signal_propagation",  # Fig S2
    "method_init": "method_init",  # Fig S1: IWSLT batches, rule simulate_method_init (tasks.translation.initprobe)
}

# experiments trained by a rule of their own, one raw table per seed: results/raw/<name>/seed~<s>.parquet
TRAINING_EXPERIMENTS: dict[str, str] = {"toy_reversal": "train_toy"}


def figure_spec(name: str) -> FigureSpec:
    """Look a figure up by name ('fig7', 'fig07' or 'fig07_uniform_attention'), listing the known ones if absent."""
    key = name.split("_")[0]
    if key.startswith("fig") and key[3:].isdigit():
        key = f"fig{int(key[3:]):02d}"
    elif key.lower().startswith("figs") and key[4:].isdigit():  # supplementary: figS4
        key = f"figS{int(key[4:])}"
    if key not in FIGURES:
        known = ", ".join(f"{k} ({v.stem})" for k, v in FIGURES.items())
        raise KeyError(f"no figure {name!r}; the figures are: {known}")
    return FIGURES[key]
