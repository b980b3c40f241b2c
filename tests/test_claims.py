"""The paper's translation claims as checks (sigprop.analysis.claims): each passes on a table where the claim
holds and fails on one where it does not; required on iwslt14 only, reported as a finding elsewhere.

The tables are built by the real aggregation (sigprop.analysis.aggregate) from hand-made eval and log rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sigprop.analysis import aggregate, checks, claims

LABELS = {
    "sgd_postln": "SGD POST-LN",
    "sgd_resscale": "SGD res-scale",
    "sgd_temperature": "SGD temperature",
    "adam_postln": "Adam POST-LN",
    "adam_postln_scaled": "Adam POST-LN, 1/sqrt(L)",
}


def eval_rows(bleu: dict[tuple[str, int], float], dataset: str = "iwslt14", seeds: int = 3,
              diverged: set[tuple[str, int, int]] = frozenset()) -> pd.DataFrame:
    """One eval row per (method, layers) and seed: BLEU = the given value + N(0, 0.1^2) noise (NaN where diverged)."""
    rows = []
    rng = np.random.default_rng(0)
    for (method, layers), value in bleu.items():
        for seed in range(seeds):
            div = (method, layers, seed) in diverged
            noise = 0.1 * rng.standard_normal()
            rows.append({"dataset": dataset, "method": method, "method_label": LABELS[method], "layers": layers,
                         "seed": seed, "diverged": div, "bleu": np.nan if div else value + noise,
                         "sacrebleu_detok": value, "best_valid_loss": 4.0, "test_sentences": 1000, "beam": 5,
                         "updates": 3000})
    return pd.DataFrame(rows)


def by_name(rows: list, needle: str):
    hits = [c for c in rows if needle in c.name]
    assert len(hits) == 1, [c.name for c in rows]
    return hits[0]


TABLE1_RIGHT = {("sgd_postln", 6): 31.4, ("sgd_resscale", 6): 32.8, ("sgd_temperature", 6): 35.7,
                ("adam_postln", 6): 35.4}


def test_table1_order_and_sgd_temperature_against_adam():
    right = claims.table1(aggregate.table1(eval_rows(TABLE1_RIGHT)))
    assert by_name(right, "order").passed and by_name(right, "within 1 BLEU").passed
    assert all(c.applicable and "[iwslt14; 6+6 blocks, 3 run(s) per method, 3000 updates" in c.name for c in right)
    swapped = {**TABLE1_RIGHT, ("sgd_resscale", 6): 31.0}  # res-scale below POST-LN
    assert not by_name(claims.table1(aggregate.table1(eval_rows(swapped))), "order").passed
    far = {**TABLE1_RIGHT, ("adam_postln", 6): 37.0}  # 1.3 BLEU apart
    assert not by_name(claims.table1(aggregate.table1(eval_rows(far))), "within 1 BLEU").passed
    untrained = {k: 0.0 for k in TABLE1_RIGHT}  # no model translates: "within 1 BLEU" says nothing
    within = by_name(claims.table1(aggregate.table1(eval_rows(untrained))), "within 1 BLEU")
    assert not within.passed and "not testable" in within.tolerance
    one_seed = claims.table1(aggregate.table1(eval_rows(TABLE1_RIGHT, seeds=1)))
    assert not any(c.passed for c in one_seed) and all("needs >= 2 runs" in c.tolerance for c in one_seed)


def test_claims_off_the_papers_data_are_findings_with_dataset_and_scale():
    mini = checks.run_checks({"table1": aggregate.table1(eval_rows(TABLE1_RIGHT, dataset="iwslt14-mini"))})
    order = mini[mini.name.str.contains("order")].iloc[0]
    assert bool(order["pass"]) and not bool(order.applicable)  # shown as passed, not required
    assert "iwslt14-mini" in order["name"] and "finding, not required" in order["name"]
    wrong = checks.run_checks({"table1": aggregate.table1(eval_rows({**TABLE1_RIGHT, ("sgd_resscale", 6): 31.0},
                                                                      dataset="iwslt14-mini"))})
    assert not bool(wrong[wrong.name.str.contains("order")].iloc[0]["pass"])
    assert "0 failed" in checks.summary(wrong)  # a failed finding is not a failure of the run
    full = checks.run_checks({"table1": aggregate.table1(eval_rows({**TABLE1_RIGHT, ("sgd_resscale", 6): 31.0}))})
    assert "2 failed" in checks.summary(full)  # on iwslt14: res-scale's BLEU vs the paper and the order


def log_rows(init: dict[tuple[str, int], float], decay: dict[tuple[str, int], float], seeds: int = 3,
             steps: range = range(0, 1001, 100)) -> pd.DataFrame:
    """Encoder cosine of Fig 1's runs: the output's (layer == layers) is init * exp(-step / decay), the init and
    the decay time varying by seed (N(0, 0.02^2), and 5%); the lower layers' are half of it."""
    rows = []
    rng = np.random.default_rng(1)
    for (method, layers), c0 in init.items():
        for seed in range(seeds):
            start, tau = c0 + 0.02 * rng.standard_normal(), decay[(method, layers)] * (1 + 0.05 * rng.standard_normal())
            for step in steps:
                out = start * np.exp(-step / tau)
                for layer in range(layers + 1):
                    rows.append({"dataset": "iwslt14", "method": method, "method_label": LABELS[method],
                                 "layers": layers, "seed": seed, "diverged": False, "step": step, "metric": "cosine",
                                 "side": "encoder", "layer": layer, "value": out if layer == layers else out / 2})
    return pd.DataFrame(rows)


