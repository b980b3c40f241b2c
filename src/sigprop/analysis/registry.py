"""The registry of figures: one entry per figure names everything it is made of.

A figure is one :class:`FigureSpec` in :data:`FIGURES`: its output stem, caption and claim, the experiments it
reads (their names in the config's ``experiments`` section, each with its :class:`Kind`), and the three functions
that make it, named ``"module:function"``:

- ``aggregate``: raw tables -> ``results/aggregated/<key>.parquet`` (``python -m sigprop aggregate``);
- ``checks``: that table -> rows of ``results/checks.csv`` (``python -m sigprop checks``), or None;
- ``plot``: the aggregated tables and the style -> the figure (``python -m sigprop plot``).

The names are resolved (imported) only where a function runs (:func:`resolve`), so this module imports neither
torch nor pandas: the Snakefile imports it on every run. Everything else reads the figures from here: the
config schema's list of figures (:func:`sigprop.config.load_schema`), the workflow's targets, rule inputs and
wildcard constraints (``workflow/rules/``), the commands' dispatch (:mod:`sigprop.cli`,
:func:`sigprop.tasks.init_time.run_point`), the checks (:data:`sigprop.analysis.checks.CHECKS`) and the report.
``tests/test_registry.py`` checks the registry against the files (CONTRIBUTING.md "Adding a figure").

A job's code inputs (:mod:`sigprop.codehash`) come from import statements, which never name these functions:
the plot, aggregate and checks rules add the modules named here to their code inputs (``targets.smk``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar


class RegistryError(KeyError):
    """A registry entry that names a function that cannot be found, or a name no entry has."""

    def __str__(self) -> str:  # KeyError would print the message's repr
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Kind:
    """What computes an experiment's raw tables.

    ``name`` is the ``kind`` of its jobs' specs (:func:`sigprop.jobs.experiment_jobs`); ``run`` the function
    that runs them; ``rule`` the workflow rule that calls it; ``jobs`` how its raw tables are laid out:
    ``grid`` (``results/raw/<experiment>/<point>/seeds~a-b.parquet``, one job per grid point and batch of seeds),
    ``seed`` (``results/raw/<experiment>/seed~<s>.parquet``, one training run per seed) or ``runs`` (the
    translation runs of :mod:`sigprop.tasks.translation.plan`).
    """

    name: str
    run: str
    rule: str = "simulate"
    jobs: str = "grid"


#: the experiment kinds: ``run(params, seeds) -> tidy table`` for the simulate rule (sigprop.tasks.init_time)
ENCODER_INIT = Kind("encoder_init", "sigprop.tasks.init_time:encoder_init")
SIGNAL_PROPAGATION = Kind("signal_propagation", "sigprop.tasks.init_time:signal_propagation")
ATTENTION_CONCENTRATION = Kind("attention_concentration", "sigprop.tasks.init_time:attention_concentration_vs_dk")
ATTENTION_JACOBIANS = Kind("attention_jacobians", "sigprop.tasks.init_time:attention_jacobians")
FIXED_ATTENTION = Kind("fixed_attention", "sigprop.tasks.init_time:fixed_attention")  # Fig S6
RESIDUAL_RULES = Kind("residual_rules", "sigprop.tasks.init_time:residual_rules")  # Fig S5
METHOD_INIT = Kind("method_init", "sigprop.tasks.translation.initprobe:run", rule="simulate_method_init")  # Fig S1
TOY_REVERSAL = Kind("toy_reversal", "sigprop.tasks.toy_reversal:run_toy", rule="train_toy", jobs="seed")  # Fig 5
TRANSLATION = Kind("translation", "sigprop.tasks.translation.job:train", rule="train_translation", jobs="runs")
MODEL_PROBE = Kind("model_probe", "sigprop.tasks.probe.adapters:run", rule="simulate_probe")  # Fig S7 (transformers)


#: optional dependency groups of pyproject.toml a figure may need: name -> (the modules it provides, the install)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "models": (("transformers",), 'pip install -e ".[models]" (Hugging Face transformers, pinned in pyproject.toml)'),
}


@dataclass(frozen=True)
class OutputSpec:
    """What a figure and a table of the paper share: their files' stem, the experiments they read, their
    aggregate and checks functions, and (translation) which training runs they read."""

    stem: str  # figures/<stem>.{pdf,png} or results/tables/<stem>.{csv,tex,png}
    experiments: Mapping[str, Kind]  # the config's experiments.<name> it reads -> its kind
    _: KW_ONLY
    aggregate: str | None  # "module:function": raw tables (or, raw=False, the grid) -> the aggregated table
    checks: str | None  # "module:function": the aggregated table -> list of Check; None: no checks
    translation: bool = False  # trains on IWSLT'14 (workflow/rules/translation.smk): built only when the data is there
    #: the config section ``translation.<key>`` naming its training runs: "set" (methods x layers x seeds,
    #: ``$defs/run_set``), "one" (a method, layers and a seed, ``$defs/one_run``), "" (none: Fig S8)
    runs: str = "set"
    run_file: str = "log.parquet"  # the file of each training run it reads (eval.parquet: the test BLEU)

    #: the name of the registry dict holding entries of this class (for messages)
    registry_name: ClassVar[str] = ""

    @property
    def key(self) -> str:
        """The entry's key (``fig03``, ``figS1``, ``table1``): the stem up to the first underscore."""
        return self.stem.split("_")[0]

    @property
    def checked(self) -> bool:
        """Whether the checks (docs/checks.md, :mod:`sigprop.analysis.checks`) cover this entry."""
        return self.checks is not None

    @property
    def aggregate_module(self) -> str:
        """The module of the aggregate function (a code input of the entry's aggregate job)."""
        return module_of(self.aggregate)

    @property
    def run_section(self) -> bool:
        """Whether the entry names its training runs in a section ``translation.<key>`` of the config."""
        return self.translation and bool(self.runs)

    def function(self, role: str) -> Callable[..., Any]:
        """The entry's function of ``role`` (``aggregate``, ``checks``, ``plot``, ``write``), imported now."""
        ref = getattr(self, role)
        if ref is None:
            raise RegistryError(f"{self.key} has no {role} function (its entry in sigprop.analysis.registry)")
        return resolve(ref, f"{self.registry_name}[{self.key!r}].{role}")


