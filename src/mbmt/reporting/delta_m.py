"""Δm: the mean relative difference of a multi-task model from the single-task models, over the metrics.

Maninis et al., CVPR 2019 ("Attentive single-tasking of multiple tasks"), in the convention of the
SegNet-MTAN NYUv2 tables the report quotes (Nash-MTL's ``delta_fn``, experiments/nyuv2/utils.py of
github.com/AvivNavon/nash-mtl, which FAMO's trainer imports; the "Δm%" of the FAMO, FairGrad and
NTKMTL tables):

    Δm = (1/K) Σ_k (-1)^{δ_k} (M_m,k - M_b,k) / M_b,k × 100 %

over the K metrics of DELTA_M_METRICS, all metrics in one mean; δ_k = 1 where a *higher* value of
metric k is better (the catalogue's ``higher_is_better``), M_b,k the single-task baseline's value
(the EfficientPS column: each task's metrics from the ST-Net of that task) and M_m,k the multi-task
model's. So **lower is better**: a model better than single-task on average has a negative Δm, and
Δm is minus the mean of the report's relative improvements (mbmt.reporting.tables.relative_improvement).

LibMTL's ``count_improvement`` (its Δp) differs twice: positive = better, and it averages within
each task first, then over tasks (`libmtl_delta_p`, for converting its figures).

Over seeds, seed s of a model is compared with seed s of the ST-Nets (`per_seed_delta_m`), and the
report shows the mean ± the sample standard deviation of those per-seed values (no ± with one seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mbmt import anchors, paper
from mbmt.reporting.statistics import spread
from mbmt.reporting.tables import (
    ST_COLUMN,
    TABLE_TITLES,
    TITLES,
    Cell,
    Num,
    Runs,
    Table,
    label,
    relative_improvement,
    seeds_note,
    single_task_column,
    value,
)
from mbmt.tasks import METRICS, TASK_ABBREVIATIONS, Metric

# The catalogue's metrics without the training losses: the 9 evaluation metrics LibMTL's NYUv2
# Δm averages (mIoU, pixel acc; abs err, rel err; mean, median angle, within 11.25 / 22.5 / 30°).
# The losses are what training minimises, not what a task is judged by, and the paper did not
# publish MTAN's, so a Δm with them could not be computed for every published column.
DELTA_M_METRICS = tuple(entry for entry in METRICS if entry.key != "loss")

DELTA_M_DIGITS = 2  # as the paper's relative improvements
# Every Δm column says its direction and whose definition it is.
DELTA_M_HEADER = "Δm ↓ (%; Nash-MTL's definition)"
DELTA_M_DEFINITION = ("Δm = (1/K) Σ_k (-1)^δ_k (M_k - M_ST,k) / M_ST,k × 100 %, δ_k = 1 where higher is better: "
                      "Nash-MTL's definition (its delta_fn; the Δm% of the FAMO, FairGrad and NTKMTL tables; Maninis "
                      "et al., CVPR 2019), one mean over all metrics. Lower is better: negative = better than "
                      "single-task on average. (LibMTL's Δp is another number: positive = better, averaged within "
                      "each task first.)")


def delta_m(model: Mapping | None, baseline: Mapping | None,
            over: Sequence[Metric] = DELTA_M_METRICS) -> float | None:
    """Δm (percent) of ``model``'s metrics against ``baseline``'s, both {task: {key: value}} in the
    paper's units, over the metrics ``over`` (the report: DELTA_M_METRICS). None when either lacks
    one of them (e.g. the normals of a split without ground truth) or a baseline value is 0: a mean
    over fewer metrics would not be the Δm the field reports."""
    terms = [relative_improvement(value(model, entry.task, entry.key), value(baseline, entry.task, entry.key),
                                  entry.higher_is_better)
             for entry in over]
    if any(term is None for term in terms):
        return None
    return -sum(terms) / len(terms) + 0.0  # minus: lower is better; + 0.0: no "-0.00"


def libmtl_delta_p(model: Mapping | None, baseline: Mapping | None,
                   over: Sequence[Metric] = DELTA_M_METRICS) -> float | None:
    """LibMTL's Δp (``count_improvement``, LibMTL/utils.py) in percent: the relative improvements
    averaged within each task, then over the tasks; positive = better. None as `delta_m`."""
    by_task: dict[str, list[float]] = {}
    for entry in over:
        term = relative_improvement(value(model, entry.task, entry.key), value(baseline, entry.task, entry.key),
                                    entry.higher_is_better)
        if term is None:
            return None
        by_task.setdefault(entry.task, []).append(term)
    return sum(sum(terms) / len(terms) for terms in by_task.values()) / len(by_task) + 0.0


def per_seed_delta_m(model: Runs, baseline: Runs) -> list[float | None]:
    """Δm of each seed of ``model`` against the same seed of ``baseline`` (both in params' seed order)."""
    if len(model) != len(baseline):
        raise ValueError(f"Δm pairs seeds: the model has {len(model)} seeds, the single-task models {len(baseline)}")
    return [delta_m(run, base) for run, base in zip(model, baseline)]


def measured_delta_m(model: Runs, baseline: Runs) -> Num | None:
    """The mean ± the sample std (ddof=1; none with one seed) of the per-seed Δm; None if a seed has none."""
    stats = spread(per_seed_delta_m(model, baseline))
    return None if stats is None else Num(stats.mean, DELTA_M_DIGITS, "%", stats.std)


def published_delta_m(name: str) -> float | None:
    """Δm of a model of the paper computed from the paper's results table (the paper did not publish
    Δm): its column against the EfficientPS column. None for a model the paper does not have."""
    if name not in paper.RESULTS or name == ST_COLUMN:
        return None
    return delta_m(paper.RESULTS[name], paper.RESULTS[ST_COLUMN])


def delta_m_metrics_text() -> str:
    """The K metrics with their direction, e.g. "SS mIoU ↑, ..."."""
    return ", ".join(f"{TASK_ABBREVIATIONS[entry.task]} {entry.name} {'↑' if entry.higher_is_better else '↓'}"
                     for entry in DELTA_M_METRICS)


def delta_m_table(metrics: Mapping[str, Runs], *, single_task: Sequence[str]) -> Table:
    """Δm of every multi-task model (each model of ``metrics`` that is not one of ``single_task``)
    against the ST-Nets, ours per seed beside the one computed from the paper's table."""
    baseline = single_task_column(metrics, single_task)
    rows: list[list[Cell]] = []
    for name, runs in metrics.items():
        if name in single_task:
            continue
        published = published_delta_m(name)
        rows.append([TITLES.get(name, name), measured_delta_m(runs, baseline) if baseline else None,
                     None if published is None else Num(published, DELTA_M_DIGITS, "%")])
    return Table(
        "delta_m", TABLE_TITLES["delta_m"],
        ["model", f"{DELTA_M_HEADER} (ours)", f"{DELTA_M_HEADER} (computed from the paper's table)"], rows,
        [f"{DELTA_M_DEFINITION} Over the K = {len(DELTA_M_METRICS)} metrics {delta_m_metrics_text()} (the "
         f"losses are left out), against {TITLES[ST_COLUMN]}: each task's metrics from its single-task model.",
         "Ours: each seed's model against the same seed's ST-Nets, then the mean ± the sample standard "
         "deviation (ddof=1) of those per-seed values over the seeds (no ± with one seed).",
         "The paper did not publish Δm: its column is computed here from the paper's results table "
         "(each model's column against its EfficientPS column); none for models the paper does not have.",
         seeds_note(metrics)],
    )


def recent_anchors_table() -> Table:
    """The newest SegNet-MTAN results on NYUv2 (mbmt.anchors.RECENT_SEGNET_MTAN): their nine metrics,
    their published Δm and the Δm recomputed here from the row against the source's STL row."""
    columns = ["method", "venue", *(label(entry.task, entry.key) for entry in DELTA_M_METRICS),
               f"{DELTA_M_HEADER} (published)", f"{DELTA_M_HEADER} (recomputed here)"]
    rows: list[list[Cell]] = []
    for row in (("STL (single-task SegNet)", "", anchors.RECENT_STL, None),
                *((r.method, r.venue, r.results, r.delta_m) for r in anchors.RECENT_SEGNET_MTAN)):
        name, venue, results, published = row
        cells: list[Cell] = [name, venue]
        cells += [Num(value(results, entry.task, entry.key), entry.digits) for entry in DELTA_M_METRICS]
        recomputed = None if published is None else delta_m(results, anchors.RECENT_STL)
        cells += [None if published is None else Num(published, DELTA_M_DIGITS, "%"),
                  None if recomputed is None else Num(recomputed, DELTA_M_DIGITS, "%")]
        rows.append(cells)
    return Table(
        "recent_anchors", TABLE_TITLES["recent_anchors"], columns, rows,
        [f"Quoted, not measured here: {anchors.RECENT_SOURCE}. Protocol: {anchors.RECENT_PROTOCOL}.",
         f"{DELTA_M_DEFINITION} The source's Δm% is this definition (no conversion); it is against the source's "
         "single-task SegNet (the STL row), not against the ST-Nets of our Δm table, so it ranks methods on the "
         "SegNet-MTAN protocol and does not compare with our models' Δm.",
         "Recomputed here: mbmt.reporting.delta_m on the printed (rounded) metrics of the row and the STL row; it "
         "agrees with the published figure to 0.01."],
    )
