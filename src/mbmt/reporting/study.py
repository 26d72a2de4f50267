"""The study tables: each study's variants × models (params `studies`, mbmt.plan.Plan.study_members).

One table per study, ``study_<name>``: a row per (variant, model) with the 12 metrics (mean ± the
sample std over the seeds), Δm against the same variant's single-task models
(mbmt.reporting.delta_m), MR, the mean rank over the same metrics among the variants (`mean_ranks`),
and, for each variant but the baseline, a mark on every metric whose paired 95 % bootstrap interval
against the baseline variant's same model excludes 0 (mbmt.reporting.statistics); ``study_<name>_paired`` lists those intervals. A variant's model that
runs the baseline's very job (nothing it depends on differs) is not compared with itself.
Pure functions of the metrics and per-image rows, like mbmt.reporting.tables; `task_changes` and
`tradeoff_points` hold the numbers the study figures draw (mbmt.reporting.figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from mbmt.metrics import PER_IMAGE_KEYS
from mbmt.reporting.delta_m import (
    DELTA_M_DEFINITION,
    DELTA_M_HEADER,
    DELTA_M_METRICS,
    delta_m_metrics_text,
    delta_m,
    measured_delta_m,
)
from mbmt.reporting.statistics import ALPHA, Interval, holm_adjusted, paired_intervals, spread
from mbmt.reporting.tables import (
    SIGNIFICANT,
    TITLES,
    Cell,
    Num,
    Table,
    is_tested,
    label,
    mean_value,
    measured,
    reported_as,
    seeds_note,
    single_task_column,
    unreachable_note,
)
from mbmt.tasks import HEADLINE_METRICS, METRICS, TASKS, Metric, metric

# (variant, model, task, metric) -> the paired interval of the variant's model minus the baseline's
StudyIntervals = dict[tuple[str, str, str, str], Interval]


def study_intervals(members: Mapping[str, Mapping[str, str]], per_image: Mapping[str, Sequence[Mapping]],
                    baseline: str, models: Sequence[str], bootstrap: Mapping[str, int]) -> StudyIntervals:
    """Paired intervals of each variant's model minus the baseline variant's, task by task.
    ``members``: variant -> model -> job (mbmt.plan.Plan.study_members); ``per_image``: job -> rows per seed."""
    intervals: StudyIntervals = {}
    for variant, jobs in members.items():
        if variant == baseline:
            continue
        for model in models:
            job, base = jobs[model], members[baseline][model]
            if job == base:
                continue
            for task in TASKS:
                if PER_IMAGE_KEYS[task][0] in per_image[job][0] and PER_IMAGE_KEYS[task][0] in per_image[base][0]:
                    found = paired_intervals(per_image[job], per_image[base], task, samples=bootstrap["samples"],
                                             seed=bootstrap["seed"], label=f"{job} vs {base}")
                    intervals |= {(variant, model, task, key): iv for key, iv in found.items()}
    # One family per study: every comparison its table could mark, Holm-corrected together.
    return holm_adjusted(intervals)


MR_HEADER = "MR ↓ (mean rank over the Δm metrics)"
MR_DIGITS = 2


def average_ranks(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """Rank 1 = best; tied values share the mean of the ranks they span (scipy.stats.rankdata's
    'average', which the field's MR uses)."""
    keys = -np.asarray(values, dtype=np.float64) if higher_is_better else np.asarray(values, dtype=np.float64)
    ranks = np.empty(len(keys))
    order = np.argsort(keys, kind="stable")
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and keys[order[end + 1]] == keys[order[start]]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1  # ranks start+1 .. end+1, averaged
        start = end + 1
    return ranks.tolist()


def mean_ranks(rows: Mapping[str, Mapping | None], over: Sequence[Metric] = DELTA_M_METRICS
               ) -> dict[str, float | None]:
    """MR: each row ranked among ``rows`` ({name: {task: {key: value}}}, e.g. each variant's mean
    metrics) on every metric of ``over`` in its direction (`average_ranks`), then the mean of its
    ranks. Rows lacking one of the metrics get None and are not ranked; fewer than two rows: None."""
    complete = {name: row for name, row in rows.items()
                if row is not None and all(_value(row, entry) is not None for entry in over)}
    result: dict[str, float | None] = {name: None for name in rows}
    if len(complete) < 2:
        return result
    names = list(complete)
    ranks = np.array([average_ranks([_value(complete[n], entry) for n in names], entry.higher_is_better)
                      for entry in over])
    result |= {name: float(ranks[:, i].mean()) for i, name in enumerate(names)}
    return result


def _value(row: Mapping, entry: Metric) -> float | None:
    number = (row.get(entry.task) or {}).get(entry.key)
    return None if number is None else float(number)


def _mean_block(runs: Sequence[Mapping]) -> dict | None:
    """The mean over seeds of each Δm metric ({task: {key: mean}}); None if a seed lacks one."""
    block: dict = {}
    for entry in DELTA_M_METRICS:
        mean = mean_value(runs, entry.task, entry.key)
        if mean is None:
            return None
        block.setdefault(entry.task, {})[entry.key] = mean
    return block


def study_mean_ranks(study: Mapping, members: Mapping[str, Mapping[str, str]],
                     metrics: Mapping[str, Sequence[Mapping]], single_task: Sequence[str]
                     ) -> dict[tuple[str, str], float | None]:
    """(variant, model) -> MR of the variant among the study's variants of the same multi-task model."""
    result: dict[tuple[str, str], float | None] = {}
    for model in study["models"]:
        if model in single_task:
            continue
        ranks = mean_ranks({variant: _mean_block(metrics[jobs[model]]) for variant, jobs in members.items()})
        result |= {(variant, model): rank for variant, rank in ranks.items()}
    return result


@dataclass(frozen=True)
class Bar:
    """One bar of a study's per-task figure: a variant's model on one task, the per-task Δm (the Δm
    over that task's metrics; lower is better) as the mean over seeds and the sample std (None: one seed)."""

    variant: str
    model: str
    task: str
    mean: float
    std: float | None
    seeds: int


def task_changes(study: Mapping, members: Mapping[str, Mapping[str, str]],
                 metrics: Mapping[str, Sequence[Mapping]], single_task: Sequence[str]) -> list[Bar]:
    """Each multi-task model of the study under each variant against the same variant's ST-Nets, task
    by task: seed s against seed s (as Δm), then the mean and sample std over the seeds."""
    bars = []
    for variant, jobs in members.items():
        st_column = single_task_column({model: metrics[jobs[model]] for model in single_task}, single_task)
        for model in study["models"]:
            if model in single_task or not st_column:
                continue
            runs = metrics[jobs[model]]
            for task in TASKS:
                over = [entry for entry in DELTA_M_METRICS if entry.task == task]
                stats = spread([delta_m(run, base, over) for run, base in zip(runs, st_column)])
                if stats is not None:
                    bars.append(Bar(variant, model, task, stats.mean, stats.std, stats.n))
    return bars


@dataclass(frozen=True)
class Point:
    """A variant's model in a study's trade-off figure: the headline metrics of two tasks, per seed."""

    variant: str
    model: str
    x: list[float]  # per seed
    y: list[float]


def tradeoff_points(study: Mapping, members: Mapping[str, Mapping[str, str]],
                    metrics: Mapping[str, Sequence[Mapping]], tasks: tuple[str, str]) -> list[Point]:
    """Each (variant, model) of the study that predicts both ``tasks``: their headline metrics per seed."""
    x_metric, y_metric = (HEADLINE_METRICS[task] for task in tasks)
    points = []
    for variant, jobs in members.items():
        for model in study["models"]:
            runs = metrics[jobs[model]]
            xs = [(run.get(x_metric.task) or {}).get(x_metric.key) for run in runs]
            ys = [(run.get(y_metric.task) or {}).get(y_metric.key) for run in runs]
            if runs and None not in xs and None not in ys:
                points.append(Point(variant, model, [float(v) for v in xs], [float(v) for v in ys]))
    return points


def study_table(name: str, study: Mapping, members: Mapping[str, Mapping[str, str]],
                metrics: Mapping[str, Sequence[Mapping]], intervals: StudyIntervals, *,
                single_task: Sequence[str]) -> Table:
    """Variants × models of study ``name``: the 12 metrics, Δm, marks against the baseline variant.
    ``metrics``: job -> metrics per seed; ``single_task``: the single-task models of the params."""
    baseline = study["baseline"]
    columns = ["variant", "model", *(label(entry.task, entry.key) for entry in METRICS), DELTA_M_HEADER, MR_HEADER,
               "job"]
    rows: list[list[Cell]] = []
    ranks = study_mean_ranks(study, members, metrics, single_task)
    for variant, jobs in members.items():
        st_column = single_task_column({model: metrics[jobs[model]] for model in single_task}, single_task)
        for model in study["models"]:
            job = jobs[model]
            row: list[Cell] = [variant + (" (baseline)" if variant == baseline else ""), TITLES.get(model, model)]
            for entry in METRICS:
                cell = measured(metrics[job], entry.task, entry.key, entry.digits)
                interval = intervals.get((variant, model, entry.task, entry.key))
                # A mark only where the number shown is the one tested (final model, pixel averaging).
                tested = all(is_tested(reported_as(metrics, name, entry.task, single_task))
                             for name in (job, members[baseline][model]))
                if cell is not None and interval is not None and tested:
                    cell = replace(cell, significant=interval.significant)
                row.append(cell)
            multi_task = model not in single_task
            rank = ranks.get((variant, model))
            row += [measured_delta_m(metrics[job], st_column) if multi_task and st_column else None,
                    None if rank is None else Num(rank, MR_DIGITS), job]
            rows.append(row)
    return Table(
        f"study_{name}", f"Study {name}: {', '.join(study['models'])} under each variant (baseline {baseline})",
        columns, rows,
        [f"Each variant is the params with its override (params studies.{name}.variants) merged over them; "
         "job: the trained model the row comes from (models/<job>/), shared by every variant that changes "
         "nothing it depends on.",
         f"Δm: against the same variant's single-task models, over {delta_m_metrics_text()} "
         f"(K = {len(DELTA_M_METRICS)}; see the Δm table). {DELTA_M_DEFINITION}",
         f"MR: the mean rank over the same K metrics; on each metric the variants of one multi-task model are "
         f"ranked against each other (1 = best, in the metric's direction; tied values share their mean rank) "
         f"on the mean over the seeds. Lower is better: 1 is best on every metric, {len(members)} worst on every "
         "one. None for the single-task models.",
         f"{SIGNIFICANT}: this variant's model differs from the baseline variant's ({baseline}) on the same "
         f"test images: paired bootstrap p, Holm-corrected over the study's {family_size(intervals)} comparisons, "
         f"below {ALPHA} (see study_{name}_paired; losses and the median angle are not tested). No mark where "
         "the row is the baseline's own job, nor where a metrics file reports another protocol or averaging "
         "than the tested one (the trained model, pixel averaging).",
         seeds_note(metrics), *unreachable_note(intervals.values())],
    )


def study_paired_table(name: str, intervals: StudyIntervals) -> Table:
    """Every interval of study ``name``: the variant's model minus the baseline variant's."""
    rows = []
    for (variant, model, task, key), interval in intervals.items():
        digits = metric(task, key).digits + 1
        rows.append([variant, TITLES.get(model, model), label(task, key), Num(interval.difference, digits),
                     Num(interval.low, digits), Num(interval.high, digits),
                     None if interval.seed_std is None else Num(interval.seed_std, digits),
                     Num(interval.p, 4), Num(interval.p_decisive, 4),
                     "yes" if interval.significant else "no", Num(interval.seeds)])
    return Table(
        f"study_{name}_paired", f"Study {name}: each variant minus the baseline variant on the same test images",
        ["variant", "model", "metric", "difference", "95 % low", "95 % high", "seed std", "p", "p (Holm)",
         "significant", "seeds"], rows,
        ["difference: the variant's model minus the baseline variant's, from the per-image sums of the test "
         "split (pixel averaging), averaged over the seeds (same seed against same seed); 95 % percentile "
         "interval of a paired bootstrap over the test images (mbmt.reporting.statistics), which covers the "
         "sampling of test images with the trained models fixed; seed std: the spread of the per-seed "
         "differences (training randomness). Neither covers the correlation of frames of one scene.",
         f"p: the two-sided bootstrap p of each comparison; p (Holm): Holm-corrected over the study's "
         f"{family_size(intervals)} comparisons; significant: p (Holm) below {ALPHA}.",
         *unreachable_note(intervals.values())],
    )


def family_size(intervals: StudyIntervals) -> int:
    return len(intervals)