@dataclass(frozen=True)
class FigureSpec(OutputSpec):
    """One figure of the paper (or a supplementary one): what it reads and the functions that make it."""

    caption: str
    _: KW_ONLY
    plot: str  # "module:function": (tables by key, Style) -> matplotlib figure
    raw: bool = True  # False: computed from the theory alone
    tables: tuple[str, ...] = ()  # aggregated tables the plot reads besides its own
    claim: str = ""  # what the paper says this figure shows, for the report
    iwslt: bool = False  # reads IWSLT'14 batches without training (Fig S1): built only when its data is there
    extra: str = ""  # an optional dependency group of pyproject.toml it needs (EXTRAS): built only when installed

    registry_name: ClassVar[str] = "FIGURES"

    @property
    def needs_data(self) -> bool:
        """Whether the figure needs the IWSLT'14 data (then the default target builds it only when it is there)."""
        return self.translation or self.iwslt

    @property
    def installed(self) -> bool:
        """Whether the optional dependencies the figure needs (its ``extra``) are installed (looked up only)."""
        return not self.extra or all(importlib.util.find_spec(m) is not None for m in EXTRAS[self.extra][0])

    @property
    def install_hint(self) -> str:
        """What to install for the figure ('' when nothing is missing)."""
        return "" if self.installed else f"{self.key} needs {EXTRAS[self.extra][1]}"

    @property
    def plot_module(self) -> str:
        """The module of the plot function (a code input of the figure's plot job)."""
        return module_of(self.plot)


@dataclass(frozen=True)
class TableSpec(OutputSpec):
    """A table of the paper: results/tables/<stem>.{csv,tex,png}, written by ``write`` ("module:function")."""

    _: KW_ONLY
    write: str
    formats: tuple[str, ...] = ("csv", "tex", "png")

    registry_name: ClassVar[str] = "TABLES"

    @property
    def files(self) -> list[str]:
        """The table's files."""
        return [f"results/tables/{self.stem}.{ext}" for ext in self.formats]

    @property
    def write_module(self) -> str:
        """The module of the write function (a code input of the table's job)."""
        return module_of(self.write)


