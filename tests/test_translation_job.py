"""The translation training and evaluation job (sigprop.tasks.translation: batching, loss, schedules,
optimizers, methods, job, evaluation, plan).

The job tests train a tiny model for a few dozen updates on a synthetic copy task written as
IWSLT-style text files and binarised with the real code (``copy_data`` in conftest.py; a few seconds each).
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import job_spec

from sigprop.config import load_config
from sigprop.data.iwslt.status import locate
from sigprop.tasks.translation import methods
from sigprop.tasks.translation.batching import collate, token_batches
from sigprop.tasks.translation.evaluation import evaluate_run
from sigprop.tasks.translation.job import train
from sigprop.tasks.translation.plan import Run, check_config, run_spec, spec_json, target_runs
from sigprop.tasks.translation.task import TranslationTask

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_with_no_batch_under_the_length_limit_stops_with_a_message(copy_data):
    from sigprop.tasks.translation.task import TranslationTask

    spec = job_spec()
    spec["model"] = {**spec["model"], "max_positions": 2}  # every sentence is longer: no batch at all
    task = TranslationTask(spec, copy_data)

    def hung(*_):
        raise TimeoutError("the batch iterator loops without a batch")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        with pytest.raises(ValueError, match="max_positions") as err:
            next(task.data())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert str(copy_data) in str(err.value)


def test_radam_first_step_is_the_authors_unrectified_step():
    """RAdam (the authors' fairseq fork, torch.optim.RAdam): at step 1 rho_1 = 1 <= 5, so the update is
    p (1 - lr wd) - lr g (bias-corrected momentum, decoupled decay), computed here by hand."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = methods.build_optimizer([p], {"kind": "radam", "lr": 0.1, "betas": [0.9, 0.98], "weight_decay": 0.01})
    assert isinstance(opt, torch.optim.RAdam)
    g = torch.tensor([0.3, 0.1, -0.2])
    p.grad = g.clone()
    before = p.detach().clone()
    opt.step()
    torch.testing.assert_close(p.detach(), before * (1 - 0.1 * 0.01) - 0.1 * g)


def test_token_batches_cover_everything_within_max_tokens():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(2, 40, 300), rng.integers(2, 40, 300)
    batches = token_batches(src, tgt, 256, seed=3, epoch=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(300))
    for b in batches:
        assert len(b) * np.maximum(src[b], tgt[b]).max() <= 256
    again = token_batches(src, tgt, 256, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = token_batches(src, tgt, 256, seed=3, epoch=2)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=False))


def test_collate_shifts_targets_and_pads_right():
    pairs = [(torch.tensor([5, 6, 2]), torch.tensor([7, 8, 9, 2])), (torch.tensor([5, 2]), torch.tensor([7, 2]))]
    b = collate(pairs, pad=1, eos=2)
    assert b["src"].tolist() == [[5, 6, 2], [5, 2, 1]]
    assert b["tgt"].tolist() == [[7, 8, 9, 2], [7, 2, 1, 1]]
    assert b["prev"].tolist() == [[2, 7, 8, 9], [2, 7, 1, 1]]
    assert int(b["ntokens"]) == 6


def test_label_smoothing_is_fairseqs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 17, generator=g)
    tgt = torch.randint(4, 17, (3, 5), generator=g)
    tgt[0, 3:] = 1
    loss, nll = methods.label_smoothed_nll(logits, tgt, 0.1, pad=1)
    v = logits.shape[-1]  # fairseq: (1 - eps - eps/(V-1)) nll + eps/(V-1) sum(-lprobs) = torch's with eps V/(V-1)
    ref = F.cross_entropy(
        logits.view(-1, v), tgt.view(-1), ignore_index=1, label_smoothing=0.1 * v / (v - 1), reduction="sum"
    )
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    assert float(nll) == pytest.approx(
        float(F.cross_entropy(logits.view(-1, v), tgt.view(-1), ignore_index=1, reduction="sum")), rel=1e-5
    )


