"""Δm (mbmt.reporting.delta_m) against hand-computed values, the paper's published numbers, seed
pairing, and the report's rendered table."""

from __future__ import annotations

import copy
import re

import pytest
from test_report import ST_NETS, paper_metrics, summary

from mbmt import paper
from mbmt.reporting import document, render, tables
from mbmt.reporting.delta_m import (
    DELTA_M_HEADER,
    DELTA_M_METRICS,
    delta_m,
    delta_m_table,
    measured_delta_m,
    per_seed_delta_m,
    published_delta_m,
)
from mbmt.tasks import metric

MBMT = paper.RESULTS["mbmt_partial"]
ST = paper.RESULTS["efficientps_st"]


def test_delta_m_of_three_metrics_of_both_directions_by_hand():
    over = [metric("semantic", "miou"), metric("depth", "abs_err"), metric("normal", "mean")]
    baseline = {"semantic": {"miou": 20.0}, "depth": {"abs_err": 0.5}, "normal": {"mean": 30.0}}
    model = {"semantic": {"miou": 22.0}, "depth": {"abs_err": 0.45}, "normal": {"mean": 33.0}}
    # Nash-MTL's convention: (-1)^δ_k (M - B) / B with δ_k = 1 where higher is better; lower is better.
    # mIoU, higher better:      -(22 - 20) / 20     = -10 % (an improvement counts negative)
    # abs err, lower better:    +(0.45 - 0.5) / 0.5 = -10 %
    # mean angle, lower better: +(33 - 30) / 30     = +10 %
    # Δm = (-10 - 10 + 10) / 3 = -3.3333 %
    assert delta_m(model, baseline, over) == pytest.approx(-10 / 3)
    assert delta_m(baseline, baseline, over) == 0.0 and str(tables.Num(delta_m(baseline, baseline, over), 2)) == "0.00"
    # Swapping the roles (relative to the other baseline, so not simply -Δm):
    # mIoU -(20 - 22) / 22 = +9.0909 %, abs err +(0.5 - 0.45) / 0.45 = +11.1111 %, angle +(30 - 33) / 33 = -9.0909 %;
    # Δm = (9.0909 + 11.1111 - 9.0909) / 3 = +3.7037 %.
    assert delta_m(baseline, model, over) == pytest.approx((100 * 2 / 22 + 100 * 0.05 / 0.45 - 100 * 3 / 33) / 3)
    assert delta_m(baseline, model, over) == pytest.approx(3.7037, abs=1e-4)
    # A missing metric (normals of a split without ground truth) or a zero baseline: no Δm.
    assert delta_m({**model, "normal": {"mean": None}}, baseline, over) is None
    assert delta_m(model, {**baseline, "depth": {"abs_err": 0.0}}, over) is None
    assert delta_m({"semantic": model["semantic"]}, baseline, over) is None


def test_delta_m_averages_the_nine_evaluation_metrics_not_the_losses():
    assert len(DELTA_M_METRICS) == 9 and all(entry.key != "loss" for entry in DELTA_M_METRICS)
    assert [(m.task, m.key, m.higher_is_better) for m in DELTA_M_METRICS] == [
        ("semantic", "miou", True), ("semantic", "pix_acc", True), ("depth", "abs_err", False),
        ("depth", "rel_err", False), ("normal", "mean", False), ("normal", "median", False),
        ("normal", "within_11_25", True), ("normal", "within_22_5", True), ("normal", "within_30", True)]