FIGURES: dict[str, FigureSpec] = {
    "fig03": FigureSpec(
        "fig03_postln_init",
        {"encoder_init": ENCODER_INIT},
        "POST-LN encoder at init: token cosine and Q/K, V gradient norms (relative to layer 1) per layer.",
        aggregate="sigprop.analysis.aggregate:fig03",
        checks="sigprop.analysis.checks:fig03",
        plot="sigprop.plotting.fig03:plot",
        claim=(
            "Larger residual scales align the tokens faster with depth (rank collapse); as the tokens align, the "
            "query/key gradients vanish with depth while the value gradients do not. 1/sqrt(L) keeps the cosine "
            "bounded."
        ),
    ),
    "fig04": FigureSpec(
        "fig04_correlation_norms",
        {"encoder_init": ENCODER_INIT},
        "Token correlation per layer for PRE-LN, POST-LN and No-LN (ReLU, softmax); solid unscaled, dashed "
        "1/sqrt(L); grey: No-LN with linear activation and uniform attention, with its closed-form theory (dotted).",
        aggregate="sigprop.analysis.aggregate:fig04",
        checks="sigprop.analysis.checks:fig04",
        plot="sigprop.plotting.fig04:plot",
        claim=(
            "Without 1/sqrt(L) scaling the token correlation goes to 1 with depth for PRE-LN, POST-LN and No-LN; "
            "with it, the correlation stays bounded. The theory (dotted) is that of the No-LN block with linear "
            "activation and uniform attention, overlaid on a simulation of exactly that setting (grey); the No-LN "
            "curve of the ReLU, softmax encoder is shown beside it, not compared with it."
        ),
    ),
    "fig05": FigureSpec(
        "fig05_adam_effective_lr",
        {"toy_reversal": TOY_REVERSAL},
        "Adam's effective learning rate lr/(sqrt(v_hat)+eps) (median over entries) of Wq, Wk, Wv per layer while a "
        "5-layer POST-LN encoder learns to reverse 20 digits; last panel: token accuracy.",
        aggregate="sigprop.analysis.aggregate:fig05",
        checks="sigprop.analysis.checks:fig05",
        plot="sigprop.plotting.fig05:plot",
        claim=(
            "Adam gives the queries and keys a larger effective learning rate than the values, compensating for "
            "their smaller gradients."
        ),
    ),
    "fig07": FigureSpec(
        "fig07_uniform_attention",
        {"attention_concentration": ATTENTION_CONCENTRATION},
        "Distance of softmax attention from uniform, (1/n^2)|A - 11^T/n|^2, against d_k (Glorot init).",
        aggregate="sigprop.analysis.aggregate:fig07",
        checks="sigprop.analysis.checks:fig07",
        plot="sigprop.plotting.fig07:plot",
        claim=(
            "At Glorot init the softmax attention approaches uniform as d_k grows, as 1/d_k^2 once d_k exceeds "
            "d_v: the uniform-attention assumption is accurate at large width."
        ),
    ),
    "fig08": FigureSpec(
        "fig08_signal_propagation",
        {"signal_propagation": SIGNAL_PROPAGATION},
        "Squared norm and correlation of the tokens per layer, No-LN linear, with theory (dashed).",
        aggregate="sigprop.analysis.aggregate:fig08",
        checks="sigprop.analysis.checks:fig08",
        plot="sigprop.plotting.fig08:plot",
        claim=(
            "Under uniform attention the squared norm grows geometrically with depth and the correlation tends to 1 "
            "unless the residual branches are scaled by 1/sqrt(L); the closed-form theory matches the simulation."
        ),
    ),
    "fig09": FigureSpec(
        "fig09_preln_init",
        {"encoder_init": ENCODER_INIT},
        "PRE-LN encoder at init: token cosine and Q/K, V gradient norms (relative to layer 1) per layer.",
        aggregate="sigprop.analysis.aggregate:fig09",
        checks="sigprop.analysis.checks:fig09",
        plot="sigprop.plotting.fig09:plot",
        claim=(
            "PRE-LN shows the same ordering as POST-LN: larger alpha, faster token alignment and faster decay of "
            "the query/key gradients."
        ),
    ),
    "figS4": FigureSpec(
        "figS4_qk_init",
        {"encoder_init": ENCODER_INIT},
        "Supplementary: Fig 3 (POST-LN at init) under two query/key init conventions, variance 1/d_model "
        "(top, Figs 3, 4, 9) and 1/d_k per head (bottom).",
        aggregate="sigprop.analysis.aggregate:figS4",
        checks="sigprop.analysis.checks:figS4",
        plot="sigprop.plotting.figS4:plot",
        claim=(
            "Not in the paper: the query/key init variance changes Fig 3. With 1/d_k (4 heads) the attention "
            "logits are large, the attention is peaked and the value gradients no longer grow with depth; with "
            "1/d_model they grow, as the paper's caption says."
        ),
    ),
    "fig10": FigureSpec(
        "fig10_norm_density",
        {"norm_density": SIGNAL_PROPAGATION},
        "Density of |X^l|^2 for depths 1-10: uniform vs softmax attention, two input scales; one row per "
        "residual scale alpha.",
        aggregate="sigprop.analysis.aggregate:fig10",
        checks="sigprop.analysis.checks:fig10",
        plot="sigprop.plotting.fig10:plot",
        claim=(
            "With input std 1/sqrt(d), uniform attention predicts the mean squared norm of softmax attention "
            "well; with std 1 the softmax deviates; the distribution grows heavy-tailed with depth. Here the "
            "first part holds for alpha < 1 (checked as within 10% at every depth), not at alpha = 1, where the "
            "softmax mean grows faster than the theory also at input std 1/sqrt(d)."
        ),
    ),
    "fig11": FigureSpec(
        "fig11_gradient_formulas",
        {"jacobian_sweeps": ATTENTION_JACOBIANS},
        "|dS/dWq|^2 and |dS/dWv|^2 from autodiff against the closed-form formulas.",
        aggregate="sigprop.analysis.aggregate:fig11",
        checks="sigprop.analysis.checks:fig11",
        plot="sigprop.plotting.fig11:plot",
        claim=(
            "The closed-form gradient norms of queries (cubic in the input variance, ~(1-rho)^2) and values "
            "(linear in the variance, growing with rho) match autodiff; the softmax deviates as the input std "
            "grows."
        ),
    ),
    "fig12": FigureSpec(
        "fig12_gradient_ratio_empirical",
        {"jacobian_grid": ATTENTION_JACOBIANS},
        "log10 |grad Q| / |grad V| measured by autodiff over (rho, s, n, d).",
        aggregate="sigprop.analysis.aggregate:fig12",
        checks=None,
        plot="sigprop.plotting.fig12:plot",
        tables=("fig13",),
        claim=(
            "The query gradients are much smaller than the value gradients for correlated or small-variance "
            "inputs; the gap depends on n, d, s and rho."
        ),
    ),
    "fig13": FigureSpec(
        "fig13_gradient_ratio_theory",
        {"jacobian_grid": ATTENTION_JACOBIANS},
        "log10 |grad Q| / |grad V| from the formulas over the grid of Fig 12.",
        aggregate="sigprop.analysis.aggregate:fig13",
        checks=None,
        plot="sigprop.plotting.fig13:plot",
        raw=False,
        tables=("fig12",),
        claim="The formulas reproduce the pattern of the measured ratios of Fig 12.",
    ),
    "fig01": FigureSpec(
        "fig01_cosine_training",
        {"translation": TRANSLATION},
        "Token cosine of the encoder during IWSLT'14 De-En training, POST-LN with Adam, increasing depth, "
        "with and without 1/sqrt(L) residual scaling.",
        aggregate="sigprop.analysis.aggregate:fig01",
        checks="sigprop.analysis.claims:fig01",
        plot="sigprop.plotting.fig01:plot",
        translation=True,
        claim=(
            "Without residual scaling the tokens are more aligned at initialisation the deeper the model, which "
            "can inhibit training; with 1/sqrt(L) scaling the cosine stays low at every depth."
        ),
    ),
    "fig06": FigureSpec(
        "fig06_bleu_depth",
        {"translation": TRANSLATION},
        "Test BLEU against the number of blocks X (X encoder, X decoder) for Adam POST-LN, Adam PRE-LN and SGD "
        "with residual scaling and temperature.",
        aggregate="sigprop.analysis.aggregate:fig06",
        checks="sigprop.analysis.claims:fig06",
        plot="sigprop.plotting.fig06:plot",
        translation=True,
        run_file="eval.parquet",
        claim=(
            "SGD with 1/sqrt(L) residual scaling and an inverse temperature keeps up with Adam and trains deeper "
            "models without layer normalisation."
        ),
    ),
    "fig14": FigureSpec(
        "fig14_sgd_temperature_dynamics",
        {"translation": TRANSLATION},
        "During SGD-temperature training: token cosine, trained alpha1, alpha2 and token norm per layer at a few "
        "update steps. The update-0 curve is the initialisation, where the inverse temperature's warm-up starts: "
        "tau = 0, i.e. exactly uniform attention (the legend gives tau at each step).",
        aggregate="sigprop.analysis.aggregate:fig14",
        checks="sigprop.analysis.claims:fig14",
        plot="sigprop.plotting.fig14:plot",
        translation=True,
        runs="one",
        claim=(
            "The trained residual scales grow during training but the token correlation does not increase much; "
            "the activation norm grows slightly with depth."
        ),
    ),
    # ---- supplementary figures: the paper's init-time theory tested where the paper did not look ----
    "figS1": FigureSpec(
        "figS1_methods_init",
        {"method_init": METHOD_INIT},
        "Supplementary: the translation models of Table 1's methods at initialisation on real IWSLT'14 batches "
        "(dataset named in the figure): per-layer token cosine and self-attention Q/K, V gradient norms of the "
        "label-smoothed loss relative to layer 1, encoder (top) and decoder (bottom), and the last layer's "
        "cosine against the number of blocks per stack. Legend: the paper's Table 1 BLEU.",
        aggregate="sigprop.analysis.aggregate:figS1",
        checks="sigprop.analysis.checks:figS1",
        plot="sigprop.plotting.figS1:plot",
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
        {"depth_limit": SIGNAL_PROPAGATION},
        "Supplementary: last-layer correlation rho^L and squared norm |X^L|^2 against the depth L (No-LN, "
        "linear, Fig 8's setting), alpha^2 = 1/L against alpha = 1, uniform and softmax attention; lines: the "
        "finite-L closed form (dashed) and the L -> infinity limit (dotted).",
        aggregate="sigprop.analysis.aggregate:figS2",
        checks="sigprop.analysis.checks:figS2",
        plot="sigprop.plotting.figS2:plot",
        claim=(
            "The paper states the L -> infinity limits without plotting them: with alpha^2 = a/L the correlation "
            "tends to a constant below 1 and the norm to a finite value; with constant alpha the correlation "
            "tends to 1 (rank collapse) and the norm diverges."
        ),
    ),
    "figS3": FigureSpec(
        "figS3_rank_measures",
        {"encoder_init": ENCODER_INIT},
        "Supplementary: per layer, token cosine beside two rank measures, the relative residual "
        "|X - 1 xbar^T|_F / |X|_F (Dong et al., 2021) and the stable rank |X|_F^2 / |X|_2^2, for POST-LN, "
        "PRE-LN and No-LN encoders at init (the runs of Figs 3, 4, 9).",
        aggregate="sigprop.analysis.aggregate:figS3",
        checks="sigprop.analysis.checks:figS3",
        plot="sigprop.plotting.figS3:plot",
        claim=(
            "Not in the paper, which measures collapse by the token angle only: if the alignment is rank "
            "collapse, the distance from rank one (relative residual) and the stable rank fall with alpha where "
            "the cosine rises."
        ),
    ),
    "figS5": FigureSpec(
        "figS5_residual_rules",
        {"residual_rules": RESIDUAL_RULES},
        "Supplementary: published residual and init rules at initialisation against the depth L (ReLU, softmax "
        "encoder, seeds paired): last-layer token cosine, the query/key-to-value gradient ratio at the first and "
        "last block and the input-to-output gradient norm ratio, beside POST-LN and PRE-LN (alpha = 1) and the "
        "paper's POST-LN with alpha = 1/sqrt(L). GPT-2's 1/sqrt(2L), depth-muP's 1/sqrt(L), DeepNorm, LayerScale "
        "and a zero branch equal at init the paper's block with the alpha the legend names (checked); shaped "
        "attention (Noci et al., 2023) is outside the family.",
        aggregate="sigprop.analysis.aggregate:figS5",
        checks="sigprop.analysis.checks:figS5",
        plot="sigprop.plotting.figS5:plot",
        claim=(
            "Not in the paper, which measures its own block with alpha = 1 or 1/sqrt(L): its theory predicts that "
            "a rule keeps the last-layer cosine bounded as L grows when the squared branch scale summed over depth "
            "stays O(1) (GPT-2, depth-muP, DeepNorm, LayerScale, a zero branch, the paper's 1/sqrt(L)), and that "
            "the tokens align with depth when it grows with L (POST-LN and PRE-LN with alpha = 1)."
        ),
    ),
    "figS6": FigureSpec(
        "figS6_attention_patterns",
        {"attention_patterns": FIXED_ATTENTION},
        "Supplementary: token correlation (cosine of the expected Gram matrix) and squared norm |X^l|^2 per layer "
        "of a No-LN linear stack whose attention is a fixed matrix: bidirectional uniform (the paper's), causal "
        "uniform (every token averages its prefix: a decoder's, a GPT's) and banded (every token averages its "
        "neighbours within the band); alpha = 1 (left) and 1/sqrt(L) (right); markers with 95% intervals: "
        "simulation; lines: the closed recursion G' = (1 + a^2)(G + a^2 A G A^T).",
        aggregate="sigprop.analysis.aggregate:figS6",
        checks="sigprop.analysis.checks:figS6",
        plot="sigprop.plotting.figS6:plot",
        claim=(
            "Not in the paper, whose closed forms assume uniform bidirectional attention: for any fixed "
            "row-stochastic attention matrix the expected Gram matrix follows a closed linear recursion "
            "(docs/init-time.md), which the simulation should match at every layer; it says whether causal "
            "attention collapses the tokens faster or slower than bidirectional attention at equal alpha."
        ),
    ),
    "figS8": FigureSpec(
        "figS8_lr_selection",
        {"translation": TRANSLATION},
        "Supplementary: the learning-rate selection of Table 1's methods (docs/translation.md): validation loss of "
        "seed 0 at the selection update (a fixed fraction of the optimiser's updates, Table 1's depth) against the "
        "lr, one panel per optimiser, one line per method; ringed: the selected lr (it continues to the full "
        "horizon); hollow: the one point added beyond a grid edge; x: diverged.",
        aggregate="sigprop.analysis.lr_selection:aggregate",
        checks="sigprop.analysis.lr_selection:checks",
        plot="sigprop.plotting.figS8:plot",
        translation=True,
        runs="",
        claim=(
            "Not in the paper, which gives one lr per optimiser (Table 2): every method is tuned by the same rule, "
            "on the validation loss only, so Table 1 compares methods at equal tuning effort; a selected lr at "
            "the edge of its grid would mean that method's optimum was not bracketed."
        ),
    ),
    "figS7": FigureSpec(
        "figS7_model_probe",
        {"model_probe": MODEL_PROBE},
        "Supplementary: GPT-2, BERT, Llama and ViT of Hugging Face transformers at initialisation (random weights, "
        "configs built in code), per block against the relative depth l/L: token cosine, mean token norm, "
        "|grad Wq| / |grad Wv| and the std of the residual-branch output weights over 0.02/sqrt(2L); colour: depth "
        "L; solid: as the library builds it; dashed: GPT-2 with c_proj unscaled (the init of transformers 5.14.1, "
        "#47458), Llama with o_proj and down_proj scaled by 1/sqrt(2L).",
        aggregate="sigprop.analysis.probe:aggregate",
        checks="sigprop.analysis.probe:checks",
        plot="sigprop.plotting.figS7:plot",
        extra="models",
        claim=(
            "Not in the paper, which measures its own block: the paper's theory predicts that a residual branch "
            "whose squared scale sums to O(1) over depth (GPT-2's 0.02/sqrt(2L) on c_proj) keeps the tokens "
            "apart as L grows and an unscaled one lets them align; here tested on the real architectures, with "
            "the library's depth scaling itself checked and the probe cross-checked against the project's model."
        ),
    ),
}

