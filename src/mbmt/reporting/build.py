"""Write reports/ from the pipeline's outputs: tables, figures, provenance, and the index."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mbmt import paths
from mbmt.io import atomic_path, write_json
from mbmt.environment import describe as describe_environment
from mbmt.evaluation.protocol import read_curve
from mbmt.provenance import git_revision
from mbmt.reporting import document, figures
from mbmt.reporting.delta_m import delta_m_table, recent_anchors_table
from mbmt.metrics import PER_IMAGE_KEYS
from mbmt.reporting.render import to_csv, to_html, to_markdown
from mbmt.reporting.sources import ModelResult, Samples, read_dataset, read_model, read_samples
from mbmt.reporting.statistics import Interval, holm_adjusted, merge_rows, paired_intervals
from mbmt.reporting.tables import (
    BASELINES,
    OURS,
    ST_COLUMN,
    TITLES,
    Table,
    architecture_table,
    describe_protocol,
    headline_table,
    improvement_table,
    paired_table,
    parameter_table,
    results_table,
)
from mbmt.tasks import HEADLINE_METRICS, TASK_TITLES, TASKS


@dataclass(frozen=True)
class StudyPlan:
    """One study as the report reads it: its params section (``studies.<name>``: baseline, models,
    variants) and, from the plan, the job that runs each of its (variant, model)."""

    name: str
    study: Mapping[str, Any]
    members: Mapping[str, Mapping[str, str]]  # variant -> model -> job


@dataclass(frozen=True)
class ReportSettings:
    """Everything the report reads of the params and the plan, unpacked by the report stage: its own
    params keys (report, data.real_images, seeds, studies) and what the plan derives from the params
    (the models, which of them are single-task, each study's jobs)."""

    models: tuple[str, ...]  # in params order: the report's rows and columns follow it
    single_task: tuple[str, ...]  # the ST-Nets, in params order: the EfficientPS column
    seeds: tuple[int, ...]
    qualitative_images: int  # report.qualitative_images
    bootstrap: Mapping[str, int]  # report.bootstrap: samples, seed
    real_images: bool  # data.real_images is set: real.h5 exists and is drawn too
    studies: tuple[StudyPlan, ...] = ()

    def __post_init__(self) -> None:
        # Frozen all the way down: a setting read by one table cannot be changed for the next.
        object.__setattr__(self, "bootstrap", MappingProxyType(dict(self.bootstrap)))


# A study's numbers, as read: (name, params section, members, job -> metrics per seed,
# job -> per-image rows per seed).
StudyResults = tuple[str, Mapping, Mapping, dict, dict]


def mbmt_variants(results: Mapping[str, ModelResult]) -> list[str]:
    variants = [name for name, r in results.items() if r.meta["model"]["arch"] == "mbmt"]
    return sorted(variants, key=lambda name: name != OURS)  # the paper's MBMT-Net first


def paired_comparisons(per_image: Mapping[str, list], variants: list[str], bootstrap: Mapping[str, int], *,
                       single_task: Sequence[str]) -> dict[tuple[str, str, str, str], Interval]:
    """Paired intervals of each MBMT-Net variant minus each baseline present, for every task both
    predict; ``per_image``: name -> per-image rows per seed. The EfficientPS baseline is the
    single-task models' (``single_task``) rows together. Their p are Holm-adjusted over all of
    them: the family is every comparison the report tests (a superset of those any table marks,
    so the family-wise error rate holds for every significance the report claims)."""
    per_image = dict(per_image)
    single = [name for name in single_task if name in per_image]
    if single:
        per_image[ST_COLUMN] = [merge_rows(parts, "the ST-Nets") for parts in zip(*(per_image[n] for n in single))]
    intervals = {}
    for variant in variants:
        for baseline in (b for b in BASELINES if b in per_image):
            for task in TASKS:
                key = PER_IMAGE_KEYS[task][0]
                if key in per_image[variant][0] and key in per_image[baseline][0]:
                    found = paired_intervals(per_image[variant], per_image[baseline], task,
                                             samples=bootstrap["samples"], seed=bootstrap["seed"],
                                             label=f"{variant} vs {baseline}")
                    intervals |= {(variant, baseline, task, metric): iv for metric, iv in found.items()}
    return holm_adjusted(intervals)


def build_tables(results: Mapping[str, ModelResult], bootstrap: Mapping[str, int], single_task: Sequence[str]
                 ) -> list[Table]:
    metrics = {name: r.metrics for name, r in results.items()}
    counts = {name: r.parameters for name, r in results.items()}
    variants = mbmt_variants(results)
    intervals = paired_comparisons({name: r.per_image for name, r in results.items()}, variants, bootstrap,
                                   single_task=single_task)
    return [headline_table(metrics, counts, single_task=single_task),
            architecture_table({name: r.meta for name, r in results.items()}), parameter_table(counts),
            results_table(metrics, single_task=single_task),
            delta_m_table(metrics, single_task=single_task), recent_anchors_table(),
            improvement_table(metrics, counts, variants, intervals, single_task=single_task), paired_table(intervals)]


def write_tables(tables: list[Table], directory: Path) -> None:
    """Each table as Markdown (the index's), CSV (the numbers whole) and HTML (Snakemake's report)."""
    with atomic_path(directory, directory=True) as tmp:
        for table in tables:
            (tmp / f"{table.name}.md").write_text(to_markdown(table))
            (tmp / f"{table.name}.csv").write_text(to_csv(table))
            (tmp / f"{table.name}.html").write_text(to_html(table))


def loss_change(name: str, seed: int, task: str) -> str:
    """How far model ``name``'s (seed ``seed``) training loss of ``task`` fell: "loss 2.65 -> 1.72" from
    its first and last logged epochs; "" when none is logged."""
    curve = read_curve(paths.live_dir(name, seed), f"train/loss/{task}")
    if curve is None or not len(curve[1]):
        return ""
    values = curve[1]
    return f"loss {values[0]:.2f} -> {values[-1]:.2f}"


def comparison_rows(results: Mapping[str, ModelResult], split: str, single_task: Sequence[str]
                    ) -> list[tuple[str, dict, dict]]:
    """One row per multi-task model, the single-task models (``single_task``) merged into one "ST-Nets"
    row: (title, task -> predictions, task -> the first seed's `loss_change`)."""
    single = [name for name in single_task if name in results]
    st_row = {results[name].tasks[0]: results[name].predictions[split][results[name].tasks[0]] for name in single}
    st_losses = {results[name].tasks[0]: loss_change(name, results[name].runs[0].seed, results[name].tasks[0])
                 for name in single}
    rows = [(TITLES["efficientps_st"], st_row, st_losses)] if st_row else []
    rows += [(TITLES.get(name, name), r.predictions[split],
              {task: loss_change(name, r.runs[0].seed, task) for task in r.tasks})
             for name, r in results.items() if name not in single]
    return rows


def write_figures(results: Mapping[str, ModelResult], samples: list[Samples], directory: Path,
                  single_task: Sequence[str], found: Sequence[StudyResults] = ()
                  ) -> list[tuple[str, str, str]]:
    """Draw every figure into ``directory``; returns (section, caption, path under reports/) for the index.
    Training curves: one line per model and seed; predictions: the first seed's models; the two figures
    of each study of ``found`` (`read_studies`)."""
    listed = []
    rel = paths.REPORT_FIGURES_DIR.relative_to(paths.REPORTS_DIR)
    with atomic_path(directory, directory=True) as tmp:
        for task in TASKS:
            live_dirs, titles = {}, {}
            for name, r in results.items():
                if task in r.tasks:
                    for run in r.runs:
                        curve = f"{name}/seed{run.seed}"
                        live_dirs[curve] = paths.live_dir(name, run.seed)
                        seed = f" (seed {run.seed})" if len(r.runs) > 1 else ""
                        titles[curve] = f"{TITLES.get(name, name)}{seed}"
            figures.training_curves(task, live_dirs, titles, tmp / f"training_{task}.png")
            listed.append(("Training curves", f"{TASK_TITLES[task].capitalize()}: training loss and "
                           f"validation {HEADLINE_METRICS[task].axis} per epoch", f"{rel}/training_{task}.png"))
        for split_samples in samples:
            split = split_samples.split
            section = f"Predictions on {split} images ({split_samples.source})"
            figures.qualitative(split_samples, results[OURS].predictions[split], TITLES[OURS],
                                tmp / f"qualitative_{split}.png")
            listed.append((section, f"{TITLES[OURS]} on the first {len(split_samples)} {split} images: "
                           "RGB, then ground truth and prediction per task", f"{rel}/qualitative_{split}.png"))
            figures.comparison(split_samples, comparison_rows(results, split, single_task),
                               tmp / f"comparison_{split}.png")
            listed.append((section, f"Every model on {split} image 0", f"{rel}/comparison_{split}.png"))
        listed += draw_study_figures(found, single_task, tmp)
    return listed


def summarise(results: Mapping[str, ModelResult], dataset: dict[str, Any]) -> dict[str, Any]:
    """The facts the index opens with, gathered from every model's records."""
    runs = [run for r in results.values() for run in r.runs]
    contexts = [run.metrics.get("context", {}) for run in runs]
    training = [(run.meta.get("extra") or {}).get("provenance") or {} for run in runs]

    def distinct(values) -> list[str]:
        return sorted({str(v) for v in values if v is not None})

    evaluations = distinct(f"{c.get('split')} split, {c.get('images')} images, batch size {c.get('batch_size')}"
                           for c in contexts)
    return {
        "profiles": distinct((c.get("provenance") or {}).get("profile") for c in contexts),
        "dataset": dataset,
        "evaluation": "; ".join(evaluations),
        "averaging": " / ".join(distinct(c.get("averaging") for c in contexts)),
        "protocol": " / ".join(distinct(describe_protocol(c) for c in contexts)),
        "seeds": sorted({run.seed for run in runs}),
        "training_hardware": distinct(t.get("hardware") for t in training),
        "evaluation_hardware": distinct((c.get("provenance") or {}).get("hardware") for c in contexts),
        # Which lock computed the numbers, and whether every training and evaluation matched it.
        "environment": describe_environment([p.get("environment") for p in training]
                                            + [(c.get("provenance") or {}).get("environment") for c in contexts]),
        "git_revision": git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_studies(studies: Sequence[StudyPlan], seeds: Sequence[int]) -> list[StudyResults]:
    """Each study as (name, study, members, metrics, per-image rows): the metrics and per-image rows
    of its jobs, one per seed of ``seeds``."""
    from mbmt.evaluation import read_per_image
    from mbmt.io import read_json
    from mbmt.reporting.sources import require

    found = []
    for plan in studies:
        jobs = sorted({job for variant in plan.members.values() for job in variant.values()})
        metrics = {job: [read_json(require(paths.metrics_file(job, seed), f"mbmt evaluate {job} --seed {seed}"))
                         for seed in seeds] for job in jobs}
        per_image = {job: [read_per_image(require(paths.per_image_file(job, seed), f"mbmt evaluate {job} --seed {seed}"))
                           for seed in seeds] for job in jobs}
        found.append((plan.name, plan.study, plan.members, metrics, per_image))
    return found


def build_study_tables(found: Sequence[StudyResults], single_task: Sequence[str], bootstrap: Mapping[str, int]
                       ) -> list[Table]:
    """The two tables of each study (mbmt.reporting.study) of ``found`` (`read_studies`)."""
    from mbmt.reporting.study import study_intervals, study_paired_table, study_table

    tables = []
    for name, study, members, metrics, per_image in found:
        intervals = study_intervals(members, per_image, study["baseline"], study["models"], bootstrap)
        tables += [study_table(name, study, members, metrics, intervals, single_task=single_task),
                   study_paired_table(name, intervals)]
    return tables


# The trade-off figure of a study: the headline metrics of these two tasks.
TRADEOFF_TASKS = ("semantic", "depth")


def draw_study_figures(found: Sequence[StudyResults], single_task: Sequence[str],
                       directory: Path) -> list[tuple[str, str, str]]:
    """The two figures of each study into ``directory``: study_<name>_tasks.png (per-task Δm of each
    variant) and study_<name>_tradeoff.png; returns (section, caption, path under reports/)."""
    from mbmt.reporting.study import task_changes, tradeoff_points

    listed = []
    rel = paths.REPORT_FIGURES_DIR.relative_to(paths.REPORTS_DIR)
    x_metric, y_metric = (HEADLINE_METRICS[task] for task in TRADEOFF_TASKS)
    for name, study, members, metrics, _ in found:
        bars = task_changes(study, members, metrics, single_task)
        seeds = max((bar.seeds for bar in bars), default=0)
        spread_text = ("error bars: the sample standard deviation over the seeds" if seeds > 1 else
                       "one seed, so no error bars (no spread to show)")
        if bars:
            figures.study_task_changes(name, bars, TITLES, directory / f"study_{name}_tasks.png")
            listed.append((f"Study {name}", f"Study {name}: each variant's per-task Δm against the same variant's "
                           "single-task models (the Δm over that task's metrics, Nash-MTL's definition; lower is "
                           f"better, below 0 = better than single-task), mean over {seeds} seed(s); {spread_text}",
                           f"{rel}/study_{name}_tasks.png"))
        points = tradeoff_points(study, members, metrics, TRADEOFF_TASKS)
        if points:
            figures.study_tradeoff(name, points, TRADEOFF_TASKS, TITLES, directory / f"study_{name}_tradeoff.png")
            listed.append((f"Study {name}", f"Study {name}: {TASK_TITLES[x_metric.task]} {x_metric.name} against "
                           f"{TASK_TITLES[y_metric.task]} {y_metric.name}, each variant's model at its mean over "
                           f"the seeds (large marker)" + (", each seed a small marker" if seeds > 1 else
                                                          "; one seed, so no seed markers"),
                           f"{rel}/study_{name}_tradeoff.png"))
    return listed


def write_report(settings: ReportSettings) -> Path:
    """Write reports/ for the models and studies of ``settings``; returns the index (reports/README.md)."""
    splits = ["test"] + ([paths.REAL_SPLIT] if settings.real_images else [])
    samples = [read_samples(split, settings.qualitative_images) for split in splits]
    results = {name: read_model(name, list(settings.seeds), samples) for name in settings.models}
    dataset = read_dataset()
    single_task = list(settings.single_task)

    found = read_studies(settings.studies, settings.seeds)
    tables = (build_tables(results, settings.bootstrap, single_task)
              + build_study_tables(found, single_task, settings.bootstrap))
    summary = summarise(results, dataset)
    write_tables([*tables, document.run_table(summary)], paths.REPORT_TABLES_DIR)
    listed = write_figures(results, samples, paths.REPORT_FIGURES_DIR, single_task, found)
    provenance = {**summary, "models": {name: r.provenance() for name, r in results.items()},
                  "figure_images": {s.split: s.file for s in samples}}
    write_json(paths.REPORT_PROVENANCE, provenance)
    index = document.render(summary, tables, listed, provenance["models"], TITLES)
    with atomic_path(paths.REPORT_INDEX) as tmp:
        tmp.write_text(index)
    return paths.REPORT_INDEX
