"""Metrics of a model over a split: used for validation curves in training and by `mbmt evaluate`.

Evaluation runs in float32 (no autocast) under torch.inference_mode, on the whole split in
order, without augmentation. The metrics file holds DESIGN §3's blocks under the averaging of
params evaluate.averaging, the other averaging's blocks beside them under "<other>_averaged",
and a "context" block saying what was evaluated, how, and where.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mbmt.errors import MbmtError
from mbmt.metrics import AVERAGINGS, MetricAccumulator


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """A loader batch's tensors on ``device``, copied without blocking (loaders pin memory on CUDA)."""
    moved = {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
             for key, value in batch.items()}
    if channels_last:
        moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
    return moved


def accumulate_metrics(model: torch.nn.Module, loader: Iterable[dict], tasks: Iterable[str], *,
                       device: torch.device, channels_last: bool = False) -> MetricAccumulator:
    """Run ``model`` (in eval mode, restored afterwards) over ``loader``; the filled accumulator."""
    accumulator = MetricAccumulator(tasks)
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


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of a state dict that hold a NaN or an infinity.

    One reduction per tensor on its device, then a single host synchronisation for all of them.
    """
    named = [(key, value) for key, value in state.items() if value.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(value).all() for _, value in named]).tolist()
    return [key for (key, _), ok in zip(named, finite) if not ok]


def non_finite_metrics(blocks: dict[str, dict[str, float | None]]) -> list[str]:
    """"task/metric" of each NaN or infinite value of metric blocks {task: {metric: value}}
    (None, a metric without a valid pixel in the split, is not a value)."""
    return [f"{task}/{key}={value}" for task, metrics in blocks.items() for key, value in metrics.items()
            if value is not None and not math.isfinite(value)]


def evaluate_model_file(path: str | Path, params: dict) -> dict[str, Any]:
    """The metrics JSON of the model file ``path`` on split params evaluate.split."""
    from mbmt.data.dataset import NYUv2Dataset
    from mbmt.models import load_model
    from mbmt.paths import split_file
    from mbmt.provenance import collect
    from mbmt.io import sha256_file
    from mbmt.training.distributed import resolve_device

    path = Path(path)
    if not path.is_file():
        raise MbmtError(f"{path}: trained model not found; run `mbmt train {path.parent.name}` first")
    settings = params["evaluate"]
    split, averaging = settings["split"], settings["averaging"]
    device = resolve_device(params["train"]["device"])
    channels_last = bool(params["train"]["channels_last"])

    model, meta = load_model(path, map_location="cpu")
    retrain = f"retrain it with a lower train.lr (`mbmt train {meta['name']}`)"
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise MbmtError(f"{path}: weights or buffers are not finite ({len(bad)} tensors, e.g. {', '.join(bad[:3])}): "
                        f"the training that wrote it diverged; {retrain}")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    dataset = NYUv2Dataset(split_file(split))
    loader = DataLoader(dataset, batch_size=settings["batch_size"], shuffle=False,
                        num_workers=params["train"]["num_workers"], pin_memory=device.type == "cuda")
    accumulator = accumulate_metrics(model, loader, model.tasks, device=device, channels_last=channels_last)

    other = next(a for a in AVERAGINGS if a != averaging)
    blocks, other_blocks = accumulator.compute(averaging), accumulator.compute(other)
    bad = non_finite_metrics(blocks) + non_finite_metrics(other_blocks)
    if bad:
        raise MbmtError(f"{path}: its metrics on split {split} are not finite ({', '.join(bad[:3])}): the model's "
                        f"predictions overflow; {retrain}")
    return {
        **blocks,
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
            "batch_size": settings["batch_size"],
            "units": "percent: miou, pix_acc, within_*; metres: depth loss, abs_err; rel_err: fraction of "
                     "the true depth; normal loss: 1 - cosine; degrees: normal mean, median",
            "provenance": collect(params, str(device)),
            "training_provenance": (meta.get("extra") or {}).get("provenance"),
        },
    }
