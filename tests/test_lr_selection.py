"""The lr selection (sigprop.tasks.translation.selection, docs/translation.md) and fairseq's update counter.

The job tests train a one-block model of width 16 for a few dozen updates on a synthetic copy corpus (seconds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import copy_corpus

from sigprop.analysis import lr_selection as figS8
from sigprop.config import load_config
from sigprop.tasks.translation import selection
from sigprop.tasks.translation.job import fingerprint, train, train_prefix
from sigprop.tasks.translation.plan import Run, check_config, run_spec
from sigprop.tasks.translation.task import TranslationTask

RULE = {"fraction": 0.4, "tie_tolerance": 0.0, "ties": "smaller_lr", "extend_edge": True}

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the rule (pure)


def test_lowest_loss_wins_inside_the_grid_without_extension():
    d = selection.decide({0.05: 7.0, 0.1: 6.5, 0.2: 6.9}, RULE)
    assert d.winner == 0.1 and d.at_edge is None and d.extension is None and d.tied == [0.1]


@pytest.mark.parametrize(("ties", "winner"), [("smaller_lr", 0.05), ("larger_lr", 0.1)])
def test_ties_within_the_tolerance_go_by_the_tie_rule(ties, winner):
    losses = {0.05: 6.50, 0.1: 6.52, 0.2: 6.9}
    assert selection.decide(losses, {**RULE, "ties": ties}).winner == 0.05  # 0.02 apart: no tie at tolerance 0
    d = selection.decide(losses, {**RULE, "ties": ties, "tie_tolerance": 0.05})
    assert d.tied == [0.05, 0.1] and d.winner == winner
    exact = selection.decide({0.05: 6.5, 0.1: 6.5, 0.2: 6.9}, {**RULE, "ties": ties})  # tolerance 0: exact ties
    assert exact.winner == winner


def test_an_edge_winner_proposes_one_geometric_step_beyond_once():
    high = selection.decide({0.05: 7.0, 0.1: 6.8, 0.2: 6.6}, RULE)
    assert high.at_edge == "high" and high.extension == 0.4
    low = selection.decide({1e-3: 5.0, 2e-3: 5.5, 4e-3: 6.0}, RULE)
    assert low.at_edge == "low" and low.extension == 5e-4
    again = selection.decide({0.05: 7.0, 0.1: 6.8, 0.2: 6.6, 0.4: 6.5}, RULE, extended=True)
    assert again.winner == 0.4 and again.at_edge == "high" and again.extension is None  # once only
    assert selection.decide({0.05: 7.0, 0.1: 6.8, 0.2: 6.6}, {**RULE, "extend_edge": False}).extension is None


def test_a_diverged_point_never_wins_and_all_diverged_is_an_error():
    d = selection.decide({0.1: 6.8, 0.2: math.inf, 0.4: math.nan}, RULE)
    assert d.winner == 0.1 and d.at_edge == "low"  # the grid's edge, diverged points included
    with pytest.raises(ValueError, match="every grid point diverged"):
        selection.decide({0.2: math.inf, 0.4: math.nan}, RULE)


def test_select_update_and_lr_names_round_trip():
    assert selection.select_update({"updates": 800}, RULE) == 320
    assert selection.select_update({"updates": 2000}, RULE) == 800
    for lr in (1e-3, 2e-3, 4e-3, 0.05, 0.1, 0.2, selection.extension_point([2e-3, 4e-3], "high")):
        assert float(selection.lr_name(lr)) == lr
    assert selection.extension_point([2e-3, 4e-3], "high") == 8e-3


# ---------------------------------------------------------------- configs


def test_a_grid_of_one_is_todays_single_lr(repo_root):
    config = load_config(repo_root / "config" / "paper.yaml")
    run = Run("adam_postln", 6, 0)
    single = run_spec(config, run)
    config["translation"]["optimizers"]["adam"]["lr"] = [single["optimizer"]["lr"]]
    one = run_spec(config, run)
    assert one == single and "selection" not in one  # same spec, so the same fingerprint and the same run
    assert fingerprint(one, code="c") == fingerprint(single, code="c")
    assert selection.resolve_spec(one, None) == single


def test_a_grid_needs_the_selected_lr_and_lr_from_names_a_method_of_the_same_optimizer(repo_root):
    config = load_config(repo_root / "config" / "cpu.yaml")
    spec = run_spec(config, Run("sgd_temperature", 2, 1))
    assert spec["optimizer"]["lr"] == [0.05, 0.1, 0.2] and spec["selection"] == RULE
    with pytest.raises(ValueError, match="selected lr"):
        selection.resolve_spec(spec, None)
    assert selection.lr_source(config, "adam_postln_scaled") == "adam_postln"
    assert selection.selected_methods(config, ["adam_postln_scaled", "tfixup"]) == ["adam_postln", "tfixup"]
    config["methods"]["adam_postln_scaled"]["lr_from"] = "sgd_postln"
    with pytest.raises(ValueError, match="lr_from = 'sgd_postln'.*same optimizer"):
        check_config(config)


def test_quick_exercises_the_selection_for_one_method(repo_root):
    config = load_config(repo_root / "config" / "quick.yaml")
    methods = config["translation"]["table1"]["methods"]
    assert selection.selected_methods(config, methods) == ["tfixup"]
    assert "figS8" in config["figures"]


# ---------------------------------------------------------------- the jobs


@pytest.fixture(scope="module")
def copy_data(tmp_path_factory) -> Path:
    """A smaller copy corpus than conftest's (48 training pairs): the selection tests train several runs."""
    return copy_corpus(tmp_path_factory.mktemp("copydata"), sizes=(48, 6, 4), max_words=6)


