"""The study tables: each study's variants × models (params `studies`, mbmt.dag.study_members).

One table per study, ``study_<name>``: a row per (variant, model) with the 12 metrics (mean ± the
sample std over the seeds), Δm against the same variant's single-task models
(mbmt.reporting.delta_m) and, for each variant but the baseline, a mark on every metric whose
paired 95 % bootstrap interval against the baseline variant's same model excludes 0
(mbmt.reporting.statistics); ``study_<name>_paired`` lists those intervals. A variant's model that
runs the baseline's very job (nothing it depends on differs) is not compared with itself.
Pure functions of the metrics and per-image rows, like mbmt.reporting.tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from mbmt.metrics import PER_IMAGE_KEYS
from mbmt.reporting.delta_m import (
    DELTA_M_DEFINITION,
    DELTA_M_HEADER,
    DELTA_M_METRICS,
    delta_m_metrics_text,
    measured_delta_m,
)
from mbmt.reporting.statistics import ALPHA, Interval, holm_adjusted, paired_intervals
from mbmt.reporting.tables import (
    SIGNIFICANT,
    TITLES,
    Cell,
    Num,
    Table,
    is_tested,
    label,
    measured,
    reported_as,
    seeds_note,
    single_task_column,
    unreachable_note,
)
from mbmt.tasks import METRICS, TASKS, metric

# (variant, model, task, metric) -> the paired interval of the variant's model minus the baseline's
StudyIntervals = dict[tuple[str, str, str, str], Interval]


def study_intervals(members: Mapping[str, Mapping[str, str]], per_image: Mapping[str, Sequence[Mapping]],
                    baseline: str, models: Sequence[str], bootstrap: Mapping[str, int]) -> StudyIntervals:
    """Paired intervals of each variant's model minus the baseline variant's, task by task.
    ``members``: variant -> model -> job (mbmt.dag.study_members); ``per_image``: job -> rows per seed."""
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


def study_table(name: str, study: Mapping, members: Mapping[str, Mapping[str, str]],
                metrics: Mapping[str, Sequence[Mapping]], intervals: StudyIntervals, *,
                single_task: Sequence[str]) -> Table:
    """Variants × models of study ``name``: the 12 metrics, Δm, marks against the baseline variant.
    ``metrics``: job -> metrics per seed; ``single_task``: the single-task models of the params."""
    baseline = study["baseline"]
    columns = ["variant", "model", *(label(entry.task, entry.key) for entry in METRICS), DELTA_M_HEADER, "job"]
    rows: list[list[Cell]] = []
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
            row += [measured_delta_m(metrics[job], st_column) if multi_task and st_column else None, job]
            rows.append(row)
    return Table(
        f"study_{name}", f"Study {name}: {', '.join(study['models'])} under each variant (baseline {baseline})",
        columns, rows,
        [f"Each variant is the params with its override (params studies.{name}.variants) merged over them; "
         "job: the trained model the row comes from (models/<job>/), shared by every variant that changes "
         "nothing it depends on.",
         f"Δm: against the same variant's single-task models, over {delta_m_metrics_text()} "
         f"(K = {len(DELTA_M_METRICS)}; see the Δm table). {DELTA_M_DEFINITION}",
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
