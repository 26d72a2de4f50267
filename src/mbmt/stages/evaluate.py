"""Evaluate a trained model (models/MODEL/seedSEED/model.pt) on params evaluate.split and write
metrics/MODEL/seedSEED.json.

The whole split, in order, batched by evaluate.batch_size, without augmentation. The file holds
the paper's metric blocks (semantic, depth, normal: those of the model's tasks) under
evaluate.protocol ("final": the trained model; "last_k": MTAN's mean of the last evaluate.k
epochs' validation metrics from the training's live/ log, the trained model's blocks kept under
"final") and evaluate.averaging ("pixel": over all valid pixels of the split; "batch": MTAN's
mean of per-batch values), the other averaging's blocks under "<other>_averaged", and a
"context" block (dataset, split, image count, protocol, checkpoint and its sha256, provenance).
Beside it, metrics/MODEL/seedSEED.images.npz holds the trained model's per-image sums
(mbmt.metrics.PER_IMAGE_KEYS), from which the report's paired comparisons are drawn. A model
whose weights, buffers or metrics are not finite (a diverged training) is refused and nothing is
written.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the stage's --help stays fast
    from mbmt.config import ExecutionSettings
    from mbmt.evaluation import EvaluateSettings
    from mbmt.provenance import ProvenanceLabels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model name of params.yaml `models` or a study job; reads "
                        "models/MODEL/seedSEED/model.pt of the job that trains it (docs/workflow.md, \"Studies\")")
    parser.add_argument("--seed", type=int, help="one of params seeds (default: the only one)")


@dataclass(frozen=True)
class EvaluateJob:
    """What the evaluate stage hands the library, unpacked from the job's params at this boundary:
    params ``evaluate``, the execution settings of params ``train`` (mbmt.config.ExecutionSettings)
    and the provenance labels: the keys the stage declares (mbmt.stage_specs.STAGE_PARAMS), and the labels
    no stage declares (mbmt.provenance.PROVENANCE_PARAMS)."""

    settings: EvaluateSettings
    execution: ExecutionSettings
    labels: ProvenanceLabels


def unpack(params: Mapping) -> EvaluateJob:
    """The evaluate job of a model's ``params`` (the job's own: a study job's variant included)."""
    from mbmt.config import ExecutionSettings
    from mbmt.evaluation import EvaluateSettings
    from mbmt.stages import provenance_labels

    return EvaluateJob(EvaluateSettings.from_section(params["evaluate"]), ExecutionSettings.from_train(params["train"]),
                       provenance_labels(params))


def main(args: argparse.Namespace) -> int:
    from mbmt.config import job_seed, model_params
    from mbmt.stages import job_params, job_plan

    # A study job (mbmt.plan.Plan.study_jobs) runs with its variant's params, its models named as its
    # jobs; one of a variant that changes only `evaluate` evaluates the model file of the job that
    # trains it (Plan.training).
    params = job_params(args)
    model_params(params, args.model)
    seed = job_seed(params, args.seed)
    job = unpack(params)

    from mbmt.evaluation import evaluate_model_file, write_per_image
    from mbmt.io import write_json
    from mbmt.paths import metrics_file, per_image_file

    metrics, rows = evaluate_model_file(job_plan(args).training(args.model), seed, settings=job.settings,
                                        execution=job.execution, labels=job.labels)
    write_per_image(per_image_file(args.model, seed), rows)  # before the metrics file, which marks the job done
    write_json(metrics_file(args.model, seed), metrics)
    print(f"{metrics_file(args.model, seed)}: {args.model} on {metrics['context']['images']} "
          f"{metrics['context']['split']} images")
    return 0
