"""The figure registry (sigprop.analysis.registry) against the files: every function it names exists, every
figure module and aggregate function has an entry, the schema's figures are its keys, and a wrong entry is
reported naming the entry and the fix."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sigprop.analysis import registry
from sigprop.analysis.registry import FIGURES, KINDS, ROLES, TABLES, RegistryError, module_of
from sigprop.codehash import ENTRY_POINTS, closure
from sigprop.config import load_schema

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
ENTRIES = [*FIGURES.values(), *TABLES.values()]


def _top_level_functions(module: str) -> set[str]:
    path = SRC.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def _named(role: str) -> set[str]:
    return {getattr(s, role) for s in ENTRIES if getattr(s, role, None) is not None}


def test_every_reference_resolves_to_a_callable():
    assert registry.problems() == []
    for spec in ENTRIES:
        for role in ROLES:
            if getattr(spec, role, None) is not None:
                assert callable(spec.function(role)), (spec.key, role)
    for kind in KINDS.values():
        assert callable(registry.resolve(kind.run)), kind


def test_keys_are_the_stems_prefixes():
    for table in (FIGURES, TABLES):
        for key, spec in table.items():
            assert spec.key == key, f"{key}: stem {spec.stem!r} does not start with its key"


def test_every_plotting_module_has_an_entry():
    modules = {f"sigprop.plotting.{p.stem}" for p in (SRC / "sigprop" / "plotting").glob("fig*.py")}
    assert modules, "no plotting/fig*.py found"
    assert modules == {s.plot_module for s in FIGURES.values()}


def test_every_aggregate_and_checks_function_has_an_entry():
    """A function named like a figure or table (fig03, figS2, table1) is one an entry must name."""
    for module, role in (("sigprop.analysis.aggregate", "aggregate"), ("sigprop.analysis.checks", "checks")):
        figure_like = {f for f in _top_level_functions(module) if re.fullmatch(r"fig(\d\d|S\d+)|table\d+", f)}
        assert figure_like, f"no figure functions found in {module}"
        named = {ref.partition(":")[2] for ref in _named(role) if module_of(ref) == module}
        assert figure_like == named, f"{module}: without an entry {sorted(figure_like - named)}"


def test_schema_figures_are_the_registry_keys_and_the_file_keeps_no_copy():
    raw = yaml.safe_load(SCHEMA.read_text())
    assert "enum" not in raw["properties"]["figures"]["items"]
    schema = load_schema(SCHEMA)
    assert schema["properties"]["figures"]["items"]["enum"] == list(FIGURES)
    # every experiment an entry reads is a key the schema allows, and the schema describes no other
    allowed = set(schema["properties"]["experiments"]["properties"])
    assert allowed == set(registry.EXPERIMENTS) - {"translation"}
    assert set(raw["properties"]["experiments"]["properties"]) <= allowed


@pytest.mark.parametrize("config_file", sorted((ROOT / "config").glob("*.yaml")))
def test_every_experiment_of_a_shipped_config_has_a_kind(config_file):
    experiments = yaml.safe_load(config_file.read_text()).get("experiments") or {}
    unknown = set(experiments) - set(registry.EXPERIMENTS)
    assert not unknown, f"{config_file.name}: experiments no registry entry reads: {sorted(unknown)}"


def test_code_inputs_include_the_modules_the_registry_names():
    """The jobs' code inputs (sigprop.codehash) see the functions the registry names, which no import names."""
    simulate = set(closure(ENTRY_POINTS["simulate"], SRC))
    for kind in KINDS.values():
        if kind.rule == "simulate":
            assert module_of(kind.run) in simulate, f"kind {kind.name}: {kind.run} is outside the simulate job"
    checks = set(closure([*ENTRY_POINTS["checks"], *registry.check_modules()], SRC))
    assert {module_of(r) for r in _named("checks")} <= checks
    for spec in FIGURES.values():
        assert spec.plot_module in closure([*ENTRY_POINTS["plot"], spec.plot_module], SRC)


