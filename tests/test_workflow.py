"""The Snakemake workflow end to end: unknown targets, a tiny run (tables, figures, checks, provenance), reruns.

Tests marked ``slow`` start Snakemake (seconds to a minute each); they run by default
(``pytest -m "not slow"`` skips them).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import quick_config

from sigprop.analysis.registry import FIGURES
from sigprop.io import read_meta
from sigprop.tasks.init_time import run_point

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.mark.slow
def test_unknown_figure_lists_known_figures(workflow_copy, snakemake):
    wd = workflow_copy()
    proc = snakemake(wd, "-n", "fig99")
    assert proc.returncode != 0, proc.stdout
    assert "fig99" in proc.stdout
    missing = [key for key in FIGURES if key not in proc.stdout]
    assert not missing, f"the message should list the known figures; missing {missing}:\n{proc.stdout}"


# ---------------------------------------------------------------- end to end (fig07, fig08)

TINY_D_K = [1, 16, 256, 1024, 2048]
TINY_SEEDS = 8
TINY_LAYERS = 4
# raw tables the tiny config must produce (written by hand, not computed by the code under test)
RAW = "results/raw"
EXPECTED_RAW = {
    f"{RAW}/attention_concentration/all/seeds~0-3.parquet": {},
    f"{RAW}/signal_propagation/attention~uniform/alpha~1/seeds~0-7.parquet": {"attention": "uniform", "alpha": "1"},
    f"{RAW}/signal_propagation/attention~uniform/alpha~1oversqrtL/seeds~0-7.parquet": {
        "attention": "uniform",
        "alpha": "1/sqrt(L)",
    },
    f"{RAW}/signal_propagation/attention~softmax/alpha~1/seeds~0-7.parquet": {"attention": "softmax", "alpha": "1"},
}


def tiny_config() -> dict:
    """config/quick.yaml cut down to figs 7 and 8 at toy sizes."""
    cfg = quick_config()
    cfg["name"] = "tiny"
    cfg["figures"] = ["fig07", "fig08"]
    if "tables" in cfg:
        cfg["tables"] = []  # no translation (Table 1) and no hyper-parameter table (Table 2)
    exps = cfg["experiments"]
    conc = copy.deepcopy(exps["attention_concentration"])
    conc.update(seeds=4, fixed={**conc["fixed"], "n_tokens": 8, "d_v": 8}, inner={"d_k": TINY_D_K})
    prop = copy.deepcopy(exps["signal_propagation"])
    prop["seeds"] = TINY_SEEDS
    prop["fixed"].update(d_model=8, d_ff=8, n_layers=TINY_LAYERS, n_tokens=6)
    prop["grid"] = [{"attention": ["uniform"], "alpha": ["1", "1/sqrt(L)"]}, {"attention": ["softmax"], "alpha": ["1"]}]
    cfg["experiments"] = {"attention_concentration": conc, "signal_propagation": prop}
    return cfg


def _job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run, as {rule: count} (without 'total')."""
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*\n", output + "\n\n", re.S)
    if not match:
        return {}
    counts = {}
    for line in match.group(1).splitlines():
        name, count = line.split()
        if name != "total":
            counts[name] = int(count)
    return counts