def grid_spec(lr=(0.05, 0.1), **rule) -> dict:
    """Seed 0 of a tiny SGD-temperature run whose optimiser has an lr grid (dropout on: RNG state matters)."""
    return {
        "config": "test",
        "dataset": "iwslt14-mini",
        "method": "sgd_temperature",
        "layers": 1,
        "seed": 0,
        "device": "cpu",
        "method_config": {"label": "SGD temperature", "optimizer": "sgd", "norm": "none", "alpha": "1/sqrt(L)",
                          "trainable_alpha": True, "tau": 8.5, "tau_warmup": 4},
        "optimizer": {"name": "sgd", "kind": "sgd", "lr": list(lr), "momentum": 0.0, "weight_decay": 1e-3,
                      "updates": 25, "schedule": {"kind": "step", "gamma": 0.1, "milestones": [0.4, 0.8]}},
        "model": {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.1, "attn_dropout": 0.0, "act_dropout": 0.0,
                  "bias": True, "max_positions": 64},
        "training": {"max_tokens": 64, "label_smoothing": 0.1, "log_every": 3, "valid_every": 7,
                     "checkpoint_every": 7, "probe_sentences": 2},
        "selection": {**RULE, **rule},
        "evaluation": {"beam": 1, "max_len_a": 1.0, "max_len_b": 5, "batch_sentences": 4},
    }


def _prefixes(spec: dict, data: Path, root: Path) -> list[Path]:
    paths = []
    for lr in selection.lr_grid(spec["optimizer"]):
        out = root / f"lr~{selection.lr_name(lr)}"
        train_prefix(spec, data, out, lr)
        paths.append(out / selection.PREFIX_SUMMARY)
    return paths


