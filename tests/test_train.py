"""Tests for the training loop (sigprop.train), Adam's effective learning rate and Fig 5's toy task."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sigprop.analysis import aggregate, checks
from sigprop.model import ModelConfig
from sigprop.tasks.measure import adam_effective_lr, attention_effective_lrs
from sigprop.tasks.toy_reversal import ReversalModel, reversal_batch, run_toy, step
from sigprop.train import SeededBatches, TrainConfig, Trainer, schedules

TINY_TOY = {"n_layers": 2, "d_ff": 16, "batch_size": 8, "max_updates": 24, "log_every": 6, "eval_every": 12,
            "eval_size": 32, "checkpoint_every": 1000, "warmup": 5}


# ---------------------------------------------------------------- Adam's effective learning rate


@pytest.mark.parametrize("opt_cls", [torch.optim.Adam, torch.optim.AdamW])
def test_effective_lr_matches_hand_computation(opt_cls):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    lr, (b1, b2), eps = 0.05, (0.9, 0.99), 1e-8
    opt = opt_cls(model.parameters(), lr=lr, betas=(b1, b2), eps=eps)
    weight = model[0].weight
    v = torch.zeros_like(weight)
    for t in range(1, 6):
        for group in opt.param_groups:  # a changing lr: the effective lr uses the current one
            group["lr"] = lr * t / 5
        x, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        v = b2 * v + (1 - b2) * weight.grad.pow(2)  # recorded gradients -> second moment by hand
        opt.step()
        expected = (lr * t / 5) / ((v / (1 - b2**t)).sqrt() + eps)
        torch.testing.assert_close(adam_effective_lr(opt, weight), expected, rtol=1e-12, atol=0)


def test_effective_lr_errors_before_step_and_for_foreign_params():
    model = nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="after optimizer.step"):
        adam_effective_lr(opt, model.weight)
    with pytest.raises(ValueError, match="not in the optimizer"):
        adam_effective_lr(opt, nn.Parameter(torch.zeros(1)))


def test_attention_effective_lrs_median_and_mean():
    model = ReversalModel(ModelConfig(d_model=8, n_heads=1, d_ff=8, n_layers=3), vocab=10, n_tokens=6)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = reversal_batch(torch.Generator().manual_seed(0), 4, 6, 10)
    step(model, (x, y))["loss"].backward()
    opt.step()
    out = attention_effective_lrs(opt, model.blocks)
    assert set(out) == {"wq", "wk", "wv"} and all(len(v) == 3 for v in out.values())
    eff = adam_effective_lr(opt, model.blocks[1].attn.wk.weight).flatten().double()
    assert out["wk"][1] == pytest.approx((float(eff.quantile(0.5)), float(eff.mean())), rel=1e-12)


# ---------------------------------------------------------------- the toy task


def test_reversal_batch_targets_are_reversed_and_seeded():
    x, y = reversal_batch(torch.Generator().manual_seed(3), 16, 20, 10)
    assert x.shape == y.shape == (16, 20)
    assert x.min() >= 0 and x.max() <= 9
    for j in range(20):
        assert torch.equal(y[:, j], x[:, 19 - j])
    x2, _ = reversal_batch(torch.Generator().manual_seed(3), 16, 20, 10)
    assert torch.equal(x, x2)


def test_run_toy_same_seed_same_table():
    a = run_toy(TINY_TOY, seed=1)
    b = run_toy(TINY_TOY, seed=1)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    c = run_toy(TINY_TOY, seed=2)
    assert not np.array_equal(a.value.to_numpy(), c.value.to_numpy())
    assert list(a.columns) == ["seed", "step", "layer", "matrix", "metric", "value"]
    per_layer = a[a.layer.notna()]
    assert set(per_layer.metric) == {"eff_lr_median", "eff_lr_mean", "grad_norm"}
    assert set(per_layer.layer) == {1, 2} and set(per_layer.matrix) == {"wq", "wk", "wv"}
    assert set(per_layer["step"]) == {1, 6, 12, 18, 24}
    glob = a[a.layer.isna()]
    assert {"loss", "accuracy", "lr", "val_loss", "val_accuracy", "diverged"} <= set(glob.metric)
    assert glob[glob.metric == "diverged"].value.tolist() == [0.0]


def test_run_toy_resumes_after_a_kill(tmp_path, monkeypatch):
    full = run_toy({**TINY_TOY, "checkpoint_every": 8}, seed=0)
    calls = {"n": 0}
    original = SeededBatches.__next__

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == 13:  # killed during update 13, after the checkpoint at update 8
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(SeededBatches, "__next__", dying_next)
    with pytest.raises(KeyboardInterrupt):
        run_toy({**TINY_TOY, "checkpoint_every": 8}, seed=0, checkpoint_dir=tmp_path)
    monkeypatch.setattr(SeededBatches, "__next__", original)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["update"] == 8
    resumed = run_toy({**TINY_TOY, "checkpoint_every": 8}, seed=0, checkpoint_dir=tmp_path)
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)


# ---------------------------------------------------------------- the training loop


def _regression_setup(seed: int = 0, dropout: float = 0.2):
    """A small MLP with dropout (so the global RNG matters), Adam, and a seeded data stream."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    w = torch.randn(4, 1, generator=torch.Generator().manual_seed(99))

    def sample(g: torch.Generator):
        x = torch.randn(8, 4, generator=g)
        return x, x @ w

    def step_fn(m: nn.Module, batch):
        x, y = batch
        loss = F.mse_loss(m(x), y)
        return {"loss": loss, "abs_err": (m(x) - y).abs().mean()}

    return model, opt, SeededBatches(sample, seed=5), step_fn