# the aggregated tables that are not figures (written by the table1 rule, sigprop.plotting.tables.write_table1)
TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(
        "table1_bleu",
        {"translation": TRANSLATION},
        aggregate="sigprop.analysis.aggregate:table1",
        checks="sigprop.analysis.checks:table1",
        write="sigprop.plotting.tables:write_table1",
        translation=True,
        run_file="eval.parquet",
    ),
    # the hyper-parameters of the config's translation runs: written from the config alone (no experiment)
    "table2": TableSpec(
        "table2_hyperparameters",
        {},
        aggregate=None,
        checks=None,
        write="sigprop.plotting.tables:write_table2",
    ),
}

ROLES = ("aggregate", "checks", "plot", "write")


def module_of(ref: str) -> str:
    """The module part of ``"module:function"``."""
    return ref.partition(":")[0]


def resolve(ref: str, where: str = "a registry entry") -> Callable[..., Any]:
    """Import the function ``ref`` (``"module:function"``); a wrong name raises :class:`RegistryError` saying
    which entry names it, what is missing and how to fix it."""
    fix = "fix the entry in src/sigprop/analysis/registry.py"
    module, sep, name = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not module or not name or ":" in name:
        raise RegistryError(f"{where} = {ref!r} is not 'module:function' (e.g. "
                            f"'sigprop.analysis.aggregate:fig03'); {fix}")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
            raise  # the module exists but imports something missing: that error is the one to see
        raise RegistryError(f"{where} = {ref!r}: there is no module {module}; {fix}") from err
    fn = getattr(mod, name, None)
    if fn is None:
        raise RegistryError(f"{where} = {ref!r}: module {module} ({mod.__file__}) has no {name!r}; "
                            f"define it there or {fix}")
    if not callable(fn):
        raise RegistryError(f"{where} = {ref!r}: {module}.{name} is a {type(fn).__name__}, not a function; {fix}")
    return fn


