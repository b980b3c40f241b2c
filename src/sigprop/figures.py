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
    helpers: tuple[str, ...] = ()  # shared plotting modules besides plotting/<fig>.py and style.py

    @property
    def checked(self) -> bool:
        """Whether SPEC section 6 has checks for this figure (see :mod:`sigprop.checks`)."""
        return self.stem[:5] in CHECKED


FIGURES: dict[str, FigureSpec] = {
    "fig03": FigureSpec(
        "fig03_postln_init",
        ("encoder_init",),
        "POST-LN encoder at init: token cosine and Q/K, V gradient norms (relative to layer 1) per layer.",
        helpers=("_encoder_init",),
    ),
    "fig04": FigureSpec(
        "fig04_correlation_norms",
        ("encoder_init",),
        "Token correlation per layer for PRE-LN, POST-LN and No-LN; solid unscaled, dashed 1/sqrt(L).",
    ),
    "fig07": FigureSpec(
        "fig07_uniform_attention",
        ("attention_concentration",),
        "Distance of softmax attention from uniform, (1/n^2)|A - 11^T/n|^2, against d_k (Glorot init).",
    ),
    "fig08": FigureSpec(
        "fig08_signal_propagation",
        ("signal_propagation",),
        "Squared norm and correlation of the tokens per layer, No-LN linear, with theory (dashed).",
    ),
    "fig09": FigureSpec(
        "fig09_preln_init",
        ("encoder_init",),
        "PRE-LN encoder at init: token cosine and Q/K, V gradient norms (relative to layer 1) per layer.",
        helpers=("_encoder_init",),
    ),
    "fig10": FigureSpec(
        "fig10_norm_density",
        ("norm_density",),
        "Density of |X^l|^2 for depths 1-10: uniform vs softmax attention, two input scales.",
    ),
    "fig11": FigureSpec(
        "fig11_gradient_formulas",
        ("jacobian_sweeps",),
        "|dS/dWq|^2 and |dS/dWv|^2 from autodiff against the closed-form formulas.",
    ),
    "fig12": FigureSpec(
        "fig12_gradient_ratio_empirical",
        ("jacobian_grid",),
        "log10 |grad Q| / |grad V| measured by autodiff over (rho, s, n, d).",
        tables=("fig13",),
        helpers=("_heatmaps",),
    ),
    "fig13": FigureSpec(
        "fig13_gradient_ratio_theory",
        ("jacobian_grid",),
        "log10 |grad Q| / |grad V| from the formulas over the grid of Fig 12.",
        raw=False,
        tables=("fig12",),
        helpers=("_heatmaps",),
    ),
}

CHECKED = frozenset({"fig03", "fig07", "fig08", "fig09", "fig10", "fig11"})

# experiment name in the config -> experiment kind in sigprop.experiments.KINDS
EXPERIMENT_KINDS: dict[str, str] = {
    "encoder_init": "encoder_init",
    "signal_propagation": "signal_propagation",
    "norm_density": "signal_propagation",
    "attention_concentration": "attention_concentration",
    "jacobian_sweeps": "attention_jacobians",
    "jacobian_grid": "attention_jacobians",
}


def figure_spec(name: str) -> FigureSpec:
    """Look a figure up by name ('fig7', 'fig07' or 'fig07_uniform_attention'), listing the known ones if absent."""
    key = name.split("_")[0]
    if key.startswith("fig") and key[3:].isdigit():
        key = f"fig{int(key[3:]):02d}"
    if key not in FIGURES:
        known = ", ".join(f"{k} ({v.stem})" for k, v in FIGURES.items())
        raise KeyError(f"no figure {name!r}; the figures are: {known}")
    return FIGURES[key]