def test_registry_imports_neither_torch_nor_pandas():
    code = ("import sys; import sigprop.analysis.registry, sigprop.config; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- wrong entries are named


@pytest.mark.parametrize(("ref", "says"), [
    ("sigprop.analysis.aggregate:fig99", r"FIGURES\['fig07'\]\.aggregate = .*module sigprop\.analysis\.aggregate "
                                         r".* has no 'fig99'; define it there or fix the entry in src/sigprop/"
                                         r"analysis/registry\.py"),
    ("sigprop.analysis.nowhere:fig07", r"FIGURES\['fig07'\]\.aggregate = .*there is no module "
                                       r"sigprop\.analysis\.nowhere; fix the entry"),
    ("sigprop.analysis.aggregate.fig07", r"is not 'module:function'"),
    ("sigprop.analysis.aggregate:LEVEL", r"sigprop\.analysis\.aggregate\.LEVEL is a float, not a function"),
])
def test_a_wrong_reference_is_reported_naming_the_entry(monkeypatch, ref, says):
    monkeypatch.setitem(FIGURES, "fig07", dataclasses.replace(FIGURES["fig07"], aggregate=ref))
    found = registry.problems()
    assert len(found) == 1 and re.search(says, found[0]), found
    with pytest.raises(RegistryError, match=says):
        FIGURES["fig07"].function("aggregate")


def test_the_plot_command_names_a_wrong_entry(monkeypatch, tmp_path):
    from sigprop import cli

    monkeypatch.setitem(FIGURES, "fig07", dataclasses.replace(FIGURES["fig07"], plot="sigprop.plotting.fig07:draw"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["plot", "--out", str(tmp_path / "f.pdf"), str(tmp_path / "fig07.parquet")])
    assert "sigprop plot: FIGURES['fig07'].plot = 'sigprop.plotting.fig07:draw'" in str(exit_.value)
    assert "has no 'draw'" in str(exit_.value)


def test_an_entry_under_another_key_is_reported(monkeypatch):
    monkeypatch.setitem(FIGURES, "fig07", FIGURES["fig08"])
    assert "FIGURES['fig07']: the entry with stem 'fig08_signal_propagation' belongs under the key 'fig08'" in " ".join(
        registry.problems())


def test_one_experiment_with_two_kinds_is_refused(monkeypatch):
    spec = dataclasses.replace(FIGURES["fig08"], experiments={"encoder_init": registry.SIGNAL_PROPAGATION})
    monkeypatch.setitem(FIGURES, "fig08", spec)
    with pytest.raises(ValueError, match="experiment 'encoder_init' is encoder_init in one entry and "
                                         "signal_propagation in fig08"):
        registry._experiments()


def test_a_simulate_job_reads_its_function_from_its_spec_not_the_registry():
    """A caption edit in the registry reruns no simulation: the job spec names the function the job runs."""
    from sigprop.jobs import experiment_jobs
    from sigprop.tasks.init_time import run_point

    spec = json.loads(experiment_jobs("encoder_init", {"seeds": 1, "grid": [{"alpha": ["1"]}]}, "encoder_init")[0].spec)
    assert spec["run"] == registry.ENCODER_INIT.run == "sigprop.tasks.init_time:encoder_init"
    assert "sigprop.analysis.registry" not in set(closure(ENTRY_POINTS["simulate"], SRC))
    with pytest.raises(ValueError, match="the simulate rule runs functions of sigprop.tasks.init_time only"):
        run_point("sigprop.tasks.toy_reversal:run_toy", {}, {}, None, [0])
    with pytest.raises(ValueError, match="fix the kind's entry"):
        run_point("sigprop.tasks.init_time:no_such_experiment", {}, {}, None, [0])


def test_figure_names_in_every_spelling():
    assert registry.figure_spec("fig7") is registry.figure_spec("fig07_uniform_attention") is FIGURES["fig07"]
    assert registry.figure_spec("figs4") is FIGURES["figS4"]
    with pytest.raises(RegistryError, match=r"no figure 'fig99'; the figures are: fig03 \(fig03_postln_init\)"):
        registry.figure_spec("fig99")


def test_a_translation_figure_or_table_is_one_registry_entry():
    """The schema's translation sections and the plan's runs follow the entry's ``runs``: a single-run section
    (Fig 14's) validates and gives one run; another shape is refused; no training job reads the plan or the
    registry (a caption edit retrains nothing)."""
    from sigprop.config import ConfigError, load_config, validate_config
    from sigprop.tasks.translation.plan import target_runs

    schema = load_schema(SCHEMA)
    sections = {k for k, v in schema["$defs"]["translation"]["properties"].items() if "$ref" in v
                and v["$ref"] in ("#/$defs/run_set", "#/$defs/one_run")}
    entries = {k: s for k, s in [*FIGURES.items(), *TABLES.items()] if s.run_section}
    assert sections == set(entries) and {"fig01", "fig06", "fig14", "table1"} <= sections
    assert schema["properties"]["tables"]["items"]["enum"] == list(TABLES)
    cfg = load_config(ROOT / "config" / "quick.yaml")
    tr = cfg["translation"]
    assert len(target_runs(cfg, "fig14")) == 1 and len(target_runs(cfg, "fig06")) > 1
    bad = {**cfg, "translation": {**tr, "fig14": dict(tr["fig06"])}}  # a run set where one run is named
    with pytest.raises(ConfigError, match="fig14"):
        validate_config(bad, SCHEMA)
    for rule in ("train_translation", "evaluate_translation", "simulate_method_init"):
        reached = closure(ENTRY_POINTS[rule])
        assert "sigprop.analysis.registry" not in reached and "sigprop.tasks.translation.plan" not in reached
