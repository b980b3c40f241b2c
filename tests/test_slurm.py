"""The SLURM profile (profiles/slurm) on a real single-node SLURM cluster (tools/slurm_cluster.sh).

Needs root: the module's fixture installs SLURM from the Debian packages if needed (apt-get), starts
munged + slurmctld + slurmd on localhost and stops them again at the end, also when a test fails. It
is skipped only where that cannot work: not root, or SLURM missing and no apt-get. CI (`.ci/run`, as
root on Debian 12) runs it.

* ``test_slurm_run_equals_local_run``: a small part of the quick DAG through
  ``snakemake --profile profiles/slurm --workflow-profile none``: 2 ``simulate`` jobs (Figs 7, 8) in one group job,
  one short ``train_toy`` job, three local ``aggregate`` jobs and one local ``plot``. The two SLURM
  jobs must show up in ``squeue``/``scontrol`` and have their SLURM logs; raw and aggregated tables
  must equal those of a local run of the same targets (data compared, not the provenance metadata).
* ``test_cancelled_training_resumes_from_checkpoint``: pre-emption. A ``train_toy`` job is cancelled
  with ``scancel`` after its first checkpoint; Snakemake resubmits it (``retries: 2`` in the profile)
  and the new job resumes from the checkpoint. That one is cancelled too while Snakemake itself is
  killed; ``snakemake --unlock`` and a rerun (``--rerun-incomplete``) resume it again, and it finishes.
  Both resumptions are read from the rule's log; the final table equals an uninterrupted local run.

The cluster is shared by test sessions running at the same time on one machine (a lock file); the
last one stops it, if a test session started it. Measured times are in docs/slurm.md.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import quick_config

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO_ROOT / "tools" / "slurm_cluster.sh"
PROFILE_ARGS = ("--profile", "profiles/slurm", "--workflow-profile", "none")
LOCK_FILE = Path("/run/lock/sigprop-slurm-tests.lock")
STARTED_FILE = LOCK_FILE.with_suffix(".started")  # the cluster was started by a test session
NEEDS_CPUS, NEEDS_MEM_MB = 2, 4000  # the largest job: the `init` group (2 CPUs, simulate's 4000 MB)
RUN_TIMEOUT_S = 600  # one Snakemake run; a normal one takes 1-2 min
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", re.M)
RESUMED = re.compile(r"resumed from \S+ at update (\d+)")


# ---------------------------------------------------------------- the cluster


def _cluster(action: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), action], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM cluster, stopped at the end (also on failure) if a test session started it.

    Test sessions running at the same time on one machine share the cluster: each holds a shared lock on
    LOCK_FILE while it uses it, and the last one out stops it (only if a test session had started it).
    """
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (tools/slurm_cluster.sh starts slurmctld/slurmd)")
    if not shutil.which("sbatch") and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is missing to install it (Debian/Ubuntu only)")
    # (find_spec, not import: importing the plugin runs `scontrol show config`, 9 s while slurmctld is down)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -e '.[slurm]'")
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one session at a time starts (or stops) the cluster
        try:
            if _cluster("status").returncode != 0:
                STARTED_FILE.touch()  # before the start: a half-started cluster is stopped as well
                start = time.perf_counter()
                proc = _cluster("start")
                assert proc.returncode == 0, f"tools/slurm_cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}"
                print(f"\nSLURM cluster start: {time.perf_counter() - start:.1f} s")
            fcntl.flock(lock, fcntl.LOCK_SH)  # in use
            cpus, mem_mb = map(int, subprocess.run(["sinfo", "-h", "-o", "%c %m"], capture_output=True, text=True,
                                                   check=True).stdout.split()[:2])
            # sbatch rejects a job larger than the node (EnforcePartLimits=ALL): say why, not just "Error in group"
            assert cpus >= NEEDS_CPUS and mem_mb >= NEEDS_MEM_MB, (
                f"the test node has {cpus} CPUs and {mem_mb} MB; the tests need {NEEDS_CPUS} CPUs (profile: cores: 2) "
                f"and {NEEDS_MEM_MB} MB (`simulate` asks for mem_mb=4000)")
            yield
        finally:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another test session still uses the cluster; the last one stops it
            else:
                if STARTED_FILE.exists():  # started by a test session, not by a person: stop it
                    stop = _cluster("stop", timeout=120)
                    assert stop.returncode == 0, f"slurm_cluster.sh stop failed:\n{stop.stdout}\n{stop.stderr}"
                    STARTED_FILE.unlink()