def _experiments() -> dict[str, Kind]:
    """Every experiment of the config that an entry reads -> its kind (one kind per name across entries)."""
    out: dict[str, Kind] = {}
    for key, spec in [*FIGURES.items(), *TABLES.items()]:
        for name, kind in spec.experiments.items():
            if out.setdefault(name, kind) != kind:
                raise ValueError(f"sigprop.analysis.registry: experiment {name!r} is {out[name].name} in one entry "
                                 f"and {kind.name} in {key}: one experiment has one kind")
    return out


#: experiment name in the config -> its kind
EXPERIMENTS: dict[str, Kind] = _experiments()
#: experiments run as grid jobs (simulate, simulate_method_init): name -> the ``kind`` of their job specs
EXPERIMENT_KINDS: dict[str, str] = {n: k.name for n, k in EXPERIMENTS.items() if k.jobs == "grid"}
#: experiments trained by a rule of their own, one raw table per seed: results/raw/<name>/seed~<s>.parquet
TRAINING_EXPERIMENTS: dict[str, str] = {n: k.rule for n, k in EXPERIMENTS.items() if k.jobs == "seed"}
#: every kind by its name
KINDS: dict[str, Kind] = {k.name: k for k in EXPERIMENTS.values()}


def figure_spec(name: str) -> FigureSpec:
    """Look a figure up by name ('fig7', 'fig07' or 'fig07_uniform_attention'), listing the known ones if absent."""
    key = name.split("_")[0]
    if key.startswith("fig") and key[3:].isdigit():
        key = f"fig{int(key[3:]):02d}"
    elif key.lower().startswith("figs") and key[4:].isdigit():  # supplementary: figS4
        key = f"figS{int(key[4:])}"
    if key not in FIGURES:
        known = ", ".join(f"{k} ({v.stem})" for k, v in FIGURES.items())
        raise RegistryError(f"no figure {name!r}; the figures are: {known}")
    return FIGURES[key]


