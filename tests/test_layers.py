"""The package's layers point one way: data -> model -> tasks -> analysis -> plotting -> commands.

Every ``sigprop`` module is placed in one layer and may import (anywhere in the file, imports inside functions
included, as :mod:`sigprop.codehash` reads them) only modules of its own layer or below. The workflow's
``.smk`` files are read the same way: a file calls only functions and constants of itself or of files
included before it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sigprop.codehash import _imports

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: layers, bottom first; a module belongs to the first layer with a pattern equal to its name or a package above it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("sigprop", "sigprop.io", "sigprop.params", "sigprop.depth_rules", "sigprop.patterns", "sigprop.grid",
              "sigprop.config", "sigprop.jobs", "sigprop.codehash", "sigprop.analysis.registry")),
    ("commands", ("sigprop.__main__", "sigprop.cli")),
    ("data", ("sigprop.data",)),
    ("model", ("sigprop.model",)),
    ("tasks", ("sigprop.tasks", "sigprop.train")),
    ("analysis", ("sigprop.analysis",)),
    ("plotting", ("sigprop.plotting",)),
]
ORDER = ["base", "data", "model", "tasks", "analysis", "plotting", "commands"]


def layer(module: str) -> str:
    """The layer of a module: exact names first (so that ``sigprop.cli`` is not taken by the package ``sigprop``)."""
    for name, patterns in LAYERS:
        if module in patterns:
            return name
    for name, patterns in LAYERS:
        if any(p != "sigprop" and module.startswith(p + ".") for p in patterns):
            return name
    raise KeyError(f"{module} is in no layer of tests/test_layers.py: place it in LAYERS")


def modules(src: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((src / "sigprop").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def upward_imports(src: Path) -> list[str]:
    """``importer (layer) -> imported (layer)`` for every import of a higher layer."""
    bad = []
    for module, path in modules(src).items():
        for imported in _imports(str(path), path.stat().st_mtime_ns, module, None):
            if ORDER.index(layer(imported)) > ORDER.index(layer(module)):
                bad.append(f"{module} ({layer(module)}) -> {imported} ({layer(imported)})")
    return sorted(bad)


def test_every_module_has_a_layer():
    assert {n for n, _ in LAYERS} == set(ORDER) and len(ORDER) == len(set(ORDER))
    for module in modules(SRC):
        layer(module)
    assert layer("sigprop.cli") == "commands" and layer("sigprop.analysis.claims") == "analysis"
    assert layer("sigprop.tasks.translation.task") == "tasks" and layer("sigprop.data.iwslt.bpe") == "data"
    assert layer("sigprop.jobs") == "base" and layer("sigprop.data.iwslt.status") == "data"


def import_cycles(src: Path) -> list[list[str]]:
    """Modules that import each other (directly or through others): each cycle once, as found by a depth-first walk."""
    graph = {m: sorted(i for i in _imports(str(p), p.stat().st_mtime_ns, m, None) if i != m)
             for m, p in modules(src).items()}
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, []):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    return cycles


def test_imports_point_down_the_layers():
    assert upward_imports(SRC) == []


def test_no_module_imports_itself_through_others():
    assert import_cycles(SRC) == []


def test_an_upward_import_is_reported(tmp_path):
    """The check fails on a wrong input: a model module importing the plotting style."""
    pkg = tmp_path / "sigprop"
    (pkg / "plotting").mkdir(parents=True)
    for name in ("__init__.py", "io.py", "plotting/__init__.py", "plotting/style.py"):
        (pkg / name).write_text("")
    (pkg / "model.py").write_text("def f():\n    from sigprop.plotting.style import Style\n")
    assert upward_imports(tmp_path) == ["sigprop.model (model) -> sigprop.plotting.style (plotting)"]
    cyc = tmp_path / "cycle" / "sigprop"
    cyc.mkdir(parents=True)
    (cyc / "__init__.py").write_text("")
    (cyc / "io.py").write_text("from sigprop import model\n")
    (cyc / "model.py").write_text("def f():\n    from sigprop.io import g\n")
    assert import_cycles(tmp_path / "cycle") == [["sigprop.io", "sigprop.model", "sigprop.io"]]
    with pytest.raises(KeyError, match="no layer"):
        layer("sigprop.newthing")


# ---- the workflow: a .smk file calls nothing defined in a file included after it ----


def smk_order() -> list[Path]:
    return [ROOT / line.split('"')[1] for line in (ROOT / "Snakefile").read_text().splitlines()
            if line.startswith("include:")]


def smk_forward_uses(files: list[Path]) -> list[str]:
    """``file uses name (defined in later file)`` for functions and UPPER_CASE constants."""
    defined: dict[str, int] = {}
    texts = [re.sub(r"#.*", "", f.read_text()) for f in files]
    for i, text in enumerate(texts):
        for name in re.findall(r"^def (\w+)", text, re.M) + re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", text, re.M):
            defined.setdefault(name, i)
    bad = []
    for i, text in enumerate(texts):
        for name, j in defined.items():
            if j > i and re.search(rf"\b{name}\b", text):
                bad.append(f"{files[i].name} uses {name} ({files[j].name})")
    return sorted(bad)


def test_smk_files_call_only_what_is_included_before_them():
    files = smk_order()
    assert [f.name for f in files[:3]] == ["common.smk", "translation_common.smk", "targets.smk"]
    assert smk_forward_uses(files) == []


def test_a_forward_call_between_smk_files_is_reported(tmp_path):
    (tmp_path / "a.smk").write_text("def a():\n    return b()  # b: a comment is no use\n")
    (tmp_path / "b.smk").write_text("B_FILES = []\n\n\ndef b():\n    return B_FILES\n")
    assert smk_forward_uses([tmp_path / "a.smk", tmp_path / "b.smk"]) == ["a.smk uses b (b.smk)"]
