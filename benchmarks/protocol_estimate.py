"""What the full protocol will cost: per-model training time and the whole DAG's wall time.

Pure arithmetic on measured speeds (benchmarks/bench_training.py measures them):

- a model's training = epochs x (steps per epoch x seconds per step + checkpoint and log)
  + (epochs // val_every) validation passes over the test split;
- its evaluation job = one pass over the test split (process start-up and model building, a few
  seconds, are left out);
- the DAG = every training and evaluation, each model trained after the models of its
  ``init_from``, run by a scheduler that starts the ready jobs in DAG order as soon as the GPU
  memory they request is free (a profile's ``gpu_mem_gb`` limit and per-rule requests). Jobs that
  share a GPU slow each other down by an unknown factor (``slowdown``, 1 = not at all, which
  makes the estimate a lower bound; benchmarks/gpu_check.sh measures the real one).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

NYUV2_TRAIN, NYUV2_TEST = 795, 654
GPU_MEMORY_RESOURCE = "gpu_mem_gb"


@dataclass(frozen=True)
class ModelSpeed:
    """Measured seconds of one model: a training step, one test image validated, per-epoch extras."""

    step_s: float
    val_image_s: float
    extras_s: float = 0.0


def training_seconds(speed: ModelSpeed, train: dict, train_images: int = NYUV2_TRAIN,
                     test_images: int = NYUV2_TEST) -> float:
    """Wall time of one training under params ``train`` (epochs, batch_size, steps_per_epoch, val_every)."""
    steps = math.ceil(train_images / train["batch_size"])
    if train["steps_per_epoch"]:
        steps = min(steps, train["steps_per_epoch"])
    validations = train["epochs"] // train["val_every"] if train["val_every"] else 0
    return (train["epochs"] * (steps * speed.step_s + speed.extras_s)
            + validations * test_images * speed.val_image_s)


def dag_seconds(trainings: dict[str, float], evaluations: dict[str, float], init_from: dict[str, list[str]],
                gpu_memory: float | None = None, requests: dict[str, float] | None = None,
                slowdown: float = 1.0) -> float:
    """Wall time of every training and evaluation (see the module docstring).

    ``trainings`` and ``evaluations`` map model names, in DAG order, to seconds when run alone.
    A job of kind "train" or "evaluate" holds ``requests[kind]`` of ``gpu_memory`` while it runs
    (no ``gpu_memory``: one job at a time). When jobs can share the GPU, each takes ``slowdown``
    times as long.
    """
    requests = requests or {"train": 1.0, "evaluate": 1.0}
    if gpu_memory is None:
        gpu_memory, requests = 1.0, {"train": 1.0, "evaluate": 1.0}
    if max(requests.values()) > gpu_memory:
        raise ValueError(f"a job requests {max(requests.values())} of a GPU memory of {gpu_memory}")
    factor = slowdown if gpu_memory >= 2 * min(requests.values()) else 1.0
    jobs = [("train", name) for name in trainings] + [("evaluate", name) for name in evaluations]
    order = {job: i for i, job in enumerate(jobs)}
    needs = {("train", name): {("train", dep) for dep in init_from.get(name) or []} for name in trainings}
    needs.update({("evaluate", name): {("train", name)} for name in evaluations})
    seconds = {("train", n): s for n, s in trainings.items()} | {("evaluate", n): s for n, s in evaluations.items()}
    done: set = set()
    running: list[tuple[float, int, tuple[str, str]]] = []  # (end time, DAG position, job)
    waiting = list(jobs)
    now, free = 0.0, gpu_memory
    while waiting or running:
        for job in [job for job in waiting if needs[job] <= done]:
            if requests[job[0]] <= free:
                waiting.remove(job)
                free -= requests[job[0]]
                heapq.heappush(running, (now + seconds[job] * factor, order[job], job))
        if not running:
            raise ValueError(f"jobs {waiting} wait for models that are not trained")
        now, _, job = heapq.heappop(running)
        free += requests[job[0]]
        done.add(job)
    return now


def profile_gpu_memory(profile: str | Path) -> tuple[float | None, dict[str, float]]:
    """A Snakemake profile's ``resources: gpu_mem_gb=`` limit (None without one) and its
    ``set-resources`` request of each rule kind ("train" for train and train_from_st, "evaluate")."""
    config = yaml.safe_load(Path(profile).read_text()) or {}
    limits = dict(item.split("=", 1) for item in config.get("resources") or [])
    rules = config.get("set-resources") or {}
    requests = {kind: float(rules.get(kind, {}).get(GPU_MEMORY_RESOURCE, 0)) for kind in ("train", "evaluate")}
    if GPU_MEMORY_RESOURCE not in limits or not all(requests.values()):
        return None, {"train": 1.0, "evaluate": 1.0}
    return float(limits[GPU_MEMORY_RESOURCE]), requests


def duration(seconds: float) -> str:
    """H:MM:SS."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
