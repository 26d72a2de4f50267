"""Spread over seeds and the paired bootstrap over test images, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from mbmt.errors import MbmtError
from mbmt.metrics import metrics_from_sums
from mbmt.reporting.statistics import (
    Interval,
    bootstrap_p,
    holm,
    holm_adjusted,
    merge_rows,
    paired_intervals,
    resample_counts,
    smallest_family_p,
    spread,
    task_sums,
)


def test_spread_is_the_mean_and_sample_std():
    two = spread([1.0, 3.0])
    assert (two.mean, two.n) == (2.0, 2) and two.std == pytest.approx(2 ** 0.5)  # ddof=1
    one = spread([5.0])
    assert (one.mean, one.std, one.n) == (5.0, None, 1)
    assert spread([1.0, None]) is None and spread([]) is None and spread([float("nan")]) is None


def depth_rows(abs_sums, counts, index=None) -> dict[str, np.ndarray]:
    abs_sums = np.asarray(abs_sums, dtype=np.float64)
    return {"index": np.arange(len(abs_sums)) if index is None else np.asarray(index),
            "depth_abs_sum": abs_sums, "depth_rel_sum": abs_sums / 2, "depth_count": np.asarray(counts)}


def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    rows = depth_rows(rng.random(20) * 100, rng.integers(50, 100, 20))
    intervals = paired_intervals([rows], [rows], "depth", samples=500, seed=0)
    for interval in intervals.values():
        assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
        assert not interval.significant


def test_a_constant_shift_gives_an_interval_of_that_shift():
    """B's error is A's plus 0.1 m at every pixel, on images whose own errors vary widely: every
    resample differs by exactly -0.1 (paired), so the interval is [-0.1, -0.1], significant."""
    rng = np.random.default_rng(2)
    counts = rng.integers(10, 1000, 30)
    a = depth_rows(rng.random(30) * counts * 3, counts)
    b = depth_rows(a["depth_abs_sum"] + 0.1 * counts, counts)
    interval = paired_intervals([a], [b], "depth", samples=300, seed=0)["abs_err"]
    assert interval.difference == pytest.approx(-0.1, abs=1e-12)
    assert interval.low == pytest.approx(-0.1, abs=1e-12) and interval.high == pytest.approx(-0.1, abs=1e-12)
    assert interval.significant and interval.seeds == 1
    # Every draw is below 0: p = 2 (0 + 1) / (300 + 1), the smallest 300 resamples can give.
    assert interval.p == pytest.approx(2 / 301) and interval.seed_std is None and interval.samples == 300


def test_differences_are_averaged_over_seed_pairs():
    """Seed 0: B worse by 0.1; seed 1: by 0.3 -> difference -0.2 on every resample."""
    counts = np.array([4, 6, 10])
    a0, a1 = depth_rows([1.0, 2.0, 3.0], counts), depth_rows([2.0, 1.0, 5.0], counts)
    b0, b1 = depth_rows(a0["depth_abs_sum"] + 0.1 * counts, counts), depth_rows(a1["depth_abs_sum"] + 0.3 * counts, counts)
    interval = paired_intervals([a0, a1], [b0, b1], "depth", samples=200, seed=3)["abs_err"]
    assert interval.difference == pytest.approx(-0.2) and interval.seeds == 2
    assert interval.low == pytest.approx(-0.2) and interval.high == pytest.approx(-0.2)
    # The seed spread: the sample std of the per-seed differences -0.1 and -0.3: sqrt(0.02) = 0.1414.
    assert interval.seed_std == pytest.approx(0.02 ** 0.5)


def test_a_noisy_difference_has_an_interval_around_it():
    rng = np.random.default_rng(4)
    counts = np.full(200, 100)
    a = depth_rows(rng.random(200) * 100, counts)
    # B: A plus noise per image of mean 0: no true difference.
    b = depth_rows(a["depth_abs_sum"] + rng.normal(0, 5, 200), counts)
    interval = paired_intervals([a], [b], "depth", samples=2000, seed=0)["abs_err"]
    assert interval.low < interval.difference < interval.high
    assert interval.low < 0 < interval.high and not interval.significant
    # The same seed draws the same resamples: the interval is reproducible.
    again = paired_intervals([a], [b], "depth", samples=2000, seed=0)["abs_err"]
    assert again == interval


def test_resampled_sums_are_those_of_the_drawn_images():
    """Each resample's sums weight each image by how often it was drawn: the same as summing the
    drawn images one by one (here for confusion matrices, the semantic rows)."""
    rng = np.random.default_rng(5)
    rows = {"index": np.arange(6), "confusion": rng.integers(0, 9, (6, 13, 13))}
    counts = resample_counts(6, 4, seed=0)
    assert (counts.sum(1) == 6).all()
    summed = task_sums(rows, "semantic", counts)["confusion"]
    for b in range(4):
        drawn = np.repeat(np.arange(6), counts[b])
        assert np.array_equal(summed[b], rows["confusion"][drawn].sum(0))
    miou = metrics_from_sums({"confusion": summed})["semantic"]["miou"]
    assert miou.shape == (4,)


def test_models_on_different_images_are_refused():
    a = depth_rows([1.0, 2.0], [1, 1])
    b = depth_rows([1.0, 2.0], [1, 1], index=[0, 2])
    with pytest.raises(MbmtError, match="same test images"):
        paired_intervals([a], [b], "depth", samples=10, seed=0, label="x vs y")
    with pytest.raises(MbmtError, match="same seeds"):
        paired_intervals([a, a], [a], "depth", samples=10, seed=0, label="x vs y")
    with pytest.raises(MbmtError, match="does not predict semantic"):
        paired_intervals([a], [a], "semantic", samples=10, seed=0)


def test_merge_rows_joins_the_single_task_models():
    depth = depth_rows([1.0], [2])
    normal = {"index": np.arange(1), "normal_angle_sum": np.array([30.0]), "normal_count": np.array([3]),
              "normal_within": np.array([[1, 2, 3]])}
    merged = merge_rows([depth, normal])
    assert set(merged) == {"index", "depth_abs_sum", "depth_rel_sum", "depth_count", "normal_angle_sum",
                           "normal_count", "normal_within"}
    with pytest.raises(MbmtError, match="same images"):
        merge_rows([depth, {**normal, "index": np.array([7])}])


def test_bootstrap_p_by_hand():
    # 9 draws, 2 at or below 0, 8 at or above (the 0 counts on both sides): 2 (2 + 1) / (9 + 1) = 0.6.
    assert bootstrap_p(np.array([-1.0, 0.0, 1, 2, 3, 4, 5, 6, 7])) == pytest.approx(0.6)
    # All 19 above 0: 2 (0 + 1) / 20 = 0.1, never 0.
    assert bootstrap_p(np.arange(1.0, 20.0)) == pytest.approx(0.1)
    # All exactly 0 (identical models): capped at 1; NaN draws are left out.
    assert bootstrap_p(np.zeros(5)) == 1.0
    assert bootstrap_p(np.array([np.nan, 1.0, 2.0, 3.0])) == pytest.approx(0.5)  # 2 (0 + 1) / 4
    assert np.isnan(bootstrap_p(np.array([np.nan])))


def test_holm_by_hand():
    """p = 0.01, 0.04, 0.03, 0.005 (m = 4). Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06;
    0.04 x 1 = 0.04, raised to the running maximum 0.06. At 0.05, the first and the last stay
    significant; unadjusted, all four were."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02]  # a family of one: unchanged
    adjusted = holm([0.01, float("nan"), 0.02])  # NaN: no test, not counted in m
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_significance_is_decided_by_the_holm_adjusted_p():
    """Unadjusted p 0.03 and 0.04 are each significant on their own; in a family with a third
    comparison (p 0.5), Holm gives 0.03 x 3 = 0.09, max(0.09, 0.04 x 2) = 0.09 and 0.5 x 1 = 0.5:
    none is significant any more."""
    family = {"a": Interval(1.0, 0.5, 1.5, 1, 0.03), "b": Interval(1.0, 0.2, 1.8, 1, 0.04),
              "c": Interval(0.1, -1.0, 1.2, 1, 0.5)}
    assert all(interval.significant for interval in list(family.values())[:2])  # each on its own
    adjusted = holm_adjusted(family)
    assert [adjusted[k].p_holm for k in "abc"] == pytest.approx([0.09, 0.09, 0.5])
    assert not any(interval.significant for interval in adjusted.values())
    assert {interval.family for interval in adjusted.values()} == {3} and list(adjusted) == ["a", "b", "c"]
    # 2000 resamples cannot reach 0.05 over 72 comparisons (72 x 2 / 2001 = 0.072); 10000 can.
    assert smallest_family_p(2000, 72) == pytest.approx(144 / 2001) and smallest_family_p(10000, 72) < 0.05
