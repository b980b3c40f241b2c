"""The code a job runs: the ``sigprop`` modules its entry point imports, found by reading the sources, and their hash.

Each workflow rule that runs ``sigprop`` code is listed in :data:`ENTRY_POINTS` with the entry point of its
command. :func:`code_files` walks the import statements from there over ``src/sigprop`` (``ast`` only: nothing
is imported, no torch at parse time) and returns every module file the job can load: the rules declare these
files as inputs, so editing any of them reruns exactly the jobs that import it. :func:`code_hash` hashes the
same files (the jobs' provenance records it).

An entry is a module (``sigprop.__main__``: every import anywhere in the module) or ``module:function``
(the module's top-level imports plus those inside ``function``: one subcommand of :mod:`sigprop.cli`).
Every other module reached is read whole, imports inside functions included (a superset of what one run
loads), together with the ``__init__.py`` of each package on its path. Functions imported by a name held in
data (the registry's ``"module:function"`` strings, :func:`sigprop.analysis.registry.resolve`) are not seen:
their modules are extra entries that the aggregate, plot and checks rules add (``targets.smk``). The unit is
the file: editing any line of a file reruns every job whose walk reaches it. A task that needs the identity of
its own code (a training checkpoint's fingerprint, so that a checkpoint written by other code is not resumed)
takes :func:`module_hash` of its module, which names no rule.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

PACKAGE = "sigprop"

# rule name -> the entry points of the command it runs
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "simulate": ("sigprop.__main__", "sigprop.cli:simulate"),
    "train_toy": ("sigprop.__main__", "sigprop.cli:train_toy"),
    "aggregate": ("sigprop.__main__", "sigprop.cli:aggregate"),
    "plot": ("sigprop.__main__", "sigprop.cli:plot"),  # + the figure's plot module (named in the registry)
    "checks": ("sigprop.__main__", "sigprop.cli:run_checks"),
    "report": ("workflow/notebooks/report.ipynb",),
    "simulate_method_init": ("sigprop.__main__", "sigprop.cli:simulate_method_init"),  # Fig S1 (supplementary.smk)
    "simulate_probe": ("sigprop.__main__", "sigprop.cli:simulate_probe"),  # Fig S7 (probe.smk)
    "iwslt_status": ("sigprop.__main__", "sigprop.cli:data_status"),
    "prepare_iwslt": ("sigprop.__main__", "sigprop.cli:data_prepare"),
    "binarize_iwslt": ("sigprop.__main__", "sigprop.cli:data_binarize"),
    "train_translation": ("sigprop.__main__", "sigprop.cli:train_translation"),
    "train_lr_point": ("sigprop.__main__", "sigprop.cli:train_translation"),  # an lr grid point's prefix
    "select_lr": ("sigprop.__main__", "sigprop.cli:select_lr"),  # trains an edge extension: training's code
    # search and BLEU: not in training's walk
    "evaluate_translation": ("sigprop.__main__", "sigprop.cli:evaluate_translation"),
    "table1": ("sigprop.__main__", "sigprop.cli:table1"),
    "table2": ("sigprop.__main__", "sigprop.cli:table2"),
}


def default_src() -> Path:
    """The ``src`` directory this package was imported from."""
    return Path(__file__).resolve().parents[1]


def _module_file(src: Path, module: str) -> Path | None:
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _statements(body: list[ast.stmt], into_functions: bool) -> Iterator[ast.stmt]:
    """Every statement in ``body``, nested blocks included (functions' bodies only if ``into_functions``).

    Imports are statements, so expressions are never visited (this keeps the walk cheap).
    """
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and not into_functions:
            continue  # a function's imports run when it is called
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                yield from _statements(block, into_functions)


def _named(src: Path, package: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The ``sigprop`` modules one import statement names (``package``: the importing module's package)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        module = f"{base}.{node.module}" if node.module else base
    else:
        module = node.module or ""
    # `from sigprop.x import y`: y is a submodule or a name defined in sigprop.x
    names = {module} | {f"{module}.{a.name}" for a in node.names if a.name != "*"}
    return {n for n in names if _module_file(src, n) is not None or n == module}


@cache
def _imports(path: str, mtime_ns: int, module: str, functions: tuple[str, ...] | None) -> frozenset[str]:
    """Modules imported by one file: everywhere (``functions`` None), or top level plus ``functions``."""
    tree = ast.parse(Path(path).read_bytes(), filename=path)
    stmts = list(_statements(tree.body, into_functions=functions is None))
    if functions is not None:
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        for name in functions:
            if name not in defs:
                raise ValueError(f"{path}: no top-level function {name!r} (an entry point of sigprop.codehash)")
            stmts += _statements(defs[name].body, into_functions=True)
    nodes = [n for n in stmts if isinstance(n, ast.Import | ast.ImportFrom)]
    package = module if Path(path).name == "__init__.py" else module.rpartition(".")[0]
    src = Path(path).parents[len(module.split(".")) - (0 if Path(path).name == "__init__.py" else 1)]
    out: set[str] = set()
    for node in nodes:
        out |= {m for m in _named(src, package, node) if m == PACKAGE or m.startswith(PACKAGE + ".")}
    return frozenset(out)


def _notebook_imports(path: Path, src: Path) -> set[str]:
    """``sigprop`` modules imported by the code cells of a Jupyter notebook."""
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!"))]  # IPython magics
    tree = ast.parse("\n".join(lines), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
            found |= {m for m in _named(src, "", node) if m.split(".")[0] == PACKAGE}
    return found


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(entries: Iterable[str], src: str | Path | None = None, root: str | Path = ".") -> list[str]:
    """The modules the entry points can import (sorted names); notebook entries are paths under ``root``."""
    src = Path(src) if src is not None else default_src()
    partial: dict[str, tuple[str, ...]] = {}
    todo: list[str] = []
    for entry in entries:
        if entry.endswith(".ipynb"):
            todo += sorted(_notebook_imports(Path(root) / entry, src))
            continue
        module, _, function = entry.partition(":")
        if function:
            partial[module] = (*partial.get(module, ()), function)
        todo.append(module)
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_file(src, module)
        if path is None:
            raise ValueError(f"module {module} not found under {src}")
        seen.add(module)
        todo += _parents(module)
        todo += _imports(str(path), path.stat().st_mtime_ns, module, partial.get(module))
    return sorted(seen)


def code_files(rule: str, extra: Iterable[str] = (), src: str | Path = "src", root: str | Path = ".") -> list[str]:
    """The source files of the modules a rule's job can import, as paths under ``src`` (its code inputs)."""
    src = Path(src)
    out = []
    for module in closure((*ENTRY_POINTS[rule], *extra), src, root):
        path = _module_file(src, module)
        assert path is not None
        out.append(str(path))
    return sorted(out)


def _digest(paths: Iterable[str | Path], src: Path) -> str:
    """Short sha256 of files: their paths under ``src`` and their bytes."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(Path(path).relative_to(src)).encode() + b"\0")
        digest.update(Path(path).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_hash(rule: str, extra: Iterable[str] = (), src: str | Path | None = None) -> str:
    """Short sha256 of the files of :func:`code_files` (their paths under ``src`` and their bytes)."""
    src = Path(src) if src is not None else default_src()
    return _digest(code_files(rule, extra, src), src)


def module_hash(module: str, src: str | Path | None = None) -> str:
    """Short sha256 of the files ``module`` can import (its :func:`closure`, read as a rule's entry points are):
    the identity of a task's code that the task computes itself, without naming the workflow rule that runs it."""
    src = Path(src) if src is not None else default_src()
    return _digest(sorted(str(_module_file(src, m)) for m in closure([module], src)), src)
