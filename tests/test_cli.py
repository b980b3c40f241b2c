"""The one command line, ``sigprop``: every rule runs one of its commands, each with its help and clear errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import RULE_FILES

from sigprop import cli
from sigprop.codehash import ENTRY_POINTS

ROOT = Path(__file__).resolve().parents[1]


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def rule_commands() -> dict[str, str]:
    """rule -> the ``sigprop`` command its shell line runs."""
    out = {}
    for f in RULE_FILES:
        for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):\n((?:    .*\n|\n)*)", f.read_text(), re.M):
            shell = re.search(r"shell:\n\s+\"([^\"]*)", body)
            if shell and "sigprop" in shell.group(1):
                found = re.search(r"python -m sigprop ([\w-]+)", shell.group(1))
                assert found, f"rule {name} ({f.name}) runs sigprop other than as `python -m sigprop COMMAND`"
                out[name] = found.group(1)
    return out


def test_every_rule_runs_a_command_whose_function_is_its_entry_point():
    cmds, ran = commands(), rule_commands()
    assert {"simulate", "train_translation", "iwslt_status", "simulate_method_init"} <= set(ran)
    for rule, command in ran.items():
        assert command in cmds, f"rule {rule} runs `sigprop {command}`, which is not a command"
        func = cmds[command].get_default("func")
        assert ENTRY_POINTS[rule] == ("sigprop.__main__", f"sigprop.cli:{func.__name__}"), rule


def test_no_other_command_line_modules():
    mains = sorted(str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "sigprop").rglob("__main__.py"))
    assert mains == ["sigprop/__main__.py"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"sigprop": "sigprop.cli:main"}


def test_every_command_has_help(capsys):
    cmds = commands()
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    top = capsys.readouterr().out
    for name, parser in cmds.items():
        assert name in top  # listed with its one-line help
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: sigprop {name}"), name
        assert parser.get_default("func").__doc__.split()[0] in text, name  # what it does, not only its usage


def test_python_m_sigprop_is_the_same_program():
    proc = subprocess.run([sys.executable, "-m", "sigprop", "data-binarize", "--help"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, check=True)
    assert proc.stdout.startswith("usage: sigprop data-binarize")


@pytest.mark.parametrize("argv, message", [
    (["nope"], "invalid choice: 'nope'"),
    (["data-status", "--dataset", "iwslt15", "--out", "x.json"], "unknown dataset 'iwslt15'; expected one of"),
    (["data-prepare", "--out", "d"], "one of the arguments --status --dataset is required"),
    (["data-prepare", "--status", "s.json", "--dataset", "iwslt14", "--out", "d"], "not allowed with argument"),
    (["train-translation", "--data", "d", "--out-dir", "o"], "the following arguments are required: --spec"),
])
def test_bad_usage_names_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_prepare_refuses_locate_options_with_a_status_and_reports_missing_data(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"available": False, "dataset": "iwslt14", "message": "no raw files: set X"}))
    with pytest.raises(SystemExit) as exc:
        cli.main(["data-prepare", "--status", str(status), "--source", "raw", "--out", str(tmp_path / "d")])
    assert "--source go with --dataset" in str(exc.value.code)
    with pytest.raises(SystemExit) as exc:
        cli.main(["data-prepare", "--status", str(status), "--out", str(tmp_path / "d")])
    assert str(exc.value.code) == "sigprop data-prepare: no raw files: set X"
    assert not (tmp_path / "d").exists()
