"""bench/gpu_check.sh in its CPU mode: it starts, runs every stage and writes a JSON that parses.

Also: the shape buckets of the compiled step change no update, and the wheel list pins what this project is
tested with.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sigprop.model import EncoderDecoder, ModelConfig, Seq2SeqConfig
from sigprop.tasks.translation.batching import collate
from sigprop.tasks.translation.task import translation_step

ROOT = Path(__file__).resolve().parents[1]
IWSLT = os.environ.get("SIGPROP_IWSLT_DIR") or "/work/shared/data/iwslt14"


def bench_module(name: str):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoke(tmp_path: Path, stages: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--cpu-smoke", "--stages", stages, "--out", str(out),
                           "--workdir", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=600, check=False)
    record = json.loads((out / "gpu_check.json").read_text())
    return proc, record


def test_bucketed_batch_gives_the_same_loss_and_gradients():
    tt = bench_module("train_throughput")
    g = torch.Generator().manual_seed(0)
    pairs = []
    for s, t in ((7, 5), (3, 9), (11, 2)):
        src, tgt = torch.randint(4, 40, (s,), generator=g), torch.randint(4, 40, (t,), generator=g)
        src[-1] = tgt[-1] = tt.EOS
        pairs.append((src, tgt))
    batch = collate(pairs, tt.PAD, tt.EOS)
    big = tt.bucket_batch(batch, rows=8, length=16)
    assert big["src"].shape == (8, 16) and big["prev"].shape == (8, 16) and int(big["ntokens"]) == 16
    block = ModelConfig(d_model=16, n_heads=4, d_ff=24, n_layers=2, norm="post", dropout=0.0, attn_dropout=0.0,
                        act_dropout=0.0)
    model = EncoderDecoder(Seq2SeqConfig(block=block, vocab=40), torch.Generator().manual_seed(0))
    out = []
    for b in (batch, big):
        model.zero_grad()
        for fused in (False, True):  # the compiled step's plain loss, and the pipeline's fused one
            loss = translation_step(model, b, eps=0.1, pad=tt.PAD, fused=fused)["loss"]
            loss.backward()
        out.append((float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-6)
    for name, grad in out[0][1].items():
        torch.testing.assert_close(out[1][1][name], grad, rtol=1e-5, atol=1e-7, msg=name)
    wrong = {**big, "tgt": big["tgt"].clone()}
    wrong["tgt"][-1, 0] = 5  # a padding row that counts: the loss changes
    wrong_loss = translation_step(model, wrong, eps=0.1, pad=tt.PAD)["loss"].detach()
    assert float(wrong_loss) != pytest.approx(out[1][0], rel=1e-6)


def test_gpu_wheels_pin_versions_the_project_accepts():
    pins = dict(line.split("==") for line in (ROOT / "bench" / "gpu-wheels.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert len(pins) > 10
    assert {"snakemake", "sacremoses", "subword-nmt", "jsonschema"} <= pins.keys()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    checked = 0
    for req in map(Requirement, project):
        name = canonicalize_name(req.name)
        if name in pins:
            assert req.specifier.contains(pins[name]), f"bench/gpu-wheels.txt: {name}=={pins[name]} but {req}"
            checked += 1
    assert checked >= 4
    # one version of each: two would stop the install on the GPU machine
    assert len({canonicalize_name(n) for n in pins}) == len(pins)


@pytest.mark.slow
def test_cpu_smoke_runs_the_tests_and_the_throughput_stage_and_writes_their_numbers(tmp_path):
    proc, rec = smoke(tmp_path, "tests,throughput,compiled")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert rec["cpu_smoke"] and rec["stages"].keys() == {"tests", "throughput", "compiled"}
    tests = rec["stages"]["tests"]
    assert tests["status"] == "ok" and tests["passed"] >= 1 and tests["failed"] == 0 and tests["skipped"] == 0
    tp, comp = rec["stages"]["throughput"], rec["stages"]["compiled"]
    assert tp["status"] == comp["status"] == "ok"
    assert tp["models"].keys() == {"ours", "torch"} and comp["models"].keys() == {"ours", "compiled"}
    for m in (*tp["models"].values(), *comp["models"].values()):
        assert math.isfinite(m["target_tokens_per_s"]) and m["target_tokens_per_s"] > 0
    assert comp["models"]["compiled"]["compile_warmup_s"] > 0
    assert "ours_vs_torch" in tp["ratios"] and "compiled_vs_ours" in comp["ratios"]
    g = rec["goal"]
    best = max(((k, m) for k, m in (*tp["models"].items(), *comp["models"].items()) if k != "torch"),
               key=lambda kv: kv[1]["target_tokens_per_s"])
    assert g["target_tokens_per_s"] == best[1]["target_tokens_per_s"] and not g["met"]  # a CPU is far below it
    assert g["vs_torch"] == pytest.approx(best[1]["target_tokens_per_s"] / tp["models"]["torch"]["target_tokens_per_s"])
    table = proc.stdout[proc.stdout.rindex("GPU check"):]  # the table comes last
    assert "CPU SMOKE" in table and "compiled / ours" in table and "1 passed, 0 failed" in table
    assert any(line.split()[:3] == ["goal", "not", "met"] for line in table.splitlines())


@pytest.mark.slow
@pytest.mark.skipif(not Path(IWSLT, "bpe10k", "code").exists(), reason="no IWSLT'14 data (SIGPROP_IWSLT_DIR)")
def test_cpu_smoke_e2e_trains_and_evaluates_both_methods(tmp_path):
    proc, rec = smoke(tmp_path, "e2e", SIGPROP_IWSLT_DIR=IWSLT)
    e2e = rec["stages"]["e2e"]
    assert proc.returncode == 0 and e2e["status"] == "ok", proc.stdout[-3000:]
    assert e2e["runs"].keys() == {"adam_postln", "sgd_temperature"}
    for run in e2e["runs"].values():
        assert run["updates"] == 6 and not run["diverged"] and run["updates_per_s"] > 0
        assert 0 <= run["bleu"] <= 100 and run["test_sentences"] == 20


def test_gpu_check_refuses_to_run_without_cuda_unless_cpu_smoke(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--cpu-smoke" in proc.stderr