def test_delta_m_of_the_papers_mbmt_net_against_its_st_column_by_hand():
    # The paper's MBMT-Net column against its EfficientPS (ST) column, the 9 non-loss metrics of its
    # 12-row table (the three losses are left out):
    #   mIoU          +(24.84   - 21.23  ) / 21.23   = +3.61   / 21.23   = +17.0042 %
    #   pixel acc     +(52.76   - 50.06  ) / 50.06   = +2.70   / 50.06   =  +5.3935 %
    #   abs err       -(0.6076  - 0.6861 ) / 0.6861  = +0.0785 / 0.6861  = +11.4415 %
    #   rel err       -(0.2569  - 0.2913 ) / 0.2913  = +0.0344 / 0.2913  = +11.8091 %
    #   mean angle    -(32.0937 - 32.8582) / 32.8582 = +0.7645 / 32.8582 =  +2.3267 %
    #   median angle  -(26.3163 - 27.2290) / 27.2290 = +0.9127 / 27.2290 =  +3.3519 %
    #   < 11.25 deg   +(21.69   - 20.49  ) / 20.49   = +1.20   / 20.49   =  +5.8565 %
    #   < 22.5 deg    +(43.66   - 42.22  ) / 42.22   = +1.44   / 42.22   =  +3.4107 %
    #   < 30 deg      +(55.62   - 54.22  ) / 54.22   = +1.40   / 54.22   =  +2.5821 %
    #   sum of improvements = +63.1763 %; Δm (Nash-MTL's, lower is better) = -63.1763 / 9 = -7.0196 %
    by_hand = (100 * 3.61 / 21.23 + 100 * 2.70 / 50.06 + 100 * 0.0785 / 0.6861 + 100 * 0.0344 / 0.2913
               + 100 * 0.7645 / 32.8582 + 100 * 0.9127 / 27.2290 + 100 * 1.20 / 20.49 + 100 * 1.44 / 42.22
               + 100 * 1.40 / 54.22) / 9
    assert by_hand == pytest.approx(7.0196, abs=1e-4)
    assert delta_m(MBMT, ST) == pytest.approx(-by_hand, rel=1e-12)
    assert published_delta_m("mbmt_partial") == pytest.approx(-by_hand, rel=1e-12)
    # The same from the paper's own relative-improvement row vs EfficientPS (rounded to 0.01 each):
    # (17.00 + 5.39 + 11.44 + 11.81 + 2.33 + 3.35 + 5.86 + 3.41 + 2.58) / 9 = 63.17 / 9 = 7.0189 %.
    published_terms = [paper.RELATIVE_IMPROVEMENTS["efficientps_st"][(m.task, m.key)] for m in DELTA_M_METRICS]
    assert sum(published_terms) / 9 == pytest.approx(7.0189, abs=1e-4)
    # MT-Net: -(-1.6957 - 2.3572 + 9.8528 + 9.1658 - 3.4691 - 5.7354 - 8.1991 - 5.8503 - 4.3158) / 9 = +1.4004 %.
    assert published_delta_m("mtnet") == pytest.approx(1.4004, abs=1e-4)
    # MTAN: -(-19.2181 + 9.8082 + 13.9193 + 11.8091 + 3.8292 + 6.4967 + 9.7121 + 6.2530 + 5.5699) / 9 = -5.3533 %.
    assert published_delta_m("mtan") == pytest.approx(-5.3533, abs=1e-4)
    assert published_delta_m("efficientps_st") is None and published_delta_m("mbmt_full_scratch") is None


def test_per_seed_delta_m_pairs_seed_s_with_the_st_nets_seed_s():
    # ST-Nets: seed 0 the paper's ST column, seed 1 the paper's MBMT-Net numbers; the model: MBMT-Net's
    # numbers at both seeds. Paired: seed 0 is -7.0196 %, seed 1 exactly 0 (a crossed pairing would
    # give 0 first).
    st_seeds, model_seeds = [ST, MBMT], [MBMT, MBMT]
    values = per_seed_delta_m(model_seeds, st_seeds)
    assert values[0] == pytest.approx(-7.0196, abs=1e-4) and values[1] == 0.0
    # Mean (-7.0196 + 0) / 2 = -3.5098; sample std (ddof=1) of two values d apart is |d| / sqrt(2) = 4.9636.
    spread = measured_delta_m(model_seeds, st_seeds)
    assert spread.value == pytest.approx(values[0] / 2) and spread.std == pytest.approx(-values[0] / 2 ** 0.5)
    assert str(spread) == "-3.51 ± 4.96%"
    # One seed: no spread.
    one = measured_delta_m([MBMT], [ST])
    assert one.std is None and str(one) == "-7.02%"
    with pytest.raises(ValueError, match="pairs seeds"):
        per_seed_delta_m([MBMT, MBMT], [ST])
    assert measured_delta_m([MBMT, {**MBMT, "normal": None}], [ST, ST]) is None  # a seed without Δm


def test_delta_m_table_lists_every_multi_task_model_beside_the_papers():
    metrics = paper_metrics()
    metrics["mbmt_full_scratch"] = copy.deepcopy(metrics["mbmt_partial"])
    table = delta_m_table(metrics, single_task=ST_NETS)
    assert table.name == "delta_m" and table.title == tables.TABLE_TITLES["delta_m"]
    assert [row[0] for row in table.rows] == ["MT-Net DWA", "MBMT-Net DWA (partial)", "MTAN DWA",
                                              "MBMT-Net full, from scratch"]
    ours = table.column(f"{DELTA_M_HEADER} (ours)")
    from_paper = table.column(f"{DELTA_M_HEADER} (computed from the paper's table)")
    # Fed the paper's numbers, ours is the paper's; a model the paper does not have: none published.
    assert [str(cell) for cell in ours] == ["1.40%", "-7.02%", "-5.35%", "-7.02%"]
    assert [str(cell) for cell in from_paper[:3]] == ["1.40%", "-7.02%", "-5.35%"] and from_paper[3] is None
    notes = " ".join(table.notes)
    assert "K = 9" in notes and "SS mIoU ↑" in notes and "DE Abs err ↓" in notes and "losses are left out" in notes
    assert "n=1" in notes
    assert "Nash-MTL's definition" in notes and "Lower is better" in notes and "LibMTL's Δp" in notes
    # Rendered: the value in Markdown, HTML and CSV (whole), and in the index with the other tables.
    markdown = render.to_markdown(table)
    assert "| MBMT-Net DWA (partial) | -7.02% | -7.02% |" in markdown
    assert "| MBMT-Net full, from scratch | -7.02% | – |" in markdown
    html_rows = re.findall(r"<tr>(.*?)</tr>", render.to_html(table))
    assert html_rows[2] == '<td>MBMT-Net DWA (partial)</td><td class="num">-7.02%</td><td class="num">-7.02%</td>'
    csv_rows = render.to_csv(table).splitlines()
    assert csv_rows[0] == f"model,{DELTA_M_HEADER} (ours),{DELTA_M_HEADER} (computed from the paper's table)"
    assert float(csv_rows[2].split(",")[1]) == pytest.approx(-7.0196, abs=1e-4)
    index = document.render(summary(), [table], [], {}, {})
    assert f"### {table.title}" in index and "| MBMT-Net DWA (partial) | -7.02% | -7.02% |" in index


