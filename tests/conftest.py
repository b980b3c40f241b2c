"""Shared fixtures: the repository root, copies of the workflow in a temporary directory, a Snakemake runner,
a synthetic copy-task corpus in the binarised IWSLT format (``copy_data``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The tests exercise this checkout's package, also where another clone is the one pip installed (editable):
# first on sys.path here, and first on PYTHONPATH for the commands the tests start.
sys.path.insert(0, str(REPO_ROOT / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
from helpers import copy_corpus  # noqa: E402 (after the path above: helpers imports sigprop)

SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
# What a copy of the workflow needs besides src/ (names that do not exist are skipped); the report reads
# docs/assumptions.md.
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles", "envs", "docs/assumptions.md")
SNAKEMAKE_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is faster than several on a shared CPU (``pytestmark = usefixtures``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (holds the Snakefile)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The configuration schema the workflow validates against."""
    return SCHEMA


def copy_workflow(dest: Path, src: str = "symlink") -> Path:
    """Copy the Snakefile, workflow/, config/, profiles/, envs/ into ``dest``; ``src`` is 'symlink' or 'copy'.

    With ``src='copy'`` the package sources are copied (without caches), so a test may edit them.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_ITEMS:
        item = REPO_ROOT / name
        if item.is_dir():
            shutil.copytree(item, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
        elif item.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, dest / name)
    if src == "symlink":
        (dest / "src").symlink_to(REPO_ROOT / "src", target_is_directory=True)
    elif src == "copy":
        shutil.copytree(REPO_ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
        raise ValueError(f"src={src!r}: use 'symlink' or 'copy'")
    return dest


def run_snakemake(workdir: Path, *args: str, timeout: float = SNAKEMAKE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``snakemake ARGS`` in ``workdir`` without the repository's workflow profile; stdout+stderr merged."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [exe, "--workflow-profile", "none", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def copy_workflow_to() -> Callable[..., Path]:
    """The function :func:`copy_workflow` (``copy_workflow_to(dest, src='symlink')``), for wider-scoped fixtures."""
    return copy_workflow


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``workflow_copy(src='symlink')`` returns a fresh copy of the workflow under ``tmp_path``."""
    count = 0

    def make(src: str = "symlink") -> Path:
        nonlocal count
        count += 1
        return copy_workflow(tmp_path / f"wf{count}", src=src)

    return make


@pytest.fixture(scope="session")
def snakemake() -> Callable[..., subprocess.CompletedProcess]:
    """The runner :func:`run_snakemake` (``snakemake(workdir, *args)``)."""
    return run_snakemake


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the SLURM tests last: they install SLURM, and its client then slows every later snakemake start."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_slurm.py"))


@pytest.fixture(scope="module")
def copy_data(tmp_path_factory) -> Path:
    """A synthetic 'translate = copy' corpus in the binarised IWSLT format."""
    return copy_corpus(tmp_path_factory.mktemp("copydata"))
