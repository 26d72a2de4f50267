"""Write the paper's tables and figures to reports/, each measured value beside the published one.

Reads metrics/MODEL/seedS.{json,images.npz} and models/MODEL/seedS/{model.pt, live/} for every
model of params.yaml and every seed of params seeds, and data/processed/test.h5
(data/processed/real.h5 too when params data.real_images is set) with manifest.json. Writes reports/README.md (the
index: facts, tables, figures, provenance), reports/tables/*.{md,csv,html} (architectures,
parameters, results with the later published results beside the paper's, relative improvements
with their significance, paired differences with params report.bootstrap's intervals; run: what
was run; ours: mean ± sample std over the seeds),
reports/figures/*.png (training curves per task, predictions on params report.qualitative_images
images) and reports/provenance.json (the md5 DVC records for every file a number came from).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mbmt.reporting.build import ReportSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """All settings come from params (report.*); the stage takes no options of its own."""


def report_settings(params: Mapping) -> ReportSettings:
    """The report's settings: its params keys (report, data.real_images, seeds, studies) unpacked here,
    and what the plan derives from the params (the models, the single-task ones, each study's jobs)."""
    from mbmt.plan import Plan
    from mbmt.reporting.build import ReportSettings, StudyPlan

    plan, report = Plan(params), params["report"]
    return ReportSettings(
        models=tuple(plan.models),
        single_task=tuple(plan.single_task_models),
        seeds=tuple(params["seeds"]),
        qualitative_images=report["qualitative_images"],
        bootstrap=report["bootstrap"],
        real_images=bool(params["data"]["real_images"]),
        studies=tuple(StudyPlan(name, study, plan.study_members(name))
                      for name, study in plan.studies.items()),
    )


def main(args: argparse.Namespace) -> int:
    from mbmt.config import load_params
    from mbmt.reporting.build import write_report

    index = write_report(report_settings(load_params(args.params)))
    print(f"{index}: the report (tables in {index.parent / 'tables'}, figures in {index.parent / 'figures'})")
    return 0
