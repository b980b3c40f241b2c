"""A result on disk is what the current code and config produce, or the run says why not.

* the import-closure walk (sigprop.codehash): a superset of what each command really imports, exactly the
  rules that import an edited module, partial entry points and relative imports on a hand-built package;
* checkpoint fingerprints: a toy or translation job whose code changed trains from update 0;
* config input: empty grids, command-line strings, YAML syntax errors;
* atomic writes killed mid-way: the ``.partial`` file is never taken for output and is cleaned;
* Snakemake (dry runs on a workspace of stand-in outputs): editing a module lists exactly the jobs that
  import it and what is made from them; a figure target rebuilds deleted tables; both figure spellings;
  ``--config`` overrides.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_translation import copy_data, job_spec  # noqa: F401 (copy_data is a fixture)

import sigprop.codehash as codehash
from sigprop.codehash import ENTRY_POINTS, closure, code_hash, module_hash
from sigprop.config import (
    ConfigError,
    coerce_to_schema,
    load_config,
    load_config_file,
    load_schema,
    validate_config,
)
from sigprop.io import atomic_path, remove_partial_files

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
RULE_FILES = [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk"))]
TARGET_RULES = {"all", "unknown_figure"}  # rules that run no code


def _copy_src(dest: Path) -> Path:
    shutil.copytree(SRC / "sigprop", dest / "sigprop", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# ---------------------------------------------------------------- the import-closure walk


def test_every_rule_that_runs_code_has_an_entry_point():
    rules = {m for f in RULE_FILES for m in re.findall(r"^(?:rule|checkpoint) (\w+):", f.read_text(), re.M)}
    assert rules, "no rules found"
    missing = sorted(rules - TARGET_RULES - set(ENTRY_POINTS))
    assert not missing, f"rules without an entry in sigprop.codehash.ENTRY_POINTS: {missing}"
    for f in RULE_FILES:  # and every such rule takes its code inputs from it (no hand-written list)
        for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):\n((?:    .*\n|\n)*)", f.read_text(), re.M):
            if name in ENTRY_POINTS and name != "plot":
                assert f'code_inputs("{name}")' in body, f"rule {name} in {f.name} does not use code_inputs"


def _write_pkg(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_walk_on_a_hand_built_package(tmp_path):
    """Relative and absolute imports, names that are not modules, function-level imports, package __init__s."""
    src = _write_pkg(
        tmp_path,
        {
            "sigprop/__init__.py": "",
            "sigprop/cli.py": (
                "import json\nfrom sigprop.io import write\n\n"
                "def one():\n    from sigprop import a\n\n"
                "def two():\n    from sigprop.sub import b\n\n"
                "class C:\n    from sigprop import d\n"  # class bodies run at import
                "    def m(self):\n        import sigprop.never\n"
            ),
            "sigprop/io.py": "def write():\n    pass\n",
            "sigprop/a.py": "from . import c\nfrom .io import write\n",
            "sigprop/c.py": "import numpy\n",
            "sigprop/d.py": "",
            "sigprop/never.py": "",
            "sigprop/sub/__init__.py": "from .b import thing\n",
            "sigprop/sub/b.py": "from ..c import *\nthing = 1\ndef f():\n    import sigprop.sub.e as e\n",
            "sigprop/sub/e.py": "",
            "sigprop/unused.py": "",
        },
    )
    # module-level imports + one function: the other function's and the method's imports are not followed
    assert closure(["sigprop.cli:one"], src) == ["sigprop", "sigprop.a", "sigprop.c", "sigprop.cli", "sigprop.d",
                                               "sigprop.io"]
    # a module read whole: every function's imports; a package's __init__ comes with its modules
    assert closure(["sigprop.cli:two"], src) == ["sigprop", "sigprop.c", "sigprop.cli", "sigprop.d", "sigprop.io",
                                               "sigprop.sub", "sigprop.sub.b", "sigprop.sub.e"]
    assert "sigprop.never" in closure(["sigprop.cli"], src) and "sigprop.unused" not in closure(["sigprop.cli"], src)
    with pytest.raises(ValueError, match="no top-level function 'three'"):
        closure(["sigprop.cli:three"], src)


def test_partial_entry_points_keep_other_subcommands_out():
    """The simulate job imports the CLI but not what the CLI's plot command imports."""
    simulate, plot = set(closure(ENTRY_POINTS["simulate"])), set(closure(ENTRY_POINTS["plot"]))
    assert {"sigprop.cli", "sigprop.tasks.init_time", "sigprop.model", "sigprop.params", "sigprop.grid",
            "sigprop.io"} <= simulate
    assert not {"sigprop.plotting.style", "sigprop.analysis.checks", "sigprop.analysis.aggregate",
                "sigprop.tasks.toy_reversal"} & simulate
    assert "sigprop.plotting.style" in plot and "sigprop.model" not in plot
    train = set(closure(ENTRY_POINTS["train_translation"]))
    assert {"sigprop.tasks.translation.task", "sigprop.model", "sigprop.train.loop",
            "sigprop.data.iwslt.binarize"} <= train
    # downloading and preprocessing are the data rules': editing them re-prepares the data, it retrains nothing
    assert not {"sigprop.data.iwslt.fetch", "sigprop.data.iwslt.preprocess"} & train
    assert "sigprop.plotting.tables" not in train  # editing the tables redraws them, it retrains nothing
    assert "sigprop.plotting.tables" in closure(ENTRY_POINTS["table1"])
    # search and BLEU are the evaluation rule's: editing them re-evaluates the best checkpoints, never retrains
    evaluate = set(closure(ENTRY_POINTS["evaluate_translation"]))
    scoring = {"sigprop.tasks.translation.search", "sigprop.tasks.translation.bleu",
               "sigprop.tasks.translation.evaluation"}
    assert scoring <= evaluate and not scoring & train
    assert not {"sigprop.tasks.translation.job", "sigprop.tasks.translation.task"} & evaluate


