"""Evaluation: a trained model over a whole split, batched, without augmentation -> the metrics JSON."""

from mbmt.evaluation.evaluate import (
    EvaluateSettings,
    accumulate_metrics,
    evaluate_model_file,
    non_finite_metrics,
    read_per_image,
    write_per_image,
)

__all__ = ["EvaluateSettings", "accumulate_metrics", "evaluate_model_file", "non_finite_metrics", "read_per_image",
           "write_per_image"]