def test_delta_m_table_over_two_seeds_shows_mean_and_std():
    # Seed 1 of every model is seed 0 with mIoU + 1 (the ST-SS-Net's too). Per seed, MBMT-Net's mIoU
    # term is +3.61 / 21.23 at seed 0 and +3.61 / 22.23 at seed 1; every other term is the same, so
    # the per-seed Δm differ by -(16.2393 - 17.0042) / 9 = +0.0850 %.
    metrics = paper_metrics()
    for runs in metrics.values():
        second = copy.deepcopy(runs[0])
        if "semantic" in second:
            second["semantic"]["miou"] += 1.0
        runs.append(second)
    cell = delta_m_table(metrics, single_task=ST_NETS).column(f"{DELTA_M_HEADER} (ours)")[1]
    seed_1 = published_delta_m("mbmt_partial") - (100 * 3.61 / 22.23 - 100 * 3.61 / 21.23) / 9
    assert cell.value == pytest.approx((published_delta_m("mbmt_partial") + seed_1) / 2)
    assert cell.std == pytest.approx(abs(seed_1 - published_delta_m("mbmt_partial")) / 2 ** 0.5)
    assert str(cell).startswith("-6.98 ± 0.06")
    header = render.to_csv(delta_m_table(metrics, single_task=ST_NETS)).splitlines()[0]
    assert header == (f"model,{DELTA_M_HEADER} (ours),{DELTA_M_HEADER} (ours) std,"
                      f"{DELTA_M_HEADER} (computed from the paper's table)")


def test_delta_m_is_nash_mtls_delta_fn_and_libmtls_delta_p_is_another_number():
    """Nash-MTL's delta_fn (experiments/nyuv2/utils.py): (KK ** SIGN * (a - BASE) / BASE).mean() * 100
    with KK = -1 and SIGN = 1 for mIoU, pix acc and the three within-angle rates. By hand on its own
    STL BASE (0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915, CAGrad's) and
    a model a that is 10 % better on the first metric and 10 % worse on the fifth, equal elsewhere:
    terms -10, 0, 0, 0, +10, 0, 0, 0, 0: Δm = 0; a model 10 % better on mIoU only: Δm = -10/9 %.
    LibMTL's Δp (count_improvement) of the latter: +10/2 for the segmentation task (2 metrics),
    0 for depth and normals: (5 + 0 + 0) / 3 = +1.6667 %."""
    from mbmt.reporting.delta_m import libmtl_delta_p

    keys = [(m.task, m.key) for m in DELTA_M_METRICS]
    base_values = [0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915]
    base: dict = {}
    for (task, key), v in zip(keys, base_values):
        base.setdefault(task, {})[key] = v

    def model(changes):
        result = copy.deepcopy(base)
        for (task, key), factor in changes.items():
            result[task][key] *= factor
        return result

    assert delta_m(model({("semantic", "miou"): 1.1, ("normal", "mean"): 1.1}), base) == pytest.approx(0.0, abs=1e-12)
    better_miou = model({("semantic", "miou"): 1.1})
    assert delta_m(better_miou, base) == pytest.approx(-10 / 9)
    assert libmtl_delta_p(better_miou, base) == pytest.approx(10 / 2 / 3)
    # A worse depth abs err by 10 %: Δm +10/9 (worse), LibMTL's Δp -10/2/3.
    worse_depth = model({("depth", "abs_err"): 1.1})
    assert delta_m(worse_depth, base) == pytest.approx(10 / 9)
    assert libmtl_delta_p(worse_depth, base) == pytest.approx(-10 / 2 / 3)
    assert libmtl_delta_p({**base, "normal": None}, base) is None
