"""Which training runs a config asks for, where their files go, and the JSON spec each job gets.

A run is one (method, number of blocks X, seed) on one dataset; it is shared by every figure or
table that needs it (e.g. Adam POST-LN with 6+6 blocks, seed 0 serves Table 1, Fig 6 and Fig 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigprop.analysis.registry import FIGURES, TABLES, OutputSpec

#: the targets that train on IWSLT'14 (the registry's entries with ``translation``): figures, tables
TRANSLATION_FIGURES = tuple(k for k, spec in FIGURES.items() if spec.translation)
TRANSLATION_TABLES = tuple(k for k, spec in TABLES.items() if spec.translation)
#: translation targets without a section of runs in the config (Fig S8: the lr selections of the methods the
#: others train)
SECTIONLESS = tuple(k for k, spec in {**FIGURES, **TABLES}.items() if spec.translation and not spec.run_section)


def _spec(target: str) -> OutputSpec:
    """The registry entry of a figure or table."""
    return FIGURES[target] if target in FIGURES else TABLES[target]


@dataclass(frozen=True, order=True)
class Run:
    """One training run."""

    method: str
    layers: int
    seed: int

    def directory(self, dataset: str) -> str:
        """``results/raw/translation/<dataset>/<method>/layers~<X>/seed~<s>``."""
        return f"results/raw/translation/{dataset}/{self.method}/layers~{self.layers}/seed~{self.seed}"


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def target_runs(config: Mapping[str, Any], target: str) -> list[Run]:
    """The runs one figure (``fig01``, ``fig06``, ``fig14``) or ``table1`` reads."""
    tr = config["translation"]
    if target not in tr:
        raise KeyError(f"{target} needs translation.{target} in the config")
    sec = tr[target]
    if _spec(target).runs == "one":
        return [Run(sec["method"], int(sec["layers"]), int(sec["seed"]))]
    return sorted(
        Run(m, int(x), s) for m in sec["methods"] for x in _as_list(sec["layers"]) for s in range(int(sec["seeds"]))
    )


def requested_targets(config: Mapping[str, Any]) -> list[str]:
    """The translation figures and tables the config's default target builds."""
    figs = [f for f in config["figures"] if f in TRANSLATION_FIGURES]
    tabs = [t for t in config["tables"] if t in TRANSLATION_TABLES]
    return figs + tabs


def run_spec(config: Mapping[str, Any], run: Run) -> dict[str, Any]:
    """Everything one training job needs (the method, its optimiser, model, training, evaluation)."""
    tr = config["translation"]
    methods = config["methods"]
    if run.method not in methods:
        raise KeyError(f"method {run.method!r} is not in the config's methods: {', '.join(methods)}")
    method = dict(methods[run.method])
    opt_name = method["optimizer"]
    if opt_name not in tr["optimizers"]:
        raise KeyError(f"methods.{run.method}.optimizer = {opt_name!r} is not in translation.optimizers")
    optimizer = dict(tr["optimizers"][opt_name], name=opt_name)
    if isinstance(optimizer["lr"], list) and len(optimizer["lr"]) == 1:
        optimizer["lr"] = optimizer["lr"][0]  # a grid of one point is a single lr
    grid = {"selection": dict(tr["selection"])} if isinstance(optimizer["lr"], list) else {}
    return {
        "config": config["name"],
        "dataset": tr["dataset"],
        "method": run.method,
        "method_config": method,
        "optimizer": optimizer,
        "layers": run.layers,
        "seed": run.seed,
        "device": tr["device"],
        "model": dict(tr["model"]),
        "training": dict(tr["training"]),
        "evaluation": dict(tr["evaluation"]),
        **grid,  # an lr grid: the selection rule (sigprop.tasks.translation.selection)
    }


def spec_json(config: Mapping[str, Any], run: Run, part: str = "evaluate") -> str:
    """:func:`run_spec` as canonical JSON: whole (``part="evaluate"``, the evaluation rule's), or without its
    ``evaluation`` section (``part="train"``: the training rule's, so that a change of beam, length penalty or
    test sentences reruns evaluation only)."""
    spec = run_spec(config, run)
    if part == "train":
        spec.pop("evaluation")
    elif part != "evaluate":
        raise ValueError(f"part {part!r}: use 'train' or 'evaluate'")
    return json.dumps(spec, sort_keys=True)


def check_config(config: Mapping[str, Any]) -> None:
    """Cross-references the schema cannot express: methods and optimisers that exist, a dataset per target."""
    tr, methods = config["translation"], config["methods"]
    for target in requested_targets(config):
        if target not in tr and target not in SECTIONLESS:
            raise ValueError(f"{target} is requested but translation.{target} is missing")
    for target in (*TRANSLATION_FIGURES, *TRANSLATION_TABLES):
        if target not in tr:
            continue
        names = [tr[target]["method"]] if _spec(target).runs == "one" else tr[target]["methods"]
        for name in names:
            if name not in methods:
                raise ValueError(f"translation.{target} uses method {name!r}; the methods are: {', '.join(methods)}")
    for name, method in methods.items():
        if method["optimizer"] not in tr["optimizers"]:
            raise ValueError(
                f"methods.{name}.optimizer = {method['optimizer']!r}; the optimizers are: {', '.join(tr['optimizers'])}"
            )
        source = method.get("lr_from")
        if source is not None and (source not in methods or methods[source]["optimizer"] != method["optimizer"]):
            raise ValueError(f"methods.{name}.lr_from = {source!r}: name a method with the same optimizer "
                             f"({method['optimizer']})")


#: the init-time experiment on IWSLT batches (Fig S1): one job per grid point, rule simulate_method_init
METHOD_INIT = "method_init"


def method_init_spec(config: Mapping[str, Any], job_spec: str) -> dict[str, Any]:
    """A Fig S1 job's spec: the generic job spec (:func:`sigprop.jobs.experiment_jobs`) plus what the job
    reads from the translation sections: the configs of its methods, ``translation.model`` and the label
    smoothing of ``translation.training``."""
    spec = json.loads(job_spec)
    if "model" not in config.get("translation", {}):
        raise KeyError(f"experiments.{METHOD_INIT} builds translation.model: add the translation section "
                       "(model, training) to the config")
    tr, all_methods = config["translation"], config["methods"]
    from sigprop.grid import iter_inner

    names = sorted({p["method"] for p in iter_inner(spec["fixed"], spec["point"], spec["inner"])})
    missing = [m for m in names if m not in all_methods]
    if missing:
        raise KeyError(f"experiments.{METHOD_INIT} uses method {missing[0]!r}; the methods are: "
                       f"{', '.join(all_methods)}")
    return {
        **spec,
        "methods": {m: dict(all_methods[m]) for m in names},
        "model": dict(tr["model"]),
        "label_smoothing": float(tr["training"]["label_smoothing"]),
    }