def _scontrol(jobid: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (a finished job stays known to slurmctld for MinJobAge = 300 s)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


class QueueWatcher:
    """Records every job ``squeue`` shows (all states) twice a second, in a background thread."""

    def __init__(self) -> None:
        self.seen: dict[str, dict] = {}  # jobid -> {"name", "comment", "states"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%j|%k|%T"], capture_output=True,
                                 text=True).stdout
            for line in out.splitlines():
                jobid, name, comment, state = (line.split("|") + ["", "", "", ""])[:4]
                job = self.seen.setdefault(jobid, {"name": name, "comment": comment.strip(), "states": set()})
                job["states"].add(state)
            self._stop.wait(0.5)

    def __enter__(self) -> QueueWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# ---------------------------------------------------------------- Snakemake runs


class Run:
    """``snakemake ARGS`` started in the background in ``workdir``; output (stdout + stderr) in a file."""

    def __init__(self, workdir: Path, *args: str, name: str) -> None:
        self.workdir = workdir
        self.logfile = workdir.parent / f"{workdir.name}.{name}.out"
        self.started = time.perf_counter()
        self.wall_s: float | None = None
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        with open(self.logfile, "w") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                                         stdout=fh, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._time, daemon=True).start()

    def _time(self) -> None:
        self.proc.wait()
        self.wall_s = time.perf_counter() - self.started

    @property
    def output(self) -> str:
        return self.logfile.read_text(errors="replace")

    def submitted(self) -> list[tuple[str, str]]:
        """(SLURM job id, SLURM log file) of every submission so far."""
        return SUBMITTED.findall(self.output)

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        try:
            rc = self.proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake did not finish in {timeout:.0f} s:\n{self.output[-6000:]}")
        return rc

    def stop(self) -> None:
        """Ctrl-C (Snakemake cancels its SLURM jobs), then kill; for clean-up after a failed test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_for(what: str, predicate, timeout: float, run: Run | None = None, poll: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        value = predicate()
        if value:
            return value
        if run is not None and run.proc.poll() is not None:
            pytest.fail(f"snakemake ended (rc {run.proc.returncode}) while waiting for {what}:\n{run.output[-6000:]}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{run.output[-6000:]}" if run else ""))


@pytest.fixture
def runs():
    """Collects :class:`Run` objects and stops those still running when the test ends (also on failure)."""
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


def _workflow(copy_workflow_to, dest: Path, config: dict) -> Path:
    wd = copy_workflow_to(dest, src="symlink")
    (wd / "test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # grid key order = path order
    return wd


def _table_files(wd: Path, sub: str) -> dict[str, Path]:
    return {str(p.relative_to(wd)): p for p in sorted((wd / "results" / sub).rglob("*.parquet"))}


def _assert_same_tables(a: Path, b: Path, sub: str) -> int:
    """The parquet tables under results/<sub> of two runs hold the same data (metadata not compared)."""
    fa, fb = _table_files(a, sub), _table_files(b, sub)
    assert set(fa) == set(fb), f"results/{sub}: {sorted(fa)} != {sorted(fb)}"
    for rel in fa:
        pd.testing.assert_frame_equal(pd.read_parquet(fa[rel]), pd.read_parquet(fb[rel]), check_exact=True,
                                      obj=rel)
    return len(fa)


# ---------------------------------------------------------------- a part of the quick DAG on SLURM


def tiny_config() -> dict:
    """config/quick.yaml cut down: Figs 5, 7, 8 at toy sizes (2 simulate jobs, 1 training seed of 40 updates)."""
    cfg = quick_config()
    cfg["name"] = "slurm-tiny"
    cfg["figures"] = ["fig05", "fig07", "fig08"]
    cfg["tables"] = []
    exps = cfg["experiments"]
    conc = exps["attention_concentration"]
    conc.update(seeds=4, fixed={**conc["fixed"], "n_tokens": 8, "d_v": 8}, inner={"d_k": [1, 16, 256]})
    prop = exps["signal_propagation"]
    prop["seeds"] = 8
    prop["fixed"].update(d_model=8, d_ff=8, n_layers=4, n_tokens=6)
    prop["grid"] = {"attention": ["uniform"], "alpha": ["1/sqrt(L)"]}
    toy = exps["toy_reversal"]
    toy["seeds"] = 1
    toy["fixed"].update(max_updates=40, warmup=10, log_every=10, eval_every=20, eval_size=64, checkpoint_every=20)
    cfg["experiments"] = {k: exps[k] for k in ("attention_concentration", "signal_propagation", "toy_reversal")}
    return cfg


# one figure (local plot), every aggregated table (local aggregate), hence 2 simulate + 1 train_toy jobs on SLURM
E2E_TARGETS = ("fig7", "results/aggregated/fig05.parquet", "results/aggregated/fig08.parquet")
N_SIMULATE = 2


def test_slurm_run_equals_local_run(slurm_cluster, tmp_path, runs, copy_workflow_to):
    cfg = tiny_config()
    slurm_wd = _workflow(copy_workflow_to, tmp_path / "slurm", cfg)
    local_wd = _workflow(copy_workflow_to, tmp_path / "local", cfg)
    # the local reference runs at the same time: the SLURM run mostly waits for the queue
    local = Run(local_wd, "--workflow-profile", "none", "--cores", "2", *E2E_TARGETS, "--configfile", "test.yaml",
                name="local")
    runs.append(local)
    with QueueWatcher() as queue:
        slurm = Run(slurm_wd, *PROFILE_ARGS, "--slurm-keep-successful-logs", *E2E_TARGETS,
                    "--configfile", "test.yaml", name="slurm")
        runs.append(slurm)
        assert slurm.wait() == 0, slurm.output[-8000:]
    assert local.wait() == 0, local.output[-8000:]
    print(f"\nSLURM run {slurm.wall_s:.1f} s, local run {local.wall_s:.1f} s (concurrently)")

    # exactly two SLURM jobs: the `init` group of simulate jobs and the training job; the rest ran locally
    jobs = dict(slurm.submitted())
    assert len(jobs) == 2, slurm.output[-8000:]
    kinds = {}
    for jobid, log in jobs.items():
        rel = Path(log).resolve().relative_to((slurm_wd / ".snakemake" / "slurm_logs").resolve())
        kinds[rel.parts[0]] = jobid
        assert Path(log).name == f"{jobid}.log" and Path(log).is_file(), f"no SLURM log {log}"
        info = _scontrol(jobid)
        assert info.get("JobState") == "COMPLETED", info
        assert Path(info.get("WorkDir", "")).resolve() == slurm_wd.resolve(), info
        assert jobid in queue.seen, f"squeue never showed job {jobid}: {queue.seen}"
        assert queue.seen[jobid]["states"] & {"RUNNING", "COMPLETING", "COMPLETED"}, queue.seen[jobid]
    assert set(kinds) == {"group_init_simulate", "rule_train_toy"}, jobs
    group_log = Path(jobs[kinds["group_init_simulate"]]).read_text()
    simulated = set(re.findall(r"^\s*output: (results/raw/\S+)$", group_log, re.M))
    assert len(simulated) == N_SIMULATE and "(Rule: simulate)" in group_log, group_log[-4000:]
    assert queue.seen[kinds["group_init_simulate"]]["comment"] == "rule_init_simulate"
    assert queue.seen[kinds["rule_train_toy"]]["comment"].startswith("rule_train_toy")
    assert "(Rule: train_toy)" in Path(jobs[kinds["rule_train_toy"]]).read_text()
    for rule in ("aggregate", "plot"):
        assert re.search(rf"^localrule {rule}:", slurm.output, re.M), f"{rule} did not run locally"

    # the same results as the local run
    assert _assert_same_tables(slurm_wd, local_wd, "raw") == N_SIMULATE + 1
    assert _assert_same_tables(slurm_wd, local_wd, "aggregated") == 3
    for ext in ("pdf", "png"):
        assert (slurm_wd / "figures" / f"fig07_uniform_attention.{ext}").stat().st_size > 1000


# ---------------------------------------------------------------- pre-emption: cancel, resume


TOY_UPDATES = 500
CHECKPOINT_EVERY = 100
TOY_OUT = "results/raw/toy_reversal/seed~0.parquet"
TOY_LOG = "results/logs/train_toy/seed~0.log"
TOY_CKPT = "results/checkpoints/toy_reversal/seed~0/last.pt"  # where the toy rule keeps it (workflow/rules/toy.smk)


def preempt_config() -> dict:
    """One seed of Fig 5's toy training, 500 updates (7-30 s on 2 CPUs), a checkpoint every 100 updates."""
    cfg = quick_config()
    cfg["name"] = "slurm-preempt"
    cfg["figures"] = ["fig05"]
    cfg["tables"] = []
    toy = cfg["experiments"]["toy_reversal"]
    toy["seeds"] = 1
    toy["fixed"].update(max_updates=TOY_UPDATES, warmup=100, log_every=50, eval_every=200, eval_size=64,
                        checkpoint_every=CHECKPOINT_EVERY)
    cfg["experiments"] = {"toy_reversal": toy}
    return cfg