def _planned_outputs(output: str) -> list[tuple[str, str]]:
    """(rule, output line) for every job listed in a dry run."""
    jobs, rule = [], None
    for line in output.splitlines():
        head = re.match(r"^(?:local)?rule (\S+):$", line.strip())
        if head:
            rule = head.group(1)
        elif rule and line.strip().startswith("output:"):
            jobs.append((rule, line.strip()[len("output:") :].strip()))
    return jobs


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, copy_workflow_to, snakemake) -> Path:
    """A copy of the workflow (sources copied) after `snakemake fig7 fig8` and the default target, tiny config."""
    wd = copy_workflow_to(tmp_path_factory.mktemp("e2e") / "wf", src="copy")
    (wd / "tiny.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))  # grid key order = path order
    proc = snakemake(wd, "--cores", "2", "fig7", "fig8", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-6000:]
    counts = _job_counts(proc.stdout)
    assert counts.get("simulate") == len(EXPECTED_RAW), counts
    proc = snakemake(wd, "--cores", "2", "--configfile", "tiny.yaml")  # default target: adds the checks
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert _job_counts(proc.stdout).get("simulate", 0) == 0, "the default target reran simulations"
    return wd


@pytest.mark.slow
def test_e2e_raw_tables_and_provenance(e2e):
    found = {str(p.relative_to(e2e)) for p in (e2e / "results" / "raw").rglob("*.parquet")}
    assert found == set(EXPECTED_RAW)
    layer0 = []
    for rel, point in EXPECTED_RAW.items():
        df = pd.read_parquet(e2e / rel)
        assert {"seed", "metric", "value"} <= set(df.columns)
        assert df.value.notna().all() and np.isfinite(df.value).all()
        if "attention_concentration" in rel:
            assert {"n_tokens", "d_v", "d_k"} <= set(df.columns)
            assert sorted(df.d_k.unique()) == TINY_D_K and set(df.seed) == {0, 1, 2, 3}
            assert len(df) == 4 * len(TINY_D_K) and set(df.metric) == {"concentration"}
            assert ((df.value >= 0) & (df.value <= 1)).all()
        else:
            assert {"layer", "attention", "alpha", "d_model", "n_layers", "n_tokens", "norm"} <= set(df.columns)
            assert (df.attention == point["attention"]).all() and (df.alpha == point["alpha"]).all()
            assert set(df.seed) == set(range(TINY_SEEDS)) and set(df.layer) == set(range(TINY_LAYERS + 1))
            assert set(df.metric) == {"offdiag", "sq_norm"}
            assert len(df) == TINY_SEEDS * (TINY_LAYERS + 1) * 2
            layer0.append(df[(df.layer == 0) & (df.metric == "sq_norm")].value.to_numpy())
        meta = read_meta(e2e / rel)
        for key in ("git_commit", "config_hash", "code_hash", "packages", "device"):
            assert meta.get(key), f"{rel}: provenance lacks {key}: {meta}"
        assert {"torch", "numpy", "snakemake"} <= set(meta["packages"])
        assert meta.get("config") == "tiny"
    # the input is fixed: layer 0 is the same for every seed and grid point
    layer0 = np.concatenate(layer0)
    assert np.all(layer0 == layer0[0])


@pytest.mark.slow
def test_e2e_aggregated_tables(e2e):
    agg = pd.read_parquet(e2e / "results" / "aggregated" / "fig07.parquet")
    assert {"mean", "ci_low", "ci_high", "d_k"} <= set(agg.columns)
    assert sorted(agg.d_k) == TINY_D_K
    assert (agg.ci_low <= agg["mean"]).all() and (agg["mean"] <= agg.ci_high).all()
    raw = pd.read_parquet(e2e / "results/raw/attention_concentration/all/seeds~0-3.parquet")
    expect = raw.groupby("d_k").value.mean()
    np.testing.assert_allclose(agg.set_index("d_k")["mean"].loc[expect.index], expect, rtol=1e-12)
    fig08 = pd.read_parquet(e2e / "results" / "aggregated" / "fig08.parquet")
    assert {"mean", "ci_low", "ci_high", "theory", "layer", "metric"} <= set(fig08.columns)
    assert set(fig08.metric) >= {"sq_norm", "correlation"}


@pytest.mark.slow
def test_e2e_figures(e2e):
    for key in ("fig07", "fig08"):
        stem = FIGURES[key].stem
        pdf, png = e2e / "figures" / f"{stem}.pdf", e2e / "figures" / f"{stem}.png"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
        rgb = img[..., :3].reshape(-1, 3)
        assert rgb.std() > 0.05, f"{png.name} is (nearly) uniform"
        assert len(np.unique(rgb, axis=0)) > 50, f"{png.name} has almost no distinct colours"
        assert (rgb.min(axis=1) < 0.5).mean() > 0.002, f"{png.name} has almost no dark pixels (no lines or text)"


#: Fig 8's checks at the tiny config: the theory inside the simultaneous band for both uniform-attention points
#: (at the fixed seeds the run is deterministic; a right theory leaves the band with probability <= 5%)
E2E_FIG08_CHECKS = {f"fig08 uniform alpha={a} {m} vs theory"
                    for a in ("1", "1/sqrt(L)") for m in ("correlation", "sq_norm")}


@pytest.mark.slow
def test_e2e_checks_table(e2e):
    from sigprop.analysis import checks as check_fns

    checks = pd.read_csv(e2e / "results" / "checks.csv")
    assert {"name", "expected", "measured", "tolerance", "pass", "applicable"} <= set(checks.columns)
    assert set(checks["pass"].astype(str)) <= {"True", "False"}
    fig08 = checks[checks.figure == "fig08"]
    assert set(fig08.name) == E2E_FIG08_CHECKS, list(fig08.name)
    assert fig08["pass"].astype(bool).all() and fig08.applicable.astype(bool).all(), fig08.to_string()
    # fig07 is computed (one row) but not required here: 4 seeds at d_v = 8 are far from the d_k >> d_v slope
    assert list(checks[checks.figure == "fig07"].name) == ["fig07 log-log slope, d_k >= 1024"]
    # the file is what the check functions give on the aggregated tables
    agg = {k: pd.read_parquet(e2e / "results" / "aggregated" / f"{k}.parquet") for k in ("fig07", "fig08")}
    again = check_fns.run_checks(agg)
    assert list(again.name) == list(checks.name) and list(again["pass"]) == list(checks["pass"].astype(bool))
    np.testing.assert_allclose(again.measured.to_numpy(float), checks.measured.to_numpy(float), rtol=1e-12)


@pytest.mark.slow
def test_e2e_second_run_has_nothing_to_do(e2e, snakemake):
    proc = snakemake(e2e, "--cores", "2", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Nothing to be done" in proc.stdout, proc.stdout[-4000:]
    proc = snakemake(e2e, "-n", "fig7", "fig8", "--configfile", "tiny.yaml")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, proc.stdout[-4000:]


@pytest.mark.slow
def test_e2e_same_seed_bit_identical_raw_table(e2e, tmp_path, snakemake):
    wd = tmp_path / "wf"
    shutil.copytree(e2e, wd, symlinks=True)  # keeps mtimes and Snakemake's metadata
    rel = "results/raw/signal_propagation/attention~uniform/alpha~1/seeds~0-7.parquet"
    before = pd.read_parquet(wd / rel)
    (wd / rel).unlink()
    proc = snakemake(wd, "--cores", "1", rel, "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert _job_counts(proc.stdout) == {"simulate": 1}
    after = pd.read_parquet(wd / rel)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    assert before.equals(after)
    assert before.value.to_numpy().tobytes() == after.value.to_numpy().tobytes()


@pytest.mark.slow
def test_e2e_corrupt_raw_table_is_named_and_its_job_rerun(e2e, tmp_path, snakemake):
    wd = tmp_path / "wf"
    shutil.copytree(e2e, wd, symlinks=True)
    raw = "results/raw/signal_propagation/attention~uniform/alpha~1/seeds~0-7.parquet"
    agg, fig = wd / "results/aggregated/fig08.parquet", wd / "figures" / f"{FIGURES['fig08'].stem}.png"
    fig_bytes = fig.read_bytes()
    data = (wd / raw).read_bytes()
    (wd / raw).write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or an interrupted copy
    proc = snakemake(wd, "--cores", "1", "fig8", "--configfile", "tiny.yaml")
    assert proc.returncode != 0
    # the message names the file and the command that rebuilds it, in Snakemake's own output
    assert f"{raw} cannot be read as a parquet table" in proc.stdout, proc.stdout[-4000:]
    command = f"rm '{raw}' && snakemake --cores 1 fig08"
    assert command in proc.stdout, proc.stdout[-4000:]
    # the failed job left no table (the next run reruns it); the figure's job never started: its file is as it was
    assert not agg.exists() and fig.read_bytes() == fig_bytes
    (wd / raw).unlink()  # the command of the message, with this run's config
    proc = snakemake(wd, "--cores", "1", "fig08", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert _job_counts(proc.stdout) == {"simulate": 1, "aggregate": 1, "plot": 1, "fig08": 1}
    assert pd.read_parquet(wd / raw).equals(pd.read_parquet(e2e / raw))  # the same seeds give the same table


@pytest.mark.slow
def test_e2e_partial_file_of_a_killed_write_is_removed_by_the_next_run(e2e, tmp_path, snakemake):
    wd = tmp_path / "wf"
    shutil.copytree(e2e, wd, symlinks=True)
    raw = wd / "results/raw/attention_concentration/all/seeds~0-3.parquet"
    code = (
        "import os, signal, sys\nfrom sigprop.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(raw)], env={**os.environ, "PYTHONPATH": str(wd / "src")})
    (partial,) = [p for p in raw.parent.iterdir() if p.name.endswith(".partial")]
    raw.unlink()
    proc = snakemake(wd, "--cores", "1", "fig7", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "removed 1 partial file(s) left by an interrupted run" in proc.stdout
    assert not partial.exists() and [p.name for p in raw.parent.iterdir()] == [raw.name]


@pytest.mark.slow
def test_e2e_killed_snakemake_rerun_needs_unlock_as_the_docs_say(e2e, tmp_path, snakemake):
    wd = tmp_path / "wf"
    shutil.copytree(e2e, wd, symlinks=True)
    raws = sorted(p for p in (wd / RAW / "signal_propagation").rglob("*.parquet"))
    for path in raws:
        path.unlink()
    logs = wd / "results" / "logs" / "simulate" / "signal_propagation"
    shutil.rmtree(logs)
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    run = subprocess.Popen([exe, "--workflow-profile", "none", "--cores", "1", "fig8", "--configfile", "tiny.yaml"],
                           cwd=wd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = wd / ".snakemake" / "locks"
    for _ in range(600):  # until Snakemake holds its lock and the first job has started
        if locks.is_dir() and any(locks.iterdir()) and logs.exists() and any(logs.rglob("*.log")):
            break
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # Snakemake and its job, as a lost session or `kill -9`
    run.wait()
    proc = snakemake(wd, "--cores", "1", "fig8", "--configfile", "tiny.yaml")
    assert proc.returncode != 0 and "Directory cannot be locked" in proc.stdout and "--unlock" in proc.stdout
    resume = (REPO_ROOT / "docs" / "running.md").read_text().split("- **Resume**", 1)[1].split("\n- **", 1)[0]
    assert "snakemake --unlock" in resume and "Directory cannot be locked" in resume
    assert snakemake(wd, "--unlock", "--configfile", "tiny.yaml").returncode == 0
    proc = snakemake(wd, "--cores", "1", "fig8", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    for path in raws:  # every table rebuilt, the same as before the kill
        assert pd.read_parquet(path).equals(pd.read_parquet(e2e / path.relative_to(wd)))


@pytest.mark.slow
def test_e2e_editing_one_plot_module_reruns_only_that_plot(e2e, tmp_path, snakemake):
    wd = tmp_path / "wf"
    shutil.copytree(e2e, wd, symlinks=True)
    module = wd / "src" / "sigprop" / "plotting" / "fig07.py"
    assert not module.is_symlink()
    with module.open("a") as fh:
        fh.write("\n# edited by test_workflow\n")
    proc = snakemake(wd, "-n", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = _job_counts(proc.stdout)
    assert counts.get("plot") == 1, proc.stdout[-4000:]
    assert not {"simulate", "aggregate", "checks"} & set(counts), counts
    plots = [out for rule, out in _planned_outputs(proc.stdout) if rule == "plot"]
    assert len(plots) == 1 and FIGURES["fig07"].stem in plots[0], plots
    assert "src/sigprop/plotting/fig07.py" in proc.stdout  # the reason Snakemake gives


# ---------------------------------------------------------------- determinism (fast)


def test_run_point_same_seed_bit_identical():
    fixed = tiny_config()["experiments"]["signal_propagation"]["fixed"]
    point = {"attention": "softmax", "alpha": "1/sqrt(L)"}
    a = run_point("signal_propagation", fixed, point, None, [0, 1, 2])
    b = run_point("signal_propagation", fixed, point, None, [0, 1, 2])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.value.to_numpy().tobytes() == b.value.to_numpy().tobytes()
    c = run_point("signal_propagation", fixed, point, None, [3])
    assert not np.array_equal(a[a.seed == 0].value.to_numpy()[-4:], c.value.to_numpy()[-4:])
