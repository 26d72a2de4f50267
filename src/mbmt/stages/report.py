"""Write the paper's tables and figures to reports/, each measured value beside the published one.

Reads metrics/MODEL/seedS.{json,images.npz} and models/MODEL/seedS/{model.pt, live/} for every
model of params.yaml and every seed of params seeds, and data/processed/test.h5
(data/processed/real.h5 too when it exists) with manifest.json. Writes reports/README.md (the
index: facts, tables, figures, provenance), reports/tables/*.{md,csv,html} (architectures,
parameters, results with the later published results beside the paper's, relative improvements
with their significance, paired differences with params report.bootstrap's intervals; run: what
was run; ours: mean ± sample std over the seeds),
reports/figures/*.png (training curves per task, predictions on params report.qualitative_images
images) and reports/provenance.json (the md5 DVC records for every file a number came from).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """All settings come from params (report.*); the stage takes no options of its own."""


def main(args: argparse.Namespace) -> int:
    from mbmt.config import load_params
    from mbmt.reporting.build import write_report

    index = write_report(load_params(args.params))
    print(f"{index}: the report (tables in {index.parent / 'tables'}, figures in {index.parent / 'figures'})")
    return 0