def _config(tmp_path=None, **kw) -> TrainConfig:
    base = {"max_updates": 30, "log_every": 5, "device": "cpu", "progress": False}
    if tmp_path is not None:
        base.update(checkpoint_dir=tmp_path / "ckpt", log_path=tmp_path / "log.jsonl")
    return TrainConfig(**{**base, **kw})


def test_resume_gives_bit_identical_parameters(tmp_path):
    model, opt, data, step_fn = _regression_setup()
    schedule = schedules.linear_warmup(0.01, 10)
    ref = Trainer(model, step_fn, opt, data, _config(), lr_schedule=schedule).fit()
    ref_params = [p.detach().clone() for p in model.parameters()]

    class Killed(Exception):
        pass

    def kill_at_17(t: int) -> None:
        if t == 17:
            raise Killed

    model, opt, data, step_fn = _regression_setup()
    with pytest.raises(Killed):
        Trainer(model, step_fn, opt, data, _config(tmp_path, checkpoint_every=7), lr_schedule=schedule,
                before_update=[kill_at_17]).fit()
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["update"] == 14

    model, opt, data, step_fn = _regression_setup(seed=123)  # other init and data seed: all overwritten
    result = Trainer(model, step_fn, opt, data, _config(tmp_path, checkpoint_every=7), lr_schedule=schedule).fit()
    assert result.resumed_from == 14 and result.status == "completed"
    for p, q in zip(model.parameters(), ref_params):
        assert torch.equal(p.detach(), q)
    assert result.rows == ref.rows  # log rows (averages over intervals spanning the kill) included
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == result.rows

    again = Trainer(*_regression_setup()[:1], step_fn, opt, data, _config(tmp_path, checkpoint_every=7)).fit()
    assert again.resumed_from == 30 and again.rows == result.rows  # a finished run returns at once


def test_checkpoint_of_another_run_is_not_resumed(tmp_path):
    model, opt, data, step_fn = _regression_setup()
    Trainer(model, step_fn, opt, data, _config(tmp_path, fingerprint="a")).fit()
    model, opt, data, step_fn = _regression_setup()
    result = Trainer(model, step_fn, opt, data, _config(tmp_path, fingerprint="b")).fit()
    assert result.resumed_from == 0 and result.updates == 30
    assert (tmp_path / "ckpt" / "last.stale.pt").exists()


def test_nan_loss_stops_and_marks_diverged(tmp_path):
    model, opt, data, _ = _regression_setup(dropout=0.0)

    def step_fn(m: nn.Module, batch):
        x, y = batch
        loss = F.mse_loss(m(x), y)
        return loss * float("nan") if step_fn.calls >= 12 else loss

    step_fn.calls = 0

    def count(t: int) -> None:
        step_fn.calls = t

    result = Trainer(model, step_fn, opt, data, _config(tmp_path, checkpoint_every=5),
                     before_update=[count]).fit()
    assert result.status == "diverged" and result.diverged
    assert result.updates == 15  # detected at the next log step
    table = result.table()
    assert table[table.metric == "diverged"].value.tolist() == [1.0]
    assert table[table.metric == "first_nonfinite_update"].value.tolist() == [12.0]
    losses = table[table.metric == "loss"].set_index("update").value
    assert np.isfinite(losses.loc[[1, 5, 10]]).all() and np.isnan(losses.loc[15])
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["update"] == 10  # never a checkpoint after the NaN
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == len(result.rows)


def test_validation_tracks_the_best_checkpoint(tmp_path):
    model, opt, data, step_fn = _regression_setup(dropout=0.0)
    scores = iter([3.0, 1.0, 2.0, 0.5, 4.0, 0.7])
    result = Trainer(model, step_fn, opt, data, _config(tmp_path, eval_every=5, higher_is_better=False),
                     validate=lambda m: next(scores)).fit()
    assert result.best_score == 0.5 and result.best_update == 20
    best = torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True)
    assert best["update"] == 20 and best["score"] == 0.5
    assert result.table().query("metric == 'val_score'").value.tolist() == [3.0, 1.0, 2.0, 0.5, 4.0, 0.7]