# rule (plot: one job per figure) -> the modules that, by the import statements, it loads
def _rule_keys() -> list[tuple[str, tuple[str, ...]]]:
    keys = [(rule, ()) for rule in ENTRY_POINTS if rule != "plot"]
    return keys + [(f"plot:{fig}", (f"sigprop.plotting.{fig}",)) for fig in ("fig07", "fig08", "fig12", "fig13")]


# edited file -> the rules (plot:<figure>) whose code hash must change; read off the import statements
EDITS = {
    "sigprop/params.py": {"simulate", "train_toy", "aggregate", "checks", "train_translation", "evaluate_translation",
                          "simulate_method_init", "simulate_probe", "table1", "table2", "plot:fig07", "plot:fig08",
                          "plot:fig12", "plot:fig13"},  # model, aggregation, plot style (alpha labels) import it
    "sigprop/plotting/_heatmaps.py": {"plot:fig12", "plot:fig13"},
    "sigprop/plotting/style.py": {"plot:fig07", "plot:fig08", "plot:fig12", "plot:fig13", "table1", "table2"},
    "sigprop/tasks/toy_reversal.py": {"train_toy"},
    "sigprop/analysis/report.py": {"report"},
    "sigprop/tasks/translation/task.py": {"train_translation"},
    "sigprop/tasks/translation/search.py": {"evaluate_translation"},
    "sigprop/tasks/translation/bleu.py": {"evaluate_translation"},
    "sigprop/plotting/tables.py": {"table1", "table2"},
    "sigprop/train/loop.py": {"train_toy", "train_translation", "evaluate_translation",
                              "simulate_method_init"},  # translation.methods imports sigprop.train
    "sigprop/data/iwslt/fetch.py": {"iwslt_status", "prepare_iwslt"},
    "sigprop/data/iwslt/preprocess.py": {"prepare_iwslt"},
    "sigprop/data/iwslt/binarize.py": {"binarize_iwslt", "train_translation", "evaluate_translation",
                                       "simulate_method_init"},
    # the one command line: every job that runs a command reads its arguments with it
    "sigprop/cli.py": {*(set(ENTRY_POINTS) - {"plot", "report"}), "plot:fig07", "plot:fig08", "plot:fig12",
                       "plot:fig13"},
}