def test_schedules_and_tau_warmup():
    adam = {
        "lr": 7e-4,
        "updates": 100000,
        "schedule": {"kind": "inverse_sqrt", "warmup_updates": 6000, "warmup_init_lr": 1e-7},
    }
    f = methods.lr_schedule(adam)
    assert f(6000) == pytest.approx(7e-4) and f(24000) == pytest.approx(3.5e-4) and f(1) < 3e-7
    sgd = {"lr": 2e-2, "updates": 250000, "schedule": {"kind": "step", "gamma": 0.1, "milestones": [0.4, 0.8]}}
    f = methods.lr_schedule(sgd)
    assert [f(t) for t in (1, 99999, 100000, 200000)] == pytest.approx([2e-2, 2e-2, 2e-3, 2e-4])
    f = methods.lr_schedule(
        {"lr": 1.0, "updates": 10, "schedule": {"kind": "inverse_sqrt_nowarmup", "decay_period": 4}}
    )
    assert f(0) == 1.0 and f(12) == pytest.approx(0.5)
    temp = {"tau": 8.5, "tau_warmup": 1000}
    assert [methods.tau_at(t, temp) for t in (0, 500, 1000, 5000)] == [0.0, 4.25, 8.5, 8.5]
    assert methods.tau_at(7, {}) == 1.0


def test_sgdw_decay_is_decoupled():
    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = methods.SGDW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.tensor([1.0])
    opt.step()
    assert float(p.detach()) == pytest.approx(2.0 * (1 - 0.1 * 0.5) - 0.1 * 1.0)


def train_and_evaluate(spec: dict, data: Path, out: Path) -> dict:
    """The two jobs of one run, as the workflow chains them: train_translation, then evaluate_translation."""
    train(spec, data, out)
    return evaluate_run(spec, data, out)


def test_tiny_training_lowers_the_loss_and_writes_every_file(copy_data, tmp_path):
    out = tmp_path / "run"
    trained = train(job_spec(), copy_data, out)
    assert {p.name for p in out.iterdir()} == {"log.parquet", "train.json", "checkpoint_best.pt"}  # no BLEU yet
    assert "bleu" not in trained
    summary = evaluate_run(job_spec(), copy_data, out)
    assert {p.name for p in out.iterdir()} == {
        "log.parquet", "train.json", "checkpoint_best.pt", "eval.parquet", "eval.json", "hypotheses.txt"
    }
    assert summary["best_update"] == trained["best_update"] and summary["decode_dtype"] == "float32"
    log = pd.read_parquet(out / "log.parquet")
    loss = log[log.metric == "loss"].sort_values("step")["value"].to_numpy()
    assert loss[-1] < 0.7 * loss[0]
    assert not summary["diverged"] and math.isfinite(summary["bleu"]) and summary["test_sentences"] == 6
    metrics = set(log.metric)
    assert {
        "cosine",
        "act_norm",
        "grad_wq",
        "grad_wk",
        "grad_wv",
        "alpha1",
        "alpha2",
        "tau",
        "lr",
        "valid_loss",
    } <= metrics
    assert log[(log.metric == "cosine") & (log.step == 0)].shape[0] == 2 * 2  # init: both sides, 2 layers
    assert len((out / "hypotheses.txt").read_text().splitlines()) == 6
    ckpt = torch.load(out / "checkpoint_best.pt", weights_only=True)
    assert ckpt["update"] == summary["best_update"]
    ev = pd.read_parquet(out / "eval.parquet")
    assert ev.loc[0, "method_label"] == "Adam POST-LN" and ev.loc[0, "dataset"] == "iwslt14-mini"