def test_hooks_see_gradients_and_rows_are_tidy():
    model, opt, data, step_fn = _regression_setup(dropout=0.0)

    def hook(ctx):
        assert ctx.model[0].weight.grad is not None
        return [{"layer": 1, "metric": "grad_w1", "value": ctx.model[0].weight.grad.norm()}]

    result = Trainer(model, step_fn, opt, data, _config(log_every=10, log_first=False), hooks=[hook]).fit()
    t = result.table()
    assert set(t.columns) == {"update", "metric", "value", "layer"}
    assert t[t.metric == "grad_w1"]["update"].tolist() == [10, 20, 30]
    assert set(t.metric) == {"loss", "abs_err", "grad_w1", "diverged"}
    assert t.value.map(type).eq(float).all()


def test_schedules():
    s = schedules.inverse_sqrt(7e-4, warmup=6000, init_lr=1e-7)
    assert s(0) == pytest.approx(1e-7) and s(6000) == pytest.approx(7e-4)
    assert s(24000) == pytest.approx(3.5e-4)
    d = schedules.step_decay(2e-2, [100, 200])
    assert [d(99), d(100), d(200)] == pytest.approx([2e-2, 2e-3, 2e-4])
    w = schedules.linear_warmup(0.01, 4)
    assert [w(1), w(4), w(10)] == pytest.approx([0.0025, 0.01, 0.01])


# ---------------------------------------------------------------- aggregation, check, plot


def test_fig05_aggregation_check_and_plot():
    raw = pd.concat([run_toy(TINY_TOY, seed=s) for s in range(2)], ignore_index=True)
    table = aggregate.fig05(raw)
    ratio = table[(table.metric == "eff_lr_ratio") & (table.matrix == "wq/wv")]
    assert len(ratio) == 2 * 5 and (ratio.n_seeds == 2).all()
    q = raw[(raw.metric == "eff_lr_median") & (raw["step"] == 24) & (raw.layer == 1)]
    by = q.set_index(["seed", "matrix"]).value
    expected = np.mean([by[(s, "wq")] / by[(s, "wv")] for s in range(2)])
    got = ratio[(ratio.layer == 1) & (ratio["step"] == 24)]["mean"].iloc[0]
    assert got == pytest.approx(expected)
    rows = checks.fig05(table)
    assert any("accuracy" in c.name and not c.applicable for c in rows)  # 24 updates: reported only
    assert all(math.isfinite(c.measured) for c in rows)

    from sigprop.plotting import fig05
    from sigprop.plotting.style import Style

    fig = fig05.plot({"fig05": table}, Style())
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3


def test_to_device_walks_containers_and_dataclasses():
    import dataclasses

    from sigprop.train import to_device

    @dataclasses.dataclass
    class Pair:
        x: torch.Tensor
        n: int

    out = to_device({"a": (torch.ones(1), [Pair(torch.zeros(2), 3)])}, torch.device("cpu"))
    assert isinstance(out["a"], tuple) and isinstance(out["a"][1][0], Pair) and out["a"][1][0].n == 3


def test_pick_device_falls_back_to_the_cpu_with_a_warning(monkeypatch, caplog):
    from sigprop.train import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING", logger="sigprop.train.loop"):
        assert pick_device("cuda", "decoding") == torch.device("cpu")
    assert "device cuda requested but not available: decoding on the CPU" in caplog.text
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda") and pick_device("cuda") == torch.device("cuda")


# ---------------------------------------------------------------- a corrupt checkpoint


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_corrupt_checkpoint_is_moved_aside_and_training_restarts(damage, tmp_path, caplog):
    model, opt, data, step_fn = _regression_setup()
    Trainer(model, step_fn, opt, data, _config(tmp_path, max_updates=10, checkpoint_every=5)).fit()
    last = tmp_path / "ckpt" / "last.pt"
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else bytes(range(256)) * 40)
    model, opt, data, step_fn = _regression_setup()
    with caplog.at_level(logging.WARNING, logger="sigprop.train.loop"):
        result = Trainer(model, step_fn, opt, data, _config(tmp_path, max_updates=10, checkpoint_every=5)).fit()
    assert result.resumed_from == 0 and result.status == "completed" and result.updates == 10
    kept = tmp_path / "ckpt" / "last.corrupt.pt"
    assert kept.exists() and kept.read_bytes() != whole
    text = caplog.text
    assert str(last) in text and "cannot be read" in text and "update 0" in text
    assert "weights_only=False" not in text