FIG01_INIT = {("adam_postln", 2): 0.5, ("adam_postln", 4): 0.8, ("adam_postln_scaled", 2): 0.2,
              ("adam_postln_scaled", 4): 0.25}
FIG01_DECAY = {("adam_postln", 2): 200.0, ("adam_postln", 4): 600.0, ("adam_postln_scaled", 2): 150.0,
               ("adam_postln_scaled", 4): 150.0}


def test_fig01_claims():
    right = claims.fig01(aggregate.fig01(log_rows(FIG01_INIT, FIG01_DECAY)))
    assert len(right) == 3 and all(c.passed and c.applicable for c in right), [(c.name, c.measured) for c in right]
    assert "updates: 200, 500" in by_name(right, "take longer").name  # first step <= half the init value
    lower_deep = {**FIG01_INIT, ("adam_postln", 4): 0.4}  # the deeper model starts less aligned
    assert not by_name(claims.fig01(aggregate.fig01(log_rows(lower_deep, FIG01_DECAY))), "rises").passed
    fast_deep = {**FIG01_DECAY, ("adam_postln", 4): 100.0}  # the deeper model lowers it sooner
    assert not by_name(claims.fig01(aggregate.fig01(log_rows(FIG01_INIT, fast_deep))), "take longer").passed
    one_block = {("adam_postln", 1): 0.3, ("adam_postln_scaled", 1): 0.3, **FIG01_INIT}  # 1/sqrt(1) = 1: same model
    decay = {("adam_postln", 1): 100.0, ("adam_postln_scaled", 1): 100.0, **FIG01_DECAY}
    scaled = by_name(claims.fig01(aggregate.fig01(log_rows(one_block, decay))), "1/sqrt(L)")
    assert scaled.passed and "(2 depths;" in scaled.tolerance  # depths 2 and 4 compared, not 1
    high_scaled = {**FIG01_INIT, ("adam_postln_scaled", 4): 0.9}  # 1/sqrt(L) above the unscaled at depth 4
    assert not by_name(claims.fig01(aggregate.fig01(log_rows(high_scaled, FIG01_DECAY))), "1/sqrt(L)").passed


FIG06_RIGHT = {("adam_postln", 2): 30.0, ("adam_postln", 6): 25.0, ("sgd_temperature", 2): 30.0,
               ("sgd_temperature", 6): 29.0}


def test_fig06_claim():
    def check(bleu, **kw):
        return claims.fig06(aggregate.fig06(eval_rows(bleu, **kw)))[0]

    right = check(FIG06_RIGHT)
    assert right.passed and right.measured == pytest.approx(5.0 - 1.0, abs=0.3)
    assert not check({**FIG06_RIGHT, ("adam_postln", 6): 29.5}).passed  # Adam loses less than SGD
    # a diverged deep Adam run counts as BLEU 0: its drop is the largest
    diverged = check({**FIG06_RIGHT, ("adam_postln", 6): 29.5}, diverged={("adam_postln", 6, s) for s in range(3)})
    assert diverged.passed and diverged.measured == pytest.approx(30.0 - 1.0, abs=0.3)


def alpha_rows(growth: float, layers: int = 3) -> pd.DataFrame:
    rows = []
    for step in (0, 100, 200):
        for side in ("encoder", "decoder"):
            for layer in range(layers + 1):
                for metric in ("cosine", "act_norm"):
                    rows.append((step, metric, side, layer, 0.1))
            for layer in range(1, layers + 1):
                for k, metric in enumerate(("alpha1", "alpha2")):
                    rows.append((step, metric, side, layer, 3**-0.5 + growth * step / 200 * (1 + 0.1 * layer + k)))
        rows.append((step, "tau", "", -1, 8.5 * min(1.0, step / 100)))
    df = pd.DataFrame(rows, columns=["step", "metric", "side", "layer", "value"])
    return df.assign(dataset="iwslt14-mini", method="sgd_temperature", method_label="SGD temperature", layers=layers,
                     seed=0, diverged=False)


def test_fig14_claim_and_tau_at_update_0():
    table = aggregate.fig14(alpha_rows(0.2))
    assert float(table[(table.metric == "tau") & (table.step == 0)].value.iloc[0]) == 0.0
    right = claims.fig14(table)[0]
    assert right.passed and not right.applicable and "12 of 12 grew" in right.name
    assert not claims.fig14(aggregate.fig14(alpha_rows(-0.2)))[0].passed  # the alphas shrink
    assert not claims.fig14(aggregate.fig14(alpha_rows(0.0)))[0].passed  # they stay (not trained)
