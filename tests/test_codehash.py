"""sigprop.codehash: a result on disk is what the current code produces.

* a task's own code identity (module_hash); task code naming no workflow rule;
* the import-closure walk: a superset of what each command really imports, exactly the rules that import an
  edited module, partial entry points and relative imports on a hand-built package;
* checkpoint fingerprints: a toy or translation job whose code changed trains from update 0.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import RULE_FILES, copy_src, job_spec, quick_config

import sigprop.codehash as codehash
from sigprop.analysis.registry import check_modules
from sigprop.codehash import ENTRY_POINTS, closure, code_hash, module_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"


def test_module_hash_follows_exactly_the_files_the_module_can_import(tmp_path):
    src = copy_src(tmp_path)
    module = "sigprop.tasks.toy_reversal"
    reached = closure([module], src)
    assert "sigprop.train.loop" in reached and "sigprop.cli" not in reached
    before = module_hash(module, src)
    (src / "sigprop" / "cli.py").write_text((src / "sigprop" / "cli.py").read_text() + "\n# edited\n")
    assert module_hash(module, src) == before  # the command line is not the task's code
    assert code_hash("train_toy", src=src) != code_hash("train_toy", src=copy_src(tmp_path / "fresh"))
    loop = src / "sigprop" / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\n# edited\n")
    assert module_hash(module, src) != before


#: what maps a workflow rule to its code: task code imports none of it (it takes module_hash of itself)
RULE_LOOKUPS = {"code_hash", "code_files", "ENTRY_POINTS"}


def _rule_lookups(path: Path) -> set[str]:
    """The names of :data:`RULE_LOOKUPS` a file imports (``import sigprop.codehash`` counts as all of them)."""
    found = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom) and n.module == "sigprop.codehash":
            found |= {a.name for a in n.names} & RULE_LOOKUPS
        elif isinstance(n, ast.Import) and any(a.name == "sigprop.codehash" for a in n.names):
            found |= RULE_LOOKUPS
    return found


@pytest.mark.parametrize("path", sorted((SRC / "sigprop" / "tasks").rglob("*.py")), ids=lambda p: p.name)
def test_task_code_looks_up_no_workflow_rule(path):
    assert _rule_lookups(path) == set()


def test_a_task_looking_up_a_rule_is_found(tmp_path):
    bad = tmp_path / "task.py"
    bad.write_text('from sigprop.codehash import code_hash, module_hash\n\ndef f():\n    return code_hash("x")\n')
    assert _rule_lookups(bad) == {"code_hash"}
    bad.write_text("import sigprop.codehash\n")
    assert _rule_lookups(bad) == RULE_LOOKUPS


# ---------------------------------------------------------------- the import-closure walk

TARGET_RULES = {"all", "unknown_figure"}  # rules that run no code


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
    "sigprop/params.py": {"simulate", "train_toy", "aggregate", "checks", "train_translation", "train_lr_point",
                          "select_lr", "evaluate_translation", "simulate_method_init", "simulate_probe", "table1",
                          "table2", "report", "plot:fig07", "plot:fig08", "plot:fig12",
                          "plot:fig13"},  # model, aggregation, plot style (alpha labels), report (Fig S5's table)
    "sigprop/plotting/_heatmaps.py": {"plot:fig12", "plot:fig13"},
    "sigprop/plotting/style.py": {"plot:fig07", "plot:fig08", "plot:fig12", "plot:fig13", "table1", "table2"},
    "sigprop/tasks/toy_reversal.py": {"train_toy"},
    "sigprop/analysis/report.py": {"report"},
    "sigprop/tasks/translation/task.py": {"train_translation", "train_lr_point", "select_lr"},
    "sigprop/tasks/translation/search.py": {"evaluate_translation"},
    "sigprop/tasks/translation/bleu.py": {"evaluate_translation"},
    "sigprop/plotting/tables.py": {"table1", "table2"},
    "sigprop/train/loop.py": {"train_toy", "train_translation", "train_lr_point", "select_lr", "evaluate_translation",
                              "simulate_method_init"},  # translation.methods imports sigprop.train
    "sigprop/data/iwslt/fetch.py": {"iwslt_status", "prepare_iwslt"},
    "sigprop/data/iwslt/preprocess.py": {"prepare_iwslt"},
    "sigprop/data/iwslt/binarize.py": {"binarize_iwslt", "train_translation", "train_lr_point", "select_lr",
                                       "evaluate_translation", "simulate_method_init"},
    # the one command line: every job that runs a command reads its arguments with it
    "sigprop/cli.py": {*(set(ENTRY_POINTS) - {"plot", "report"}), "plot:fig07", "plot:fig08", "plot:fig12",
                       "plot:fig13"},
}


@pytest.mark.parametrize("edited", list(EDITS))
def test_editing_a_module_changes_the_code_hash_of_exactly_the_rules_that_import_it(edited, tmp_path):
    src = copy_src(tmp_path)
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


def test_walk_covers_every_module_the_commands_load(tmp_path, copy_data):
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
                   json.dumps({k: quick_config().get(k) for k in ("name", "methods", "translation")})),
    }
    text = tmp_path / "text"  # prepared text files to binarise again (copy_data itself stays as it is)
    text.mkdir()
    for f in [*copy_data.glob("*.de"), *copy_data.glob("*.en")]:
        shutil.copy(f, text / f.name)
    runs["binarize_iwslt"] = ("sigprop", "data-binarize", "--dir", str(text))
    for key, (module, *args) in runs.items():
        loaded = _run_recording_imports(tmp_path, module, *args)
        rule, _, fig = key.partition(":")
        # the extra entries the rules add for functions the registry names (targets.smk): the figure's plot
        # module, every checks function's module
        extra = [f"sigprop.plotting.{fig}"] if fig else check_modules() if rule == "checks" else []
        walked = set(closure((*ENTRY_POINTS[rule], *extra)))
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
    src = copy_src(tmp_path / "src")
    with (src / rel).open("a") as fh:
        fh.write("\n# a code change\n")
    return src


def test_translation_job_whose_code_changed_trains_from_update_0(copy_data, tmp_path, monkeypatch):
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
    # (unchanged code resumes at update 10: tests/test_translation_job.py::test_resume_gives_the_same_parameters)
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
