"""Write reports/ from the pipeline's outputs: tables, figures, provenance, and the index."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mbmt import paths
from mbmt.io import atomic_path, write_json
from mbmt.provenance import git_revision
from mbmt.reporting import document, figures
from mbmt.reporting.sources import ModelResult, Samples, read_dataset, read_model, read_samples
from mbmt.reporting.tables import (
    OURS,
    TITLES,
    Table,
    architecture_table,
    headline_table,
    improvement_table,
    parameter_table,
    results_table,
    single_task_models,
    to_csv,
    to_html,
    to_markdown,
)
from mbmt.tasks import TASKS


def build_tables(results: Mapping[str, ModelResult]) -> list[Table]:
    metrics = {name: r.metrics for name, r in results.items()}
    counts = {name: r.parameters for name, r in results.items()}
    variants = [name for name, r in results.items() if r.meta["model"]["arch"] == "mbmt"]
    variants.sort(key=lambda name: name != OURS)  # the paper's MBMT-Net first
    return [headline_table(metrics, counts), architecture_table({name: r.meta for name, r in results.items()}),
            parameter_table(counts), results_table(metrics), improvement_table(metrics, counts, variants)]


def write_tables(tables: list[Table], directory: Path) -> None:
    """Each table as Markdown (the index's), CSV (the numbers whole) and HTML (Snakemake's report)."""
    with atomic_path(directory, directory=True) as tmp:
        for table in tables:
            (tmp / f"{table.name}.md").write_text(to_markdown(table))
            (tmp / f"{table.name}.csv").write_text(to_csv(table))
            (tmp / f"{table.name}.html").write_text(to_html(table))


def comparison_rows(results: Mapping[str, ModelResult], split: str) -> list[tuple[str, dict]]:
    """One row per multi-task model, the single-task models merged into one "ST-Nets" row."""
    metrics = {name: r.metrics for name, r in results.items()}
    single = single_task_models(metrics)
    st_row = {results[name].tasks[0]: results[name].predictions[split][results[name].tasks[0]] for name in single}
    rows = [(TITLES["efficientps_st"], st_row)] if st_row else []
    rows += [(TITLES.get(name, name), r.predictions[split]) for name, r in results.items() if name not in single]
    return rows


def write_figures(results: Mapping[str, ModelResult], seed: int, samples: list[Samples],
                  directory: Path) -> list[tuple[str, str, str]]:
    """Draw every figure into ``directory``; returns (section, caption, path under reports/) for the index."""
    listed = []
    rel = paths.REPORT_FIGURES_DIR.relative_to(paths.REPORTS_DIR)
    with atomic_path(directory, directory=True) as tmp:
        for task in TASKS:
            live_dirs = {name: paths.live_dir(name, seed) for name, r in results.items() if task in r.tasks}
            figures.training_curves(task, live_dirs, TITLES, tmp / f"training_{task}.png")
            unit = figures.HEADLINE[task][1]
            listed.append(("Training curves", f"{figures.TASK_NAMES[task].capitalize()}: training loss and "
                           f"validation {unit} per epoch", f"{rel}/training_{task}.png"))
        for split_samples in samples:
            split = split_samples.split
            section = f"Predictions on {split} images ({split_samples.source})"
            figures.qualitative(split_samples, results[OURS].predictions[split], TITLES[OURS],
                                tmp / f"qualitative_{split}.png")
            listed.append((section, f"{TITLES[OURS]} on the first {len(split_samples)} {split} images: "
                           "RGB, then ground truth and prediction per task", f"{rel}/qualitative_{split}.png"))
            figures.comparison(split_samples, comparison_rows(results, split), tmp / f"comparison_{split}.png")
            listed.append((section, f"Every model on {split} image 0", f"{rel}/comparison_{split}.png"))
    return listed


def summarise(results: Mapping[str, ModelResult], dataset: dict[str, Any]) -> dict[str, Any]:
    """The facts the index opens with, gathered from every model's records."""
    contexts = [r.metrics.get("context", {}) for r in results.values()]
    training = [(r.meta.get("extra") or {}).get("provenance") or {} for r in results.values()]

    def distinct(values) -> list[str]:
        return sorted({str(v) for v in values if v is not None})

    evaluations = distinct(f"{c.get('split')} split, {c.get('images')} images, batch size {c.get('batch_size')}"
                           for c in contexts)
    return {
        "profiles": distinct((c.get("provenance") or {}).get("profile") for c in contexts),
        "dataset": dataset,
        "evaluation": "; ".join(evaluations),
        "averaging": " / ".join(distinct(c.get("averaging") for c in contexts)),
        "training_hardware": distinct(t.get("hardware") for t in training),
        "evaluation_hardware": distinct((c.get("provenance") or {}).get("hardware") for c in contexts),
        "git_revision": git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_report(params: dict) -> Path:
    """Write reports/ for the models of ``params``; returns the index (reports/README.md)."""
    count = params["report"]["qualitative_images"]
    splits = ["test"] + ([paths.REAL_SPLIT] if paths.split_file(paths.REAL_SPLIT).is_file() else [])
    samples = [read_samples(split, count) for split in splits]
    seed = params["seeds"][0]  # the first seed's results until the report averages over seeds
    results = {name: read_model(name, seed, samples) for name in params["models"]}
    dataset = read_dataset()

    tables = build_tables(results)
    summary = summarise(results, dataset)
    write_tables([*tables, document.run_table(summary)], paths.REPORT_TABLES_DIR)
    listed = write_figures(results, seed, samples, paths.REPORT_FIGURES_DIR)
    provenance = {**summary, "models": {name: r.provenance() for name, r in results.items()},
                  "figure_images": {s.split: s.file for s in samples}}
    write_json(paths.REPORT_PROVENANCE, provenance)
    index = document.render(summary, tables, listed, provenance["models"], TITLES)
    with atomic_path(paths.REPORT_INDEX) as tmp:
        tmp.write_text(index)
    return paths.REPORT_INDEX