def checks_functions() -> dict[str, Callable[..., Any]]:
    """Figure or table key -> its checks function, for every entry that has one (imported now)."""
    return {key: spec.function("checks") for key, spec in [*FIGURES.items(), *TABLES.items()]
            if spec.checks is not None}


def check_modules() -> list[str]:
    """The modules of every checks function (code inputs of the checks rule)."""
    return sorted({module_of(s.checks) for s in [*FIGURES.values(), *TABLES.values()] if s.checks is not None})


def problems() -> list[str]:
    """Every reference of the registry that does not resolve to a function, and keys that do not match stems."""
    out = []
    entries: list[tuple[str, str, Any]] = [*(("FIGURES", k, s) for k, s in FIGURES.items()),
                                           *(("TABLES", k, s) for k, s in TABLES.items())]
    for table, key, spec in entries:
        if spec.key != key:
            out.append(f"{table}[{key!r}]: the entry with stem {spec.stem!r} belongs under the key {spec.key!r} "
                       "(a key is its stem up to the first underscore)")
        for role in ROLES:
            ref = getattr(spec, role, None)
            if ref is not None:
                try:
                    resolve(ref, f"{table}[{key!r}].{role}")
                except RegistryError as err:
                    out.append(str(err))
    for kind in KINDS.values():
        try:
            resolve(kind.run, f"kind {kind.name!r}.run")
        except RegistryError as err:
            out.append(str(err))
    return out