def test_resume_gives_the_same_parameters(copy_data, tmp_path, monkeypatch):
    spec = job_spec(optimizer={"updates": 30}, evaluation={"beam": 1})
    train_and_evaluate(spec, copy_data, tmp_path / "whole")

    original = TranslationTask.tau_setter
    state = {"armed": True}

    def crashing(self, model):
        inner = original(self, model)

        def fn(t):
            if state["armed"] and t == 17:  # after the checkpoint at update 10
                raise KeyboardInterrupt("simulated kill")
            inner(t)

        return fn

    monkeypatch.setattr(TranslationTask, "tau_setter", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(spec, copy_data, tmp_path / "killed")
    assert torch.load(tmp_path / "killed" / "state" / "last.pt", weights_only=True)["update"] == 10
    state["armed"] = False
    summary = train_and_evaluate(spec, copy_data, tmp_path / "killed")
    assert summary["resumed_from"] == 10

    assert not (tmp_path / "killed" / "state").exists()  # outputs written: the resume state is deleted
    a = torch.load(tmp_path / "whole" / "checkpoint_best.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint_best.pt", weights_only=True)
    assert a["update"] == b["update"] and a["score"] == b["score"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    la, lb = (pd.read_parquet(tmp_path / d / "log.parquet") for d in ("whole", "killed"))
    pd.testing.assert_frame_equal(la, lb)


def test_evaluation_rereads_the_best_checkpoint_in_float32_without_touching_training(copy_data, tmp_path):
    from sigprop.tasks.translation.evaluation import decode_test, load_best
    from sigprop.tasks.translation.job import fingerprint

    out, spec = tmp_path / "run", job_spec()
    train(spec, copy_data, out)
    trained = {n: (out / n).read_bytes() for n in ("log.parquet", "train.json", "checkpoint_best.pt")}
    five = evaluate_run(spec, copy_data, out)
    greedy_spec = job_spec(evaluation={"beam": 1})
    assert fingerprint(greedy_spec) == fingerprint(spec)  # the evaluation section is not part of the training
    greedy = evaluate_run(greedy_spec, copy_data, out)  # re-evaluation with another beam
    assert {n: (out / n).read_bytes() for n in trained} == trained
    assert (five["beam"], greedy["beam"]) == (2, 1) and greedy["best_update"] == five["best_update"]
    # the hypotheses are the best checkpoint's, decoded in float32 even from a bf16 copy of the model
    ckpt = torch.load(out / "checkpoint_best.pt", weights_only=True)
    model = load_best(spec, copy_data, ckpt, torch.device("cpu")).to(torch.bfloat16)
    _, hyps = decode_test(model, copy_data, greedy_spec["evaluation"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reference = load_best(spec, copy_data, ckpt, torch.device("cpu")).to(torch.bfloat16).float()
    assert hyps == decode_test(reference, copy_data, greedy_spec["evaluation"])[1]
    full = load_best(spec, copy_data, ckpt, torch.device("cpu"))
    assert (out / "hypotheses.txt").read_text().splitlines() == decode_test(full, copy_data,
                                                                           greedy_spec["evaluation"])[1]


def test_divergence_is_recorded_and_logs_kept(copy_data, tmp_path):
    spec = job_spec(
        method_config={"optimizer": "sgd", "norm": "none"},
        optimizer={"kind": "sgd", "lr": 1e12, "momentum": 0.0, "schedule": {"kind": "constant"}},
    )
    summary = train_and_evaluate(spec, copy_data, tmp_path / "run")
    assert summary["diverged"] and math.isnan(summary["bleu"])
    log = pd.read_parquet(tmp_path / "run" / "log.parquet")
    assert log.diverged.all() and not log.empty
    assert float(log[log.metric == "diverged"]["value"].iloc[0]) == 1.0
    assert bool(pd.read_parquet(tmp_path / "run" / "eval.parquet").diverged.iloc[0])
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["summary"]["diverged"] is True


def test_missing_data_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGPROP_IWSLT_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    status = locate("iwslt14-mini", None, "http://127.0.0.1:9/de-en.tgz", None, str(tmp_path / "cache"), timeout=2)
    assert status["available"] is False
    for needle in ("SIGPROP_IWSLT_DIR", "data.local_dir", "iwslt14-mini", "snakemake"):
        assert needle in status["message"]


def test_plan_shares_runs_between_targets(repo_root):

    cfg = load_config(repo_root / "config" / "paper.yaml")
    check_config(cfg)
    shared = Run("adam_postln", 6, 0)  # one run directory serves Table 1 and Fig 6
    assert shared in target_runs(cfg, "table1") and shared in target_runs(cfg, "fig06")
    assert all(len(set(target_runs(cfg, t))) == len(target_runs(cfg, t)) for t in ("table1", "fig06", "fig01"))
    assert len(target_runs(cfg, "table1")) == 7 * 5
    spec = run_spec(cfg, Run("sgd_temperature", 6, 2))
    assert spec["optimizer"]["lr"] == 2e-2 and spec["method_config"]["tau"] == 8.5
    run = Run("sgd_temperature", 6, 2)
    assert "evaluation" not in json.loads(spec_json(cfg, run, "train"))  # a beam change retrains nothing
    assert json.loads(spec_json(cfg, run, "evaluate")) == spec
    cfg["translation"]["fig06"]["methods"].append("adam_nope")
    with pytest.raises(ValueError, match="adam_nope"):
        check_config(cfg)