def test_the_winner_continued_from_its_checkpoint_equals_a_straight_run(copy_data, tmp_path):
    spec = grid_spec(extend_edge=False)
    points = _prefixes(spec, copy_data, tmp_path / "select")
    prefix = json.loads(points[0].read_text())["summary"]
    assert prefix["select_update"] == 10 and prefix["updates"] == 10 and math.isfinite(prefix["select_valid_loss"])
    sel = selection.select(spec, points, copy_data, tmp_path / "select" / "selection.json", train_prefix)
    losses = {p["lr"]: p["valid_loss"] for p in sel["points"]}
    assert sel["lr"] == min(losses, key=losses.get) and sel["extension"] is None
    table = pd.read_parquet(tmp_path / "select" / "selection.parquet")
    assert len(table) == 2 and table.winner.sum() == 1

    continued = train(spec, copy_data, tmp_path / "continued", selection_file=tmp_path / "select" / "selection.json")
    assert continued["resumed_from"] == 10 and continued["lr"] == sel["lr"]
    straight_spec = {**spec, "optimizer": {**spec["optimizer"], "lr": [sel["lr"]]}}  # a grid of one: no stop
    straight_spec["selection"] = spec["selection"]  # the same validations (at the selection update too)
    straight = train(straight_spec, copy_data, tmp_path / "straight")
    assert straight["resumed_from"] == 0
    a, b = (torch.load(tmp_path / d / "checkpoint_best.pt", weights_only=True) for d in ("continued", "straight"))
    assert a["update"] == b["update"] and a["score"] == b["score"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    la, lb = (pd.read_parquet(tmp_path / d / "log.parquet") for d in ("continued", "straight"))
    pd.testing.assert_frame_equal(la, lb)
    assert (la[(la.metric == "valid_loss")].step.tolist()) == [0, 7, 10, 14, 21, 25]  # init, every 7, select, end

    # seed 1 trains at the selected lr from update 0
    other = train({**spec, "seed": 1}, copy_data, tmp_path / "seed1", selection_file=tmp_path / "select" /
                  "selection.json")
    assert other["resumed_from"] == 0 and other["lr"] == sel["lr"]


def test_an_edge_winner_trains_one_extension_and_fig_s8_reads_the_selection(copy_data, tmp_path, monkeypatch):
    spec = grid_spec(lr=(0.02, 0.04))
    points = _prefixes(spec, copy_data, tmp_path / "select")
    sel = selection.select(spec, points, copy_data, tmp_path / "select" / "selection.json", train_prefix)
    first = min(((p["lr"], p["valid_loss"]) for p in sel["points"] if not p["extension"]), key=lambda x: x[1])[0]
    assert sel["first_winner"] == first  # two points: the winner is at an edge, so one point beyond is tried
    assert sel["extension"] == (0.08 if first == 0.04 else 0.01)
    assert len(sel["points"]) == 3 and sum(p["extension"] for p in sel["points"]) == 1
    assert (tmp_path / "select" / f"lr~{selection.lr_name(sel['extension'])}" / selection.PREFIX_STATE).exists()
    assert Path(sel["checkpoint"]).parent.name == f"lr~{selection.lr_name(sel['lr'])}"

    table = figS8.aggregate(pd.read_parquet(tmp_path / "select" / "selection.parquet"))
    assert table.lr.is_monotonic_increasing and table.winner.sum() == 1
    [check] = figS8.checks(table)
    chosen = sel["lr"]
    assert check.passed == (min(table.lr) < chosen < max(table.lr)) and check.measured == 0.0
    moved = table.assign(selected_lr=table.lr.max(), winner=table.lr == table.lr.max())
    assert not figS8.checks(moved)[0].passed  # an edge winner fails the coverage check


# ---------------------------------------------------------------- fairseq's update counter


class FairseqInverseSqrt:
    """fairseq's ``InverseSquareRootSchedule`` (fairseq/optim/lr_scheduler/inverse_square_root_schedule.py)."""

    def __init__(self, lr: float, warmup_updates: int, warmup_init_lr: float) -> None:
        self.lr_step = (lr - warmup_init_lr) / warmup_updates
        self.decay_factor = lr * warmup_updates**0.5
        self.warmup_updates, self.warmup_init_lr = warmup_updates, warmup_init_lr
        self.lr = warmup_init_lr

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            self.lr = self.warmup_init_lr + num_updates * self.lr_step
        else:
            self.lr = self.decay_factor * num_updates**-0.5
        return self.lr


def fairseq_lrs(sched: FairseqInverseSqrt, n: int) -> list[float]:
    """The lr each of updates 1..n uses in fairseq's trainer: ``lr_step_update()`` at the start (num_updates
    0), then ``train_step`` updates with the current lr and calls ``step_update(num_updates)`` after it."""
    used, num_updates = [], 0
    sched.step_update(num_updates)
    for _ in range(n):
        used.append(sched.lr)  # the optimizer step of this update
        num_updates += 1
        sched.step_update(num_updates)
    return used


def test_the_lr_and_tau_of_each_update_follow_fairseqs_counter(copy_data):
    spec = grid_spec(lr=(0.05,))
    spec.pop("selection")
    spec["optimizer"] = {"name": "adam", "kind": "adam", "lr": 5e-3, "betas": [0.9, 0.98], "updates": 12,
                         "schedule": {"kind": "inverse_sqrt", "warmup_updates": 4, "warmup_init_lr": 1e-7}}
    task = TranslationTask(selection.resolve_spec(spec, None), copy_data)
    ours = task.lr_schedule()
    ref = fairseq_lrs(FairseqInverseSqrt(5e-3, 4, 1e-7), 12)
    assert [ours(t) for t in range(1, 13)] == pytest.approx(ref, rel=1e-12)
    assert ours(1) == 1e-7  # update 1 uses the lr of update 0 (the warm-up's initial lr)
    assert ours(2) == pytest.approx(1e-7 + (5e-3 - 1e-7) / 4)
    assert ours(5) == pytest.approx(5e-3)  # the warm-up's end: num_updates = 4 after update 4
    # tau: update t uses tau_warmup's value after t - 1 updates (the same counter)
    model = task.build_model()
    setter = task.tau_setter(model)
    taus = []
    for t in (1, 2, 5, 6):
        setter(t)
        taus.append(next(m.tau for m in model.modules() if hasattr(m, "tau")))
    assert taus == pytest.approx([0.0, 8.5 / 4, 8.5, 8.5])


# ---------------------------------------------------------------- the results page


def test_record_results_writes_the_selection_and_the_wall_time_from_the_log(tmp_path):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "tools" / "record_results.py"
    spec = importlib.util.spec_from_file_location("record_results", path)
    record = importlib.util.module_from_spec(spec)
    sys.modules["record_results"] = record
    spec.loader.exec_module(record)
    sel = {"dataset": "iwslt14-mini", "method": "sgd_temperature", "method_label": "SGD temperature",
           "optimizer": "sgd", "layers": 2, "select_update": 800, "updates": 2000, "rule": RULE, "lr": 0.2,
           "reason": "lowest validation loss 6.5800; at the high edge: one point beyond, lr 0.4",
           "points": [{"lr": lr, "valid_loss": v, "diverged": False, "extension": lr == 0.4, "winner": lr == 0.2}
                      for lr, v in ((0.05, 7.0), (0.1, 6.8), (0.2, 6.58), (0.4, math.inf))]}
    run = tmp_path / "run"
    table = figS8.aggregate(selection.selection_rows(sel))
    (run / "results" / "aggregated").mkdir(parents=True)
    table.to_parquet(run / "results" / "aggregated" / "figS8.parquet")
    (run / "results" / "benchmarks" / "translation_select" / "m").mkdir(parents=True)
    (run / "results" / "benchmarks" / "translation_select" / "m" / "lr~0.1.tsv").write_text("s\n40.0\n")
    log = tmp_path / "snakemake.log"
    log.write_text("[Fri Dec  4 04:03:28 2026]\nrule x:\n[Fri Dec  4 05:10:58 2026]\n54 of 54 steps (100%) done\n")
    page = tmp_path / "results.md"
    record.main(["--run", str(run), "--page", str(page), "--snakemake-log", str(log), "--load", "load 8"])
    text = page.read_text()
    assert "**67.5 min** wall; load: load 8." in text and "| lr grid point | 1 | 40 |" in text
    assert "| SGD temperature | sgd | 800 of 2000 | 0.2 | 6.58 | selected |" in text
    assert "| SGD temperature | sgd | 800 of 2000 | 0.4 | inf | edge point |" in text
    assert "- SGD temperature: lowest validation loss 6.5800; at the high edge: one point beyond, lr 0.4." in text


# ---------------------------------------------------------------- Table 1's claims: paired, three outcomes


def _table1(bleu: dict[str, list[float]]):
    from sigprop.analysis import aggregate

    labels = {"sgd_postln": "SGD POST-LN", "sgd_resscale": "SGD res-scale", "sgd_temperature": "SGD temperature",
              "adam_postln": "Adam POST-LN"}
    rows = [{"dataset": "iwslt14", "method": m, "method_label": labels[m], "layers": 2, "seed": s, "diverged": False,
             "bleu": b, "sacrebleu_detok": b, "best_valid_loss": 5.0, "valid_loss_init": 9.7, "lr": 0.1,
             "test_sentences": 100, "beam": 5, "updates": 800} for m, vals in bleu.items() for s, b in enumerate(vals)]
    return aggregate.table1(pd.DataFrame(rows))


def _claim(table, needle: str):
    from sigprop.analysis import claims

    [row] = [c for c in claims.table1(table) if needle in c.name]
    return row


def test_table1_carries_the_lr_and_the_update_0_loss():
    t = _table1({"sgd_postln": [1.0, 2.0], "adam_postln": [5.0, 6.0]})
    assert set(t.lr) == {0.1} and set(t.valid_loss_init) == {9.7}


def test_the_sgd_order_is_a_paired_test_with_three_outcomes():
    # seed effects larger than the gaps: a paired test sees the order, per-seed gaps 0.5 and 0.6
    ordered = {"sgd_temperature": [3.0, 9.1, 6.0], "sgd_resscale": [2.5, 8.6, 5.5], "sgd_postln": [2.0, 8.0, 5.0],
               "adam_postln": [3.1, 9.0, 6.2]}
    row = _claim(_table1(ordered), "order")
    assert row.status == "passed" and row.measured == pytest.approx(0.5)
    reversed_ = {**ordered, "sgd_postln": [3.5, 9.7, 6.5]}  # POST-LN above res-scale by 1 at every seed
    assert _claim(_table1(reversed_), "order").status == "failed"
    # per-seed gaps temperature - res-scale +0.1, +1.0, +0.1 and res-scale - POST-LN +0.9, -0.4, +0.9: three seeds
    # show neither the order nor its reverse
    noisy = {**ordered, "sgd_resscale": [2.9, 8.1, 5.9], "sgd_postln": [2.0, 8.5, 5.0]}
    assert _claim(_table1(noisy), "order").status == "undecided"
    one = {m: v[:1] for m, v in ordered.items()}
    row = _claim(_table1(one), "order")
    assert row.status == "undecided" and "needs >= 2 runs" in row.tolerance


def test_keeping_up_with_adam_is_a_paired_equivalence_with_three_outcomes():
    base = {"sgd_resscale": [1.0, 1.0, 1.0], "sgd_postln": [0.0, 0.0, 0.0]}
    within = {**base, "sgd_temperature": [3.0, 9.1, 6.0], "adam_postln": [3.1, 9.0, 6.2]}
    assert _claim(_table1(within), "within 1 BLEU").status == "passed"
    far = {**base, "sgd_temperature": [1.0, 7.1, 4.0], "adam_postln": [3.1, 9.0, 6.2]}  # ~2 BLEU below
    assert _claim(_table1(far), "within 1 BLEU").status == "failed"
    edge = {**base, "sgd_temperature": [2.0, 8.0, 6.0], "adam_postln": [3.1, 9.0, 6.2]}  # differences -1.1, -1, -0.2
    assert _claim(_table1(edge), "within 1 BLEU").status == "undecided"
    untrained = {**base, "sgd_temperature": [0.0, 0.1, 0.0], "adam_postln": [0.2, 0.1, 0.0]}
    row = _claim(_table1(untrained), "within 1 BLEU")
    assert row.status == "undecided" and "not testable" in row.tolerance


def test_fig_s8_draws_one_panel_per_optimiser_and_rings_each_winner():
    from sigprop.plotting import figS8 as plot_s8
    from sigprop.plotting.style import Style

    def rows(method, opt, points, lr):
        sel = {"dataset": "iwslt14-mini", "method": method, "method_label": method, "optimizer": opt, "layers": 2,
               "select_update": 320, "updates": 800, "rule": RULE, "lr": lr, "reason": "r",
               "points": [{"lr": x, "valid_loss": v, "diverged": not math.isfinite(v), "extension": False,
                           "winner": x == lr} for x, v in points]}
        return selection.selection_rows(sel)

    t = figS8.aggregate(pd.concat([rows("a", "adam", [(1e-3, 6.0), (2e-3, 5.5), (4e-3, 5.8)], 2e-3),
                                   rows("b", "adam", [(1e-3, 6.1), (2e-3, 5.9), (4e-3, math.inf)], 2e-3),
                                   rows("s", "sgd", [(0.05, 7.0), (0.1, 6.8), (0.2, 6.6)], 0.2)]))
    fig = plot_s8.plot({"figS8": t}, Style())
    axes = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(axes) == 2  # adam, sgd
    rings = [ln for ax in axes for ln in ax.lines if ln.get_markersize() == 9]  # one ring per method
    assert sorted(float(ln.get_xdata()[0]) for ln in rings) == [2e-3, 2e-3, 0.2]
    crosses = [ln for ln in axes[0].lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and float(crosses[0].get_xdata()[0]) == 4e-3  # the diverged point, drawn at the top
