"""sigprop.params: the residual scales' order and labels, and the text values of configs."""

from __future__ import annotations

import pytest

from sigprop.params import (
    RESIDUAL_SCALES,
    is_depth_scaled,
    residual_scale_label,
    residual_scale_order,
    resolve_alpha,
)


@pytest.mark.parametrize("depth", [16, 25, 64])
def test_the_residual_scales_run_from_the_largest_to_the_smallest_for_deep_stacks(depth):
    values = [resolve_alpha(a, depth) for a in RESIDUAL_SCALES]
    assert values == sorted(values, reverse=True)  # at L = 16, 1/sqrt(L) = 0.25: a tie


def test_a_shallow_stack_breaks_the_order_which_is_why_it_is_stated_for_l_at_least_16():
    values = [resolve_alpha(a, 4) for a in RESIDUAL_SCALES]  # 1/sqrt(4) = 0.5 > 0.25
    assert values != sorted(values, reverse=True)


def test_order_puts_known_scales_first_then_the_others_sorted_each_once():
    assert residual_scale_order(["2", "1/sqrt(L)", "0.1", "1", "1/sqrt(L)"]) == ["1", "1/sqrt(L)", "0.1", "2"]
    assert residual_scale_order([]) == []


def test_labels_name_alpha_for_known_and_unknown_scales():
    assert residual_scale_label("1/sqrt(L)") == r"$\alpha=1/\sqrt{L}$"
    assert residual_scale_label("0.5") == r"$\alpha=0.5$"
    assert residual_scale_label("2") == r"$\alpha=2$"


@pytest.mark.parametrize(("text", "scaled"), [("1/sqrt(L)", True), ("1 / sqrt(L)", True), ("1/sqrtL", True),
                                              ("1", False), (0.5, False), ("1/sqrt(d)", False)])
def test_depth_scaled_spellings_are_those_resolve_alpha_reads_as_one_over_root_l(text, scaled):
    assert is_depth_scaled(text) is scaled
    if scaled:
        assert resolve_alpha(text, 9) == pytest.approx(1 / 3)