@pytest.mark.parametrize("edited", list(EDITS))
def test_editing_a_module_changes_the_code_hash_of_exactly_the_rules_that_import_it(edited, tmp_path):
    src = _copy_src(tmp_path)
    keys = _rule_keys()
    before = {rule: code_hash(rule.split(":")[0], extra, src) for rule, extra in keys}
    with (src / edited).open("a") as fh:
        fh.write("\n# edited\n")
    after = {rule: code_hash(rule.split(":")[0], extra, src) for rule, extra in keys}
    assert {r for r in before if before[r] != after[r]} == EDITS[edited]


def _run_recording_imports(tmp_path: Path, module: str, *args: str, env: dict | None = None) -> set[str]:
    """Run ``python -m module args`` and return the sigprop modules it had loaded when it exited."""
    record = tmp_path / f"imports-{len(list(tmp_path.glob('imports-*')))}.json"
    wrapper = (
        "import atexit, json, runpy, sys\n"
        "out, mod = sys.argv[1], sys.argv[2]\n"
        "del sys.argv[1:3]\n"
        "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] == 'sigprop'))))\n"
        "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, str(record), module, *args], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(record.read_text()))


def test_walk_covers_every_module_the_commands_load(tmp_path, copy_data):  # noqa: F811 (fixture)
    """Run each command on tiny inputs; every sigprop module it loaded must be among its rule's code inputs."""
    conc = {"experiment": "attention_concentration", "kind": "attention_concentration",
            "run": "sigprop.tasks.init_time:attention_concentration_vs_dk",
            "fixed": {"n_tokens": 8, "d_v": 8}, "point": {}, "inner": {"d_k": [1, 16, 256]}, "seeds": [0, 1]}
    raw = tmp_path / "raw.parquet"
    agg = tmp_path / "fig07.parquet"
    runs = {
        "simulate": ("sigprop", "simulate", "--spec", json.dumps(conc), "--out", str(raw)),
        "aggregate": ("sigprop", "aggregate", "--out", str(agg), str(raw)),
        "plot:fig07": ("sigprop", "plot", "--out", str(tmp_path / "fig07_x.pdf"), str(agg)),
        "checks": ("sigprop", "checks", "--out", str(tmp_path / "checks.csv"), str(agg)),
        "train_toy": ("sigprop", "train-toy", "--seed", "0", "--out", str(tmp_path / "toy.parquet"), "--params",
                      json.dumps({"n_layers": 1, "d_ff": 8, "batch_size": 4, "max_updates": 3, "log_every": 1,
                                  "eval_every": 3, "eval_size": 8})),
        "train_translation": ("sigprop", "train-translation", "--data", str(copy_data), "--out-dir",
                              str(tmp_path / "run"), "--spec",
                              json.dumps(job_spec(optimizer={"updates": 3}, evaluation={"beam": 1}))),
        "evaluate_translation": ("sigprop", "evaluate-translation", "--data", str(copy_data), "--run-dir",
                                 str(tmp_path / "run"), "--spec",
                                 json.dumps(job_spec(optimizer={"updates": 3}, evaluation={"beam": 1}))),
        "iwslt_status": ("sigprop", "data-status", "--dataset", "iwslt14-mini", "--out",
                         str(tmp_path / "status.json"), "--local-dir", str(tmp_path / "no-data")),
        "table2": ("sigprop", "table2", "--out-dir", str(tmp_path / "tables"), "--config",
                   json.dumps({k: _quick().get(k) for k in ("name", "methods", "translation")})),
    }
    text = tmp_path / "text"  # prepared text files to binarise again (copy_data itself stays as it is)
    text.mkdir()
    for f in [*copy_data.glob("*.de"), *copy_data.glob("*.en")]:
        shutil.copy(f, text / f.name)
    runs["binarize_iwslt"] = ("sigprop", "data-binarize", "--dir", str(text))
    for key, (module, *args) in runs.items():
        loaded = _run_recording_imports(tmp_path, module, *args)
        rule, _, fig = key.partition(":")
        walked = set(closure((*ENTRY_POINTS[rule], *([f"sigprop.plotting.{fig}"] if fig else ()))))
        assert loaded, key
        assert loaded <= walked, f"{key} loaded modules the walk does not list: {sorted(loaded - walked)}"


def test_walk_imports_nothing():
    code = (
        "import sys\nfrom sigprop.codehash import ENTRY_POINTS, code_files\n"
        "print(sum(len(code_files(r, src='src')) for r in ENTRY_POINTS))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas', 'numpy', 'sigprop')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, check=True).stdout.splitlines()
    assert json.loads(out[1].replace("'", '"')) == ["sigprop", "sigprop.codehash"]  # no torch, no package code


# ---------------------------------------------------------------- checkpoint fingerprints hold the code


def _edited_copy(tmp_path: Path, rel: str) -> Path:
    src = _copy_src(tmp_path / "src")
    with (src / rel).open("a") as fh:
        fh.write("\n# a code change\n")
    return src


def test_translation_job_whose_code_changed_trains_from_update_0(copy_data, tmp_path, monkeypatch):  # noqa: F811
    from sigprop.tasks.translation.job import train as train_and_evaluate  # the training job only
    from sigprop.tasks.translation.task import TranslationTask

    spec = job_spec(optimizer={"updates": 12}, evaluation={"beam": 1})
    original = TranslationTask.tau_setter

    def crashing(self, model):
        inner = original(self, model)

        def fn(t):
            if t == 11:  # after the checkpoint at update 10
                raise KeyboardInterrupt("simulated kill")
            inner(t)

        return fn

    out = tmp_path / "run"
    monkeypatch.setattr(TranslationTask, "tau_setter", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(spec, copy_data, out)
    assert torch.load(out / "state" / "last.pt", weights_only=True)["update"] == 10
    monkeypatch.setattr(TranslationTask, "tau_setter", original)
    # the model edited after the kill: the code the job imports is no longer the code of the checkpoint
    # (unchanged code resumes at update 10: tests/test_translation.py::test_resume_gives_the_same_parameters)
    edited = _edited_copy(tmp_path, "sigprop/model/blocks.py")
    monkeypatch.setattr(codehash, "default_src", lambda: edited)
    summary = train_and_evaluate(spec, copy_data, out)
    assert summary["resumed_from"] == 0 and summary["updates"] == 12
    assert not (out / "state").exists()  # resume state deleted once the outputs are written
    # trained from update 0: the same log as an uninterrupted run
    fresh = tmp_path / "fresh"
    train_and_evaluate(spec, copy_data, fresh)
    pd.testing.assert_frame_equal(pd.read_parquet(fresh / "log.parquet"), pd.read_parquet(out / "log.parquet"))


TINY_TOY = {"n_layers": 1, "d_ff": 8, "batch_size": 4, "max_updates": 16, "log_every": 4, "eval_every": 8,
            "eval_size": 8, "checkpoint_every": 8}


@pytest.mark.parametrize("changed", [False, True])
def test_toy_seed_whose_code_changed_trains_from_update_0(changed, tmp_path, monkeypatch, caplog):
    from sigprop.tasks.toy_reversal import run_toy
    from sigprop.train import SeededBatches

    calls = {"n": 0}
    original = SeededBatches.__next__

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == 12:  # during update 12, after the checkpoint at update 8
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(SeededBatches, "__next__", dying_next)
    with pytest.raises(KeyboardInterrupt):
        run_toy(TINY_TOY, seed=0, checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr(SeededBatches, "__next__", original)
    if changed:
        edited = _edited_copy(tmp_path, "sigprop/tasks/measure.py")
        monkeypatch.setattr(codehash, "default_src", lambda: edited)
    with caplog.at_level(logging.INFO, logger="sigprop"):
        run_toy(TINY_TOY, seed=0, checkpoint_dir=tmp_path / "ckpt")
    text = caplog.text
    if changed:
        assert "belongs to another run" in text and "starting afresh" in text and "resumed from" not in text
    else:
        assert "resumed from" in text and "at update 8" in text and "another run" not in text


def test_fingerprints_differ_with_the_code():
    from sigprop.tasks.toy_reversal import DEFAULTS, fingerprint
    from sigprop.tasks.translation.job import fingerprint as translation_fingerprint

    assert fingerprint(DEFAULTS, 0) == fingerprint(DEFAULTS, 0, code=module_hash("sigprop.tasks.toy_reversal"))
    assert fingerprint(DEFAULTS, 0, code="a") != fingerprint(DEFAULTS, 0, code="b")
    spec = job_spec()
    assert translation_fingerprint(spec, code="a") != translation_fingerprint(spec, code="b")
    own = module_hash("sigprop.tasks.translation.job")  # the task's own code, named without a workflow rule
    assert translation_fingerprint(spec) == translation_fingerprint(spec, code=own)


# ---------------------------------------------------------------- config input


def _quick() -> dict:
    """config/quick.yaml laid over its base, validated, the schema's defaults filled in."""
    return load_config(REPO_ROOT / "config" / "quick.yaml")


@pytest.mark.parametrize("grid", [[], {}])
def test_empty_grid_is_refused_naming_the_key(grid):
    cfg = _quick()
    cfg["experiments"]["signal_propagation"]["grid"] = grid
    with pytest.raises(ConfigError, match=r"experiments\.signal_propagation\.grid is empty"):
        validate_config(cfg, SCHEMA)


def test_command_line_strings_become_the_schemas_types():
    cfg = _quick()
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
    bad = _quick()
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


# ---------------------------------------------------------------- atomic writes killed mid-way


def test_killed_write_leaves_a_partial_file_that_is_not_output_and_is_cleaned(tmp_path):
    target = tmp_path / "results" / "raw" / "x" / "seeds~0-3.parquet"
    code = (
        "import os, signal, sys\nfrom sigprop.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'PAR1 half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == -signal.SIGKILL
    left = list(target.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".seeds~0-3.parquet.") and left[0].suffix == ".partial"
    assert not target.exists() and not list(tmp_path.rglob("*.parquet"))  # never taken for a table
    keep = tmp_path / "results" / "notes.partial"  # not written by atomic_path: left alone
    keep.write_text("mine")
    assert remove_partial_files(tmp_path / "results", tmp_path / "figures") == left
    assert not left[0].exists() and keep.exists()
    with atomic_path(target) as tmp:  # and a successful write leaves only the output
        tmp.write_text("ok")
    assert [p.name for p in target.parent.iterdir()] == [target.name]


# ---------------------------------------------------------------- Snakemake, on stand-in outputs

FIGURES_HERE = ["fig03", "fig04", "fig05", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12", "fig13"]


def _planned(output: str) -> list[tuple[str, list[str], str]]:
    """(rule, outputs, reason) of every job in a dry run."""
    jobs, cur = [], None
    for line in output.splitlines():
        s = line.strip()
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\S+):$", s)
        if head:
            cur = [head.group(1), [], ""]
            jobs.append(cur)
        elif cur is not None and s.startswith("output:"):
            cur[1] = [f.strip().split(" (")[0] for f in s[len("output:"):].split(",")]
        elif cur is not None and s.startswith("reason:"):
            cur[2] = s[len("reason:"):].strip()
    return [tuple(j) for j in jobs]


def _counts(jobs) -> dict[str, int]:
    out: dict[str, int] = {}
    for rule, _, _ in jobs:
        out[rule] = out.get(rule, 0) + 1
    return out


@pytest.fixture(scope="module")
def standins(tmp_path_factory, copy_workflow_to, snakemake) -> tuple[Path, list]:
    """A workflow copy (sources copied) whose every output exists as a stand-in, older than nothing it reads.

    Built from a dry run of the quick config without the translation part (no IWSLT data needed): one
    tiny parquet or empty file per output, all with one mtime, the sources an hour older.
    """
    wd = copy_workflow_to(tmp_path_factory.mktemp("standins") / "wf", src="copy")
    cfg = _quick()
    cfg["figures"] = [f for f in cfg["figures"] if f in FIGURES_HERE]
    cfg["tables"] = []
    for key in ("translation", "methods"):
        cfg.pop(key, None)
    cfg["experiments"].pop("method_init", None)  # Fig S1's init-time jobs build translation models
    (wd / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs = _planned(proc.stdout)
    now = time.time()
    for _, outputs, _ in jobs:
        for rel in outputs:
            path = wd / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".parquet":
                pd.DataFrame({"x": [0]}).to_parquet(path)
            else:
                path.write_bytes(b"")
            os.utime(path, (now, now))
    for path in (wd / "src").rglob("*.py"):
        os.utime(path, (now - 3600, now - 3600))
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")
    assert "Nothing to be done" in proc.stdout, proc.stdout[-4000:]
    return wd, jobs


def _work_copy(standins, tmp_path) -> Path:
    wd = tmp_path / "wf"
    shutil.copytree(standins[0], wd, symlinks=True)  # keeps the mtimes
    return wd


# edited module -> the jobs `snakemake -n` must list, by rule ("*": as many as a run from scratch has; for
# plot, the figures); read off the import statements, with what is made downstream of those jobs
LISTED = {
    "plotting/_heatmaps.py": {"plot": ["fig12", "fig13"], "report": 1, "all": 1},
    "plotting/style.py": {"plot": "*", "report": 1, "all": 1},
    "tasks/toy_reversal.py": {"train_toy": "*", "aggregate": 1, "plot": ["fig05"], "checks": 1, "report": 1, "all": 1},
    "analysis/report.py": {"report": 1, "all": 1},
    "analysis/theory.py": {"aggregate": "*", "plot": "*", "checks": 1, "report": 1, "all": 1},
    "grid.py": {"simulate": "*", "aggregate": "*", "plot": "*", "checks": 1, "report": 1, "all": 1},
    "params.py": {"simulate": "*", "train_toy": "*", "aggregate": "*", "plot": "*", "checks": 1, "report": 1,
                  "all": 1},
}


@pytest.mark.slow
@pytest.mark.parametrize("module", list(LISTED))
def test_editing_a_module_reruns_exactly_the_jobs_that_import_it(module, standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    with (wd / "src" / "sigprop" / module).open("a") as fh:
        fh.write("\n# edited\n")
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs = _planned(proc.stdout)
    full = _counts(standins[1])
    expect = {}
    for rule, n in LISTED[module].items():
        expect[rule] = full[rule] if n == "*" else (len(n) if isinstance(n, list) else n)
    assert _counts(jobs) == expect, proc.stdout[-3000:]
    for rule, n in LISTED[module].items():
        if isinstance(n, list):
            stems = sorted(Path(o).stem.split("_")[0] for r, outs, _ in jobs if r == rule for o in outs[:1])
            assert stems == n
    # a job that reruns for a changed file of its own names the edited module (nothing else changed)
    direct = [reason for _, _, reason in jobs if reason.startswith("Updated input files")]
    assert direct and all(reason == f"Updated input files: src/sigprop/{module}" for reason in direct), direct


@pytest.mark.slow
def test_figure_target_rebuilds_deleted_tables_in_both_spellings(standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    (wd / "results" / "aggregated" / "fig07.parquet").unlink()
    raw = next(o for r, outs, _ in standins[1] if r == "simulate" for o in outs if "signal_propagation/" in o)
    (wd / raw).unlink()
    for target in ("fig7", "fig07"):
        proc = snakemake(wd, "-n", target, "--configfile", "run.yaml")
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert _counts(_planned(proc.stdout)) == {"aggregate": 1, "plot": 1, target: 1}, proc.stdout[-3000:]
    proc = snakemake(wd, "-n", "fig08", "--configfile", "run.yaml")
    jobs = _planned(proc.stdout)
    assert [outs for r, outs, _ in jobs if r == "simulate"] == [[raw]] and _counts(jobs)["aggregate"] == 1
    proc = snakemake(wd, "-n", "--configfile", "run.yaml")  # the default target too
    counts = _counts(_planned(proc.stdout))
    assert counts["simulate"] == 1 and counts["aggregate"] == 2 and counts["checks"] == 1, counts
    proc = snakemake(wd, "-n", "fig2", "--configfile", "run.yaml")  # no such figure: refused with the list
    assert proc.returncode != 0 and "fig07 (fig07_uniform_attention)" in proc.stdout


@pytest.mark.slow
def test_config_override_on_the_command_line(standins, tmp_path, snakemake):
    wd = _work_copy(standins, tmp_path)
    proc = snakemake(wd, "-n", "fig10", "--configfile", "run.yaml", "--config",
                     "experiments={norm_density: {seeds: 5}}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    outs = [o for r, outs, _ in _planned(proc.stdout) if r == "simulate" for o in outs]
    assert outs and all(o.startswith("results/raw/norm_density/") and o.endswith("seeds~0-4.parquet") for o in outs)
