"""sigprop.codehash: a task's own code identity (module_hash), and task code naming no workflow rule."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from sigprop.codehash import closure, code_hash, module_hash

SRC = Path(__file__).resolve().parents[1] / "src"


def _copy_src(dest: Path) -> Path:
    shutil.copytree(SRC / "sigprop", dest / "sigprop", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_module_hash_follows_exactly_the_files_the_module_can_import(tmp_path):
    src = _copy_src(tmp_path)
    module = "sigprop.tasks.toy_reversal"
    reached = closure([module], src)
    assert "sigprop.train.loop" in reached and "sigprop.cli" not in reached
    before = module_hash(module, src)
    (src / "sigprop" / "cli.py").write_text((src / "sigprop" / "cli.py").read_text() + "\n# edited\n")
    assert module_hash(module, src) == before  # the command line is not the task's code
    assert code_hash("train_toy", src=src) != code_hash("train_toy", src=_copy_src(tmp_path / "fresh"))
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
