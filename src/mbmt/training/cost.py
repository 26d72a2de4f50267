"""A word before weeks of work: what training every model of the params would cost on this machine's
CPU, and the refusal both front ends give before the first training when that is hours and no
CUDA device is visible (``train.device: auto`` would quietly train on the CPU).

The estimate is arithmetic on measured speeds: the seconds per training step of each of the
paper's models at 288x384 and batch 2, on one thread of a 2-core Intel Xeon VM (benchmarks/
bench_training.py, docs/training.md "Trainer overhead"), scaled by pixels x batch to the params'
resolution and batch. A model of another name takes the slowest measured EfficientNet model's
time. It is a rough lower bound (validation is left out), meant to tell minutes from months.
Nothing here imports torch until the cost is known to be hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Seconds per training step (the trainer's, one CPU thread) at REFERENCE_PIXELS x batch 2.
MEASURED_STEP_S = {"st_ss": 1.678, "st_de": 4.043, "st_snp": 3.983, "mtnet": 8.574, "mbmt_partial": 7.118,
                   "mbmt_full_pretrained": 13.266, "mbmt_full_scratch": 13.548, "mtan": 80.103}
REFERENCE_PIXELS, REFERENCE_BATCH = 288 * 384, 2
# Images in the training split of NYUv2 (MTAN's copy); the synthetic split's size is a param.
NYUV2_TRAIN_IMAGES = 795
# From this much estimated CPU time on, an unattended `device: auto` run on the CPU is a mistake.
HOURS_BEFORE_ASKING = 2.0


@dataclass(frozen=True)
class PlannedTraining:
    """What the estimate needs of a workflow's params (unpacked by the front ends:
    mbmt.stages.train.planned_training): every model trained once per seed, and each training's shape."""

    profile: str
    models: tuple[str, ...]
    seeds: int
    epochs: int
    batch_size: int
    steps_per_epoch: int | None
    height: int
    width: int
    images: int  # in the training split
    device: str  # params train.device


def training_images(source: str, synthetic_train_size: int) -> int:
    """Images in the training split of data source ``source``."""
    return synthetic_train_size if source == "synthetic" else NYUV2_TRAIN_IMAGES


def cpu_training_seconds(plan: PlannedTraining) -> float:
    """Estimated seconds to train every model of ``plan`` once per seed on one CPU thread."""
    steps = math.ceil(plan.images / plan.batch_size)
    if plan.steps_per_epoch:
        steps = min(steps, plan.steps_per_epoch)
    scale = plan.height * plan.width * plan.batch_size / (REFERENCE_PIXELS * REFERENCE_BATCH)
    fallback = max(MEASURED_STEP_S[name] for name in MEASURED_STEP_S if name != "mtan")
    per_seed = sum(MEASURED_STEP_S.get(name, fallback) for name in plan.models) * scale
    return per_seed * steps * plan.epochs * plan.seeds


def describe_duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.0f} days" if hours >= 48 else f"{hours:.0f} hours" if hours >= 2 else f"{seconds / 60:.0f} minutes"


def cpu_training_refusal(plan: PlannedTraining, source: str = "params") -> str | None:
    """The message that stops a run about to train for hours on the CPU unasked, or None.

    Only ``train.device: auto`` is questioned (``cpu`` is a deliberate choice, ``cuda`` fails by
    itself without a GPU), and only when no CUDA device is visible to this process.
    """
    if plan.device != "auto":
        return None
    seconds = cpu_training_seconds(plan)
    if seconds < HOURS_BEFORE_ASKING * 3600:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return (f"{source} (profile {plan.profile}) would train {len(plan.models)} models x {plan.seeds} "
            f"seed{'s' if plan.seeds != 1 else ''} x {plan.epochs} epochs at {plan.height}x"
            f"{plan.width} on the CPU: train.device is auto and no CUDA device is visible "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). At the one-thread CPU speed "
            f"measured for these models (docs/training.md) that is about {describe_duration(seconds)} of training. "
            "Run it on a machine with a GPU (check: python -c 'import torch; print(torch.cuda.is_available())'); "
            "to train on the CPU deliberately, set train.device: cpu (in params.yaml or a preset)")
