"""sigprop.config: every test of config loading and validation.

Scale files laid over config/base.yaml; the schema's defaults filled by the validator; bad keys, values, grids
and YAML named with the file, line or key and the fix; NaN, infinities, impossible model shapes and sizes;
the translation section's cross-checks; Snakemake refusing a bad config before any job (marked slow).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import quick_config

from sigprop.config import (
    ConfigError,
    coerce_to_schema,
    load_config,
    load_config_file,
    load_layered,
    load_schema,
    merge,
    validate_config,
)
from sigprop.model import ModelConfig
from sigprop.plotting.tables import table2_rows
from sigprop.tasks.translation import methods, plan
from sigprop.tasks.translation.plan import check_config

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = REPO_ROOT / "config"
SCALES = sorted(p.name for p in CONFIG.glob("*.yaml") if p.name != "base.yaml")


def _leaves(data, path=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, data


# ---------------------------------------------------------------- overlay


def test_merge_mappings_merge_lists_replace_null_removes():
    base = {"a": {"x": 1, "y": [1, 2], "z": {"k": 1}}, "b": 1, "c": "kept"}
    over = {"a": {"y": [3], "z": {"j": 2}}, "b": None, "d": None}
    assert merge(base, over) == {"a": {"x": 1, "y": [3], "z": {"k": 1, "j": 2}}, "c": "kept", "d": None}
    assert base == {"a": {"x": 1, "y": [1, 2], "z": {"k": 1}}, "b": 1, "c": "kept"}  # inputs untouched


@pytest.mark.parametrize("name", SCALES)
def test_every_scale_file_names_the_base_and_validates(name):
    assert yaml.safe_load((CONFIG / name).read_text())["base"] == "base.yaml"
    cfg = load_config(CONFIG / name)
    assert "base" not in cfg
    plan.check_config(cfg)  # methods, optimizers and run sets refer to each other


def test_paper_overlaid_holds_the_paper_values():
    cfg = load_config(CONFIG / "paper.yaml")
    tr = cfg["translation"]
    assert cfg["name"] == "paper" and tr["dataset"] == "iwslt14" and tr["device"] == "cuda"
    # Table 2's Adam: the kind, betas and warm-up start from base.yaml, the lr and lengths from paper.yaml
    assert tr["optimizers"]["adam"] == {
        "kind": "adam", "lr": 7.0e-4, "betas": [0.9, 0.98], "eps": 1.0e-8, "weight_decay": 1.0e-4,
        "updates": 100000, "schedule": {"kind": "inverse_sqrt", "warmup_updates": 6000, "warmup_init_lr": 1.0e-7},
    }
    assert tr["optimizers"]["sgd"]["schedule"] == {"kind": "step", "gamma": 0.1, "milestones": [0.4, 0.8]}
    assert tr["model"] == {"d_model": 512, "n_heads": 4, "d_ff": 2048, "dropout": 0.3, "attn_dropout": 0.1,
                           "act_dropout": 0.1, "bias": True, "init": "fairseq", "scale_embedding": True,
                           "max_positions": 1024}
    assert tr["fig14"] == {"layers": 6, "seed": 0, "method": "sgd_temperature"}
    assert cfg["methods"]["sgd_temperature"]["tau_warmup"] == 1000
    assert len(cfg["methods"]) == 8 and cfg["data"]["timeout_s"] == 60
    assert cfg["experiments"]["encoder_init"]["seeds"] == 10


def test_gpu_check_removes_the_methods_it_does_not_train():
    cfg = load_config(CONFIG / "gpu-check.yaml")
    assert list(cfg["methods"]) == ["sgd_temperature", "adam_postln"]
    assert list(cfg["translation"]["optimizers"]) == ["adam", "sgd"]
    assert cfg["experiments"] == {} and cfg["figures"] == ["fig01", "fig06", "fig14"]
    assert cfg["translation"]["optimizers"]["adam"]["schedule"]["warmup_updates"] == 1000


@pytest.mark.parametrize("name", [n for n in SCALES if n != "quick.yaml"])
def test_no_key_of_quick_leaks_into_another_scale(name):
    """Every key of another scale's config comes from that file or base.yaml; a key only quick.yaml sets
    (its experiments' own values, its short tau warm-up) is not there."""
    cfg, origins = load_layered(CONFIG / name)
    assert set(origins.values()) <= {str(CONFIG / name), str(CONFIG / "base.yaml")}
    quick = dict(_leaves(load_layered(CONFIG / "quick.yaml")[0]))
    base = dict(_leaves(load_layered(CONFIG / "base.yaml")[0]))
    scale = dict(_leaves(yaml.safe_load((CONFIG / name).read_text())))
    for path, value in _leaves(cfg):
        if path in quick and quick[path] == value:
            assert path in base or path in scale, path


@pytest.mark.slow
def test_snakemake_runs_only_the_given_scale_file(workflow_copy, snakemake):
    """`--configfile config/gpu-check.yaml` (experiments: {}) plans no init-time job: the Snakefile's default
    quick.yaml, whose experiments would fill the empty mapping in a merge, is not read."""
    wd = workflow_copy()
    proc = snakemake(wd, "-n", "--configfile", "config/gpu-check.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "rule table2:" in proc.stdout
    assert not re.search(r"rule (simulate|train_toy|aggregate)", proc.stdout), proc.stdout[-3000:]
    proc = snakemake(wd, "-n", "--configfile", "config/paper.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "results/raw/encoder_init/norm~post/qk_fan~dmodel/alpha~1/seeds~0-9.parquet" in proc.stdout
    assert "seeds~0-7.parquet" not in proc.stdout  # quick's 8 encoder seeds


# ---------------------------------------------------------------- errors name the file and the key


def _scale(tmp_path, text: str):
    shutil.copy(CONFIG / "base.yaml", tmp_path / "base.yaml")
    path = tmp_path / "scale.yaml"
    path.write_text((CONFIG / "gpu-check.yaml").read_text() + text)
    return path


def test_wrong_key_in_a_scale_file_names_the_file_and_the_key(tmp_path):
    path = _scale(tmp_path, "style: {font_sise: 9}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, SCHEMA)
    msg = str(err.value)
    assert f"{path}: unknown key(s) 'font_sise' in style; allowed keys: " in msg and "font_size" in msg, msg
    proc = subprocess.run([sys.executable, "-m", "sigprop", "check-config", str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})
    assert proc.returncode == 1 and "'font_sise' in style" in proc.stderr and str(path) in proc.stderr


def test_wrong_value_in_the_base_names_the_base(tmp_path):
    path = _scale(tmp_path, "")
    base = tmp_path / "base.yaml"
    base.write_text(base.read_text().replace("  dpi: 200", "  dpi: 20"))
    with pytest.raises(ConfigError, match=re.escape(f"{base}: style.dpi = 20:")):
        load_config(path, SCHEMA)


def test_a_missing_key_names_the_files_laid_over_each_other(tmp_path):
    path = _scale(tmp_path, "")
    path.write_text(path.read_text().replace("max_tokens: 4096, ", ""))
    with pytest.raises(ConfigError) as err:
        load_config(path, SCHEMA)
    msg = str(err.value)
    assert msg.startswith(f"invalid configuration ({path} over {tmp_path / 'base.yaml'}):"), msg
    assert "\n  - translation.training: 'max_tokens' is a required property" in msg, msg


def test_checking_the_base_itself_says_which_files_to_check():
    proc = subprocess.run([sys.executable, "-m", "sigprop", "check-config", str(CONFIG / "base.yaml")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})
    users = ", ".join(n for n in SCALES if yaml.safe_load((CONFIG / n).read_text()).get("base") == "base.yaml")
    assert proc.returncode == 1 and f"is the base of {users}, not a config" in proc.stderr, proc.stderr


def test_missing_or_looping_base_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: nowhere.yaml\nname: a\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: base = 'nowhere\.yaml': no file .*nowhere\.yaml"):
        load_layered(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="the base: keys form a loop"):
        load_layered(tmp_path / "a.yaml")


# ---------------------------------------------------------------- defaults filled by the validator

MINIMAL = {
    "name": "minimal",
    "figures": ["fig01"],
    "style": {"column_width_in": 5.5, "font_size": 8, "dpi": 100, "palette": "colorblind"},
    "experiments": {},
    "methods": {
        "plain": {"label": "Plain", "optimizer": "adam"},
        "temp": {"label": "Temp", "optimizer": "sgd", "norm": "none", "alpha": "1/sqrt(L)", "tau": 8.5,
                 "tau_warmup": 40},
        "rad": {"label": "RAdam", "optimizer": "rad", "init": "tfixup"},
    },
    "translation": {
        "dataset": "iwslt14-mini",
        "device": "cpu",
        "model": {"d_model": 16, "n_heads": 2, "d_ff": 32},
        "training": {"max_tokens": 64, "label_smoothing": 0.1},
        "optimizers": {
            "adam": {"kind": "adam", "lr": 1e-3, "updates": 50,
                     "schedule": {"kind": "inverse_sqrt", "warmup_updates": 10}},
            "sgd": {"kind": "sgd", "lr": 0.1, "updates": 50},
            "rad": {"kind": "radam", "lr": 0.1, "updates": 50},
        },
        "evaluation": {"beam": 1},
        "fig01": {"layers": [1], "seeds": 1, "methods": ["plain", "temp", "rad"]},
    },
}


def test_the_validator_fills_defaults_by_kind():
    cfg = yaml.safe_load(yaml.safe_dump(MINIMAL))
    validate_config(cfg, SCHEMA)
    opts = cfg["translation"]["optimizers"]
    assert opts["sgd"] == {"kind": "sgd", "lr": 0.1, "updates": 50, "momentum": 0.0, "weight_decay": 0.0,
                           "schedule": {"kind": "constant"}}  # no Adam betas on SGD
    assert opts["adam"]["betas"] == [0.9, 0.999] and "momentum" not in opts["adam"]
    assert opts["adam"]["schedule"]["warmup_init_lr"] == 0.0
    assert cfg["tables"] == [] and cfg["data"]["url"] is None and cfg["data"]["cache_dir"] == "data/cache/iwslt14"
    assert cfg["translation"]["training"]["valid_max_sentences"] is None
    assert cfg["methods"]["plain"] == {"label": "Plain", "optimizer": "adam", "norm": "post", "alpha": 1.0,
                                       "trainable_alpha": False, "shared_alpha": False, "tau": 1.0, "tau_warmup": 0}


def test_schema_defaults_are_the_values_the_training_code_falls_back_to():
    """The model, optimiser, learning-rate and temperature functions keep their own fallbacks for callers
    outside the workflow; built from the filled config they give what they give from the bare one."""
    bare = yaml.safe_load(yaml.safe_dump(MINIMAL))
    filled = yaml.safe_load(yaml.safe_dump(MINIMAL))
    validate_config(filled, SCHEMA)
    for name in bare["methods"]:
        old, new = (c["methods"][name] for c in (bare, filled))
        mold, mnew = (c["translation"]["model"] for c in (bare, filled))
        assert dataclasses.asdict(methods.model_config(mold, old, 2, 50)) == dataclasses.asdict(
            methods.model_config(mnew, new, 2, 50))
        assert [methods.tau_at(t, old) for t in (0, 20, 80)] == [methods.tau_at(t, new) for t in (0, 20, 80)]
    for name in bare["translation"]["optimizers"]:
        old, new = (c["translation"]["optimizers"][name] for c in (bare, filled))
        groups = [methods.build_optimizer([torch.nn.Parameter(torch.zeros(2))], o).param_groups[0] for o in (old, new)]
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in groups]
        assert hyper[0] == hyper[1]
        lrs = [[methods.lr_schedule(o)(t) for t in (1, 5, 10, 40)] for o in (old, new)]
        assert lrs[0] == lrs[1]


def test_table2_of_a_bare_config_reads_the_defaults():
    cfg = yaml.safe_load(yaml.safe_dump(MINIMAL))
    validate_config(cfg, SCHEMA)
    rows = {(r["section"], r["hyperparameter"]): r["ours"] for r in table2_rows(cfg)}
    assert rows[("General", "Clip norm")] == "0" and rows[("General", "General dropout")] == "0"
    assert rows[("SGD", "Momentum")] == "0" and rows[("SGD", "Learning rate scheduler")] == "constant"
    assert rows[("Adam", "Adam (beta1, beta2)")] == "(0.9, 0.999)"
    assert rows[("Temperature", "Warm-up steps")] == "40"


def test_the_report_shows_the_base_under_a_scale_file():
    from sigprop.analysis.report import config_summary

    summary = config_summary(CONFIG / "paper.yaml")
    assert summary["path"] == f"{CONFIG / 'paper.yaml'} over {CONFIG / 'base.yaml'}"
    text = summary["text"]
    assert (CONFIG / "base.yaml").read_text() in text and (CONFIG / "paper.yaml").read_text() in text
    assert text.index("adam_postln_scaled:") < text.index("name: paper")  # the base first


# -------------------------------------------- config input: empty grids, command-line strings, YAML syntax errors


@pytest.mark.parametrize("grid", [[], {}])
def test_empty_grid_is_refused_naming_the_key(grid):
    cfg = quick_config()
    cfg["experiments"]["signal_propagation"]["grid"] = grid
    with pytest.raises(ConfigError, match=r"experiments\.signal_propagation\.grid is empty"):
        validate_config(cfg, SCHEMA)


def test_command_line_strings_become_the_schemas_types():
    cfg = quick_config()
    exp = cfg["experiments"]["signal_propagation"]
    exp["seeds"] = "5"  # as `--config "experiments={signal_propagation: {seeds: 5}}"` hands them over
    exp["fixed"].update(d_model="8", input_std="2.0", out_proj="true", alpha="0.5")
    exp["grid"] = {"attention": ["uniform"], "alpha": ["1", "1/sqrt(L)"], "n_tokens": ["4", "8"]}
    cfg["style"]["dpi"] = "120"
    with pytest.raises(ConfigError, match="'5' is not of type 'integer'"):
        validate_config(cfg, SCHEMA)
    coerce_to_schema(cfg, load_schema(SCHEMA))
    validate_config(cfg, SCHEMA)
    assert exp["seeds"] == 5 and exp["fixed"]["d_model"] == 8 and exp["fixed"]["input_std"] == 2.0
    assert exp["fixed"]["out_proj"] is True and cfg["style"]["dpi"] == 120
    # strings the schema takes stay strings: residual scales, enums
    assert exp["fixed"]["alpha"] == "0.5" and exp["grid"]["alpha"] == ["1", "1/sqrt(L)"]
    assert exp["grid"]["n_tokens"] == [4, 8] and exp["grid"]["attention"] == ["uniform"]
    bad = quick_config()
    bad["experiments"]["signal_propagation"]["seeds"] = "five"  # not a number: still refused, naming the key
    coerce_to_schema(bad, load_schema(SCHEMA))
    with pytest.raises(ConfigError, match=r"signal_propagation\.seeds = 'five'"):
        validate_config(bad, SCHEMA)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nfigures: [fig07\nstyle: {dpi: 100}\n")
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert f"{path}, line 3, column 6: YAML syntax error" in str(err.value)
    assert "line 2, column 10" in str(err.value)  # where the unclosed list starts
    proc = subprocess.run([sys.executable, "-m", "sigprop", "check-config", str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 1 and f"{path}, line 3, column 6" in proc.stderr
    good = subprocess.run([sys.executable, "-m", "sigprop", "check-config", str(REPO_ROOT / "config/quick.yaml")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert good.returncode == 0 and "valid" in good.stdout


@pytest.mark.slow
def test_yaml_syntax_error_in_the_default_config_is_named_by_snakemake(workflow_copy, snakemake):
    wd = workflow_copy()
    text = (wd / "config" / "quick.yaml").read_text()
    (wd / "config" / "quick.yaml").write_text(text.replace("figures: [fig01,", "figures: [[fig01,", 1))
    proc = snakemake(wd, "-n")
    assert proc.returncode != 0
    assert re.search(r"config/quick\.yaml, line \d+, column \d+: YAML syntax error", proc.stdout), proc.stdout[-3000:]
    assert not (wd / "results").exists()


# ------------------------------------------------------- the schema: a bad key or value is named with the allowed ones


def _bad_top_level(cfg: dict) -> dict:
    cfg["figure"] = ["fig07"]  # typo of 'figures'
    return cfg


def _bad_fixed_key(cfg: dict) -> dict:
    cfg["experiments"]["signal_propagation"]["fixed"]["d_modle"] = 32
    return cfg


def _bad_grid_enum(cfg: dict) -> dict:
    cfg["experiments"]["signal_propagation"]["grid"]["attention"] = ["uniform", "sofmax"]
    return cfg


def _empty_grid(cfg: dict) -> dict:
    cfg["experiments"]["signal_propagation"]["grid"] = []  # would run one point instead of the sweep
    return cfg


# (make the bad config, what the message must name)
BAD_CONFIGS = {
    "empty grid": (_empty_grid, ["experiments.signal_propagation.grid is empty", "leave the key out"]),
    "top-level key": (_bad_top_level, ["'figure'", "allowed keys", "experiments", "figures", "name", "style"]),
    "key in fixed": (_bad_fixed_key, ["'d_modle'", "signal_propagation", "allowed keys", "d_model", "n_tokens"]),
    "enum in grid": (
        _bad_grid_enum,
        ["'sofmax'", "attention", "signal_propagation", "allowed values", "softmax", "uniform"],
    ),
}


@pytest.mark.parametrize("config_file", ["quick.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(config_file):
    validate_config(load_layered(REPO_ROOT / "config" / config_file)[0], SCHEMA)


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_validate_config_names_key_and_allowed(case):
    make, needles = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as err:
        validate_config(make(quick_config()), SCHEMA)
    message = str(err.value)
    for needle in needles:
        assert needle in message, f"{needle!r} missing from: {message}"


def test_validate_config_lists_every_problem():
    cfg = _bad_grid_enum(_bad_fixed_key(quick_config()))
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert "d_modle" in str(err.value)
    cfg = _bad_top_level(quick_config())
    cfg["experiments"]["jacobian_grid"]["seeds"] = 0
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert "'figure'" in str(err.value) and "jacobian_grid" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_snakemake_refuses_bad_config_before_any_job(case, workflow_copy, snakemake):
    make, needles = BAD_CONFIGS[case]
    wd = workflow_copy()
    (wd / "bad.yaml").write_text(yaml.safe_dump(make(quick_config())))
    proc = snakemake(wd, "-n", "--configfile", "bad.yaml")
    assert proc.returncode != 0, proc.stdout
    for needle in needles:
        assert needle in proc.stdout, f"{needle!r} missing from snakemake output:\n{proc.stdout}"
    assert "Job stats" not in proc.stdout
    assert not (wd / "results").exists()


# ---------------------------------------------------------------- config values that cannot work


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_numbers_are_refused_naming_the_key(value):
    cfg = quick_config()
    exp = cfg["experiments"]["toy_reversal"]
    exp["fixed"]["lr"] = value
    with pytest.raises(ConfigError, match=r"experiments\.toy_reversal.*lr"):
        validate_config(cfg, SCHEMA)
    cfg = quick_config()
    cfg["style"]["font_size"] = value
    with pytest.raises(ConfigError, match=r"style\.font_size.*(nan|inf)"):
        validate_config(cfg, SCHEMA)


def test_nan_in_a_config_file_fails_check_config(tmp_path):
    path = tmp_path / "nan.yaml"
    path.write_text(f"base: {REPO_ROOT / 'config' / 'quick.yaml'}\nstyle: {{font_size: .nan}}\n")
    proc = subprocess.run([sys.executable, "-m", "sigprop", "check-config", str(path)], capture_output=True,
                          text=True, check=False, cwd=REPO_ROOT)
    assert proc.returncode != 0 and "style.font_size" in proc.stdout + proc.stderr


def test_d_model_not_divisible_by_n_heads_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="d_model = 66.*n_heads = 4"):
        ModelConfig(d_model=66, n_heads=4)
    cfg = quick_config()
    exp = cfg["experiments"]["signal_propagation"]
    exp.setdefault("fixed", {})["n_heads"] = 4
    exp["fixed"]["d_model"] = 66
    with pytest.raises(ConfigError, match=r"experiments\.signal_propagation.*d_model.*n_heads"):
        validate_config(cfg, SCHEMA)
    if "translation" in cfg:
        cfg = quick_config()
        cfg["translation"]["model"]["d_model"] = cfg["translation"]["model"]["n_heads"] * 16 + 2
        with pytest.raises(ConfigError, match=r"translation\.model.*d_model.*n_heads"):
            validate_config(cfg, SCHEMA)


def test_a_model_larger_than_memory_is_refused_with_its_size():
    cfg = quick_config()
    exp = cfg["experiments"]["signal_propagation"]
    exp.setdefault("fixed", {}).update(d_model=2**20, n_heads=4, d_ff=2**20)
    with pytest.raises(ConfigError, match=r"experiments\.signal_propagation.*GiB") as err:
        validate_config(cfg, SCHEMA)
    assert "memory" in str(err.value)
    validate_config(quick_config(), SCHEMA)  # the shipped config fits


# ---------------------------------------------------------------- the translation section


@pytest.mark.parametrize("name", ["quick.yaml", "paper.yaml", "gpu-check.yaml"])
def test_translation_configs_validate_and_cross_check(repo_root, name):
    from sigprop.config import load_layered, validate_config

    cfg = load_layered(repo_root / "config" / name)[0]
    validate_config(cfg, repo_root / "workflow" / "schemas" / "config.schema.yaml")
    check_config(cfg)


def test_unknown_translation_key_names_the_key_and_the_allowed_ones(repo_root):
    from sigprop.config import ConfigError, load_layered, validate_config

    cfg = load_layered(repo_root / "config" / "quick.yaml")[0]
    cfg["translation"]["training"]["max_token"] = 100
    cfg["methods"]["rezero"]["optimiser"] = "adam"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, repo_root / "workflow" / "schemas" / "config.schema.yaml")
    msg = str(err.value)
    for needle in ("'max_token'", "translation.training", "max_tokens", "'optimiser'", "methods.rezero", "optimizer"):
        assert needle in msg, msg
