"""Metrics of a model over a split: used for validation curves in training and by `mbmt evaluate`.

Evaluation runs in float32 (no autocast) under torch.inference_mode, on the whole split in
order, without augmentation. The metrics file holds DESIGN §3's blocks under the reporting
protocol of params evaluate.protocol (mbmt.evaluation.protocol) and the averaging of
evaluate.averaging, the other averaging's blocks beside them under "<other>_averaged", and a
"context" block saying what was evaluated, how, and where. Under protocol last_k the trained
model's own blocks are kept under "final". The same pass yields the per-image rows
(mbmt.metrics.PER_IMAGE_KEYS) of the trained model, written beside the metrics file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mbmt.config import ExecutionSettings
from mbmt.device import non_finite_tensors, resolve_device, to_device
from mbmt.errors import MbmtError
from mbmt.evaluation.protocol import VAL_METRIC_BATCH, last_k_blocks
from mbmt.io import atomic_path
from mbmt.metrics import AVERAGINGS, MetricAccumulator
from mbmt.provenance import ProvenanceLabels


@dataclass(frozen=True)
class EvaluateSettings:
    """Params ``evaluate``, read-only: the split, its batches, the averaging and reporting protocol."""

    split: str
    batch_size: int
    averaging: str
    protocol: str
    k: int

    @classmethod
    def from_section(cls, evaluate: Mapping) -> EvaluateSettings:
        """From params' `evaluate` section (not the whole params)."""
        return cls(**{field.name: evaluate[field.name] for field in fields(cls)})


def accumulate_metrics(model: torch.nn.Module, loader: Iterable[dict], tasks: Iterable[str], *,
                       device: torch.device, channels_last: bool = False, per_image: bool = False,
                       batch_images: int | None = None) -> MetricAccumulator:
    """Run ``model`` (in eval mode, restored afterwards) over ``loader``; the filled accumulator.
    ``batch_images``: the "batch" averaging's batch (mbmt.metrics.MetricAccumulator), None = the loader's."""
    accumulator = MetricAccumulator(tasks, per_image=per_image, batch_images=batch_images)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = to_device(batch, device, channels_last)
                outputs = model(batch["image"])
                accumulator.update({task: out.float() for task, out in outputs.items()}, batch)
    finally:
        model.train(was_training)
    return accumulator


def non_finite_metrics(blocks: dict[str, dict[str, float | None]]) -> list[str]:
    """"task/metric" of each NaN or infinite value of metric blocks {task: {metric: value}}
    (None, a metric without a valid pixel in the split, is not a value)."""
    return [f"{task}/{key}={value}" for task, metrics in blocks.items() for key, value in metrics.items()
            if value is not None and not math.isfinite(value)]


def write_per_image(path: str | Path, rows: Mapping[str, np.ndarray]) -> None:
    """The per-image rows as one .npz file, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **rows)


def read_per_image(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def trained_augmentation(meta: Mapping[str, Any]) -> str | None:
    """The training augmentation of a model file (mbmt.data.augment: "none", "mtan-like" or "mtan"),
    from the run settings training recorded in it; None if it records none (not trained by `mbmt train`)."""
    from mbmt.data.augment import augment_mode

    settings = (((meta.get("extra") or {}).get("run") or {}).get("settings") or {}).get("train") or {}
    if "augment" not in settings:
        return None
    return augment_mode(settings["augment"]) or "none"


def evaluate_model_file(name: str, seed: int, *, settings: EvaluateSettings, execution: ExecutionSettings,
                        labels: ProvenanceLabels) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metrics JSON of model ``name`` trained with ``seed`` (its model file) on split
    ``settings.split`` (params evaluate), run as ``execution`` says (params train.device,
    channels_last, num_workers), and the trained model's per-image rows."""
    from mbmt.data.dataset import NYUv2Dataset
    from mbmt.models import load_model
    from mbmt.paths import live_dir, model_file, split_file
    from mbmt.provenance import collect_for
    from mbmt.io import sha256_file

    path = model_file(name, seed)
    train = f"mbmt train {name} --seed {seed}"
    if not path.is_file():
        raise MbmtError(f"{path}: trained model not found; run `{train}` first")
    split, averaging, protocol = settings.split, settings.averaging, settings.protocol
    device = resolve_device(execution.device)
    channels_last = bool(execution.channels_last)

    model, meta = load_model(path, map_location="cpu")
    retrain = f"retrain it with a lower train.lr (`{train}`)"
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise MbmtError(f"{path}: weights or buffers are not finite ({len(bad)} tensors, e.g. {', '.join(bad[:3])}): "
                        f"the training that wrote it diverged; {retrain}")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    dataset = NYUv2Dataset(split_file(split))
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False,
                        num_workers=execution.num_workers, pin_memory=device.type == "cuda")
    accumulator = accumulate_metrics(model, loader, model.tasks, device=device, channels_last=channels_last,
                                     per_image=True)

    other = next(a for a in AVERAGINGS if a != averaging)
    blocks, other_blocks = accumulator.compute(averaging), accumulator.compute(other)
    bad = non_finite_metrics(blocks) + non_finite_metrics(other_blocks)
    if bad:
        raise MbmtError(f"{path}: its metrics on split {split} are not finite ({', '.join(bad[:3])}): the model's "
                        f"predictions overflow; {retrain}")
    reported: dict[str, Any] = blocks
    protocol_context: dict[str, Any] = {"protocol": protocol, "augment": trained_augmentation(meta)}
    if protocol == "last_k":
        epochs = (meta.get("extra") or {}).get("epochs")
        if epochs is None:
            raise MbmtError(f"{path}: records no training epochs, so evaluate.protocol last_k has no validation "
                            f"log to average; retrain it (`{train}`) or set evaluate.protocol: final")
        reported, averaged = last_k_blocks(live_dir(name, seed), blocks, settings.k, epochs, train, averaging)
        reported = {**reported, "final": blocks}
        protocol_context |= {"k": settings.k, "epochs_averaged": averaged}
        if averaging == "batch":
            # The reported blocks' batches: training's validation pairs, not evaluate.batch_size's.
            protocol_context["val_batch_size"] = VAL_METRIC_BATCH
    metrics = {
        **reported,
        f"{other}_averaged": other_blocks,
        "context": {
            "model": meta["name"],
            "tasks": list(model.tasks),
            "dataset": dataset.attrs["source"],
            "split": split,
            "images": len(dataset),
            "resolution": [int(dataset.attrs["height"]), int(dataset.attrs["width"])],
            "checkpoint": str(path),
            "checkpoint_sha256": sha256_file(path),
            "averaging": averaging,
            **protocol_context,
            "batch_size": settings.batch_size,
            "units": "percent: miou, pix_acc, within_*; metres: depth loss, abs_err; rel_err: fraction of "
                     "the true depth; normal loss: 1 - cosine; degrees: normal mean, median",
            "provenance": collect_for(labels, str(device)),
            "training_provenance": (meta.get("extra") or {}).get("provenance"),
        },
    }
    return metrics, accumulator.per_image_rows()