def _checkpoint_update(wd: Path) -> int:
    """The update of the last checkpoint (0 if there is none or it is being replaced)."""
    import torch

    try:
        return int(torch.load(wd / TOY_CKPT, map_location="cpu", weights_only=True)["update"])
    except Exception:
        return 0


def _resumed_at(wd: Path) -> int | None:
    """The update the running (or last) train_toy job resumed from, according to the rule's log."""
    log = wd / TOY_LOG
    found = RESUMED.findall(log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1]) if found else None


def _checkpoint_at_least(wd: Path, run: Run, update: int) -> int:
    """Wait until the job has saved a checkpoint at ``update`` or later; return its update."""
    return _wait_for(f"a checkpoint at update >= {update}", lambda: (u := _checkpoint_update(wd)) >= update and u,
                     timeout=240, run=run)


def test_cancelled_training_resumes_from_checkpoint(slurm_cluster, tmp_path, runs, copy_workflow_to):
    """SLURM cancels the training job twice; it resumes from its checkpoint each time and ends as if uninterrupted.

    1. ``scancel`` after the first checkpoint: Snakemake resubmits the job (``retries: 2`` in the profile)
       and the new job resumes from the checkpoint.
    2. ``scancel`` again, and Snakemake itself is killed (a lost login session): the user runs
       ``snakemake --unlock`` and the same command again (``--rerun-incomplete``); the job resumes again.
    """
    cfg = preempt_config()
    wd = _workflow(copy_workflow_to, tmp_path / "slurm", cfg)
    ref_wd = _workflow(copy_workflow_to, tmp_path / "local", cfg)
    ref = Run(ref_wd, "--workflow-profile", "none", "--cores", "1", TOY_OUT, "--configfile", "test.yaml",
              name="local")  # uninterrupted reference, at the same time
    runs.append(ref)
    args = (*PROFILE_ARGS, TOY_OUT, "--configfile", "test.yaml")

    run1 = Run(wd, *args, name="run1")
    runs.append(run1)
    first = _wait_for("the first submission", run1.submitted, timeout=120, run=run1)[0][0]
    u1 = _checkpoint_at_least(wd, run1, CHECKPOINT_EVERY)
    subprocess.run(["scancel", first], check=True)
    second = _wait_for("the resubmission", lambda: [j for j, _ in run1.submitted() if j != first], timeout=180,
                       run=run1)[0]
    n1 = _wait_for("the resubmitted job to resume", lambda: _resumed_at(wd), timeout=180, run=run1)
    assert u1 <= n1 < TOY_UPDATES, (u1, n1)
    u2 = _checkpoint_at_least(wd, run1, n1 + CHECKPOINT_EVERY)
    run1.proc.kill()  # Snakemake dies ...
    run1.proc.wait()
    subprocess.run(["scancel", second], check=True)  # ... and so does its job
    assert "CANCELLED" in run1.output, run1.output[-6000:]  # Snakemake saw the first cancellation
    _wait_for("the jobs to end", lambda: all(_scontrol(j).get("JobState") == "CANCELLED" for j in (first, second)),
              timeout=60)
    assert (wd / TOY_CKPT).exists() and not (wd / TOY_OUT).exists()

    unlock = subprocess.run([sys.executable, "-m", "snakemake", *args, "--unlock"], cwd=wd, capture_output=True,
                            text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    run2 = Run(wd, *args, "--rerun-incomplete", name="run2")
    runs.append(run2)
    assert run2.wait() == 0, run2.output[-8000:]
    assert len(run2.submitted()) == 1, run2.output[-6000:]
    n2 = _resumed_at(wd)
    assert n2 is not None, f"the rerun did not resume from the checkpoint:\n{(wd / TOY_LOG).read_text()}"
    assert u2 <= n2 < TOY_UPDATES, (u2, n2)
    assert not (wd / TOY_CKPT).parent.exists(), "the checkpoint directory should be removed after success"
    print(f"\npre-emption: cancelled after checkpoints {u1} and {u2}, resumed at {n1} and {n2}; "
          f"run 1 {run1.wall_s:.1f} s, run 2 {run2.wall_s:.1f} s, local run {ref.wall_s or 0:.1f} s")

    assert ref.wait() == 0, ref.output[-6000:]
    assert _resumed_at(ref_wd) is None
    resumed, uninterrupted = pd.read_parquet(wd / TOY_OUT), pd.read_parquet(ref_wd / TOY_OUT)
    assert resumed.step.max() == TOY_UPDATES
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
