"""Evaluation metrics of the three tasks, streamed over a split, in the paper's units.

`MetricAccumulator` takes one batch at a time (`update`), keeps only sums and counts as tensors
(so DDP ranks can add theirs with `all_reduce`), and gives the set's metrics with `compute`:

| task | keys | unit |
| --- | --- | --- |
| semantic | loss, miou, pix_acc | cross-entropy; percent; percent |
| depth | loss, abs_err, rel_err | metres; metres; fraction of the true depth |
| normal | loss, mean, median, within_11_25, within_22_5, within_30 | 1 - cosine; degrees; degrees; percent |

Only valid pixels count (label != -1, depth != 0, normal not all-zero; see `mbmt.losses`).
The angle error is acos(clip(n_pred . n_true, -1, 1)) of the two normals scaled to unit length.

Two averaging conventions for the losses, the depth errors and the normal errors:

- ``"pixel"`` (the default): every valid pixel of the whole set weighs the same: a loss or error
  is its sum over all valid pixels divided by their number; the median and the "within" rates
  are those of all the set's angle errors.
- ``"batch"``: MTAN's convention: the value of each batch (its mean over its own valid pixels,
  the median and "within" rates of its own angles) averaged over the batches, so it depends on
  the batch size and on how many valid pixels each batch has. A batch without a valid pixel for
  a task is left out of that task's average (MTAN would get NaN). A batch is what one `update`
  adds (`mbmt evaluate`: evaluate.batch_size), or, with ``batch_images=n``, each run of n
  consecutive images of the stream of updates, whatever batches they came in (training's
  validation: MTAN's test batch, mbmt.evaluation.protocol.VAL_METRIC_BATCH).

mIoU and pixel accuracy come in both conventions from one 13x13 confusion matrix accumulated
over the whole set (as in MTAN's current code): IoU_c = TP / (TP + FP + FN), averaged over the
classes that occur in the ground truth or the predictions of the set (a class occurring in
neither has no IoU); pixel accuracy = correct labelled pixels / labelled pixels.

Per image (``MetricAccumulator(tasks, per_image=True)``, `per_image_rows`): the sums and counts
behind the pixel-averaged metrics, one row per image (PER_IMAGE_KEYS). Summed over any set of
images they give that set's pixel-averaged metrics (`metrics_from_sums`): mIoU and pixel accuracy
from the summed confusion matrix, the depth errors, the mean angle and the "within" rates from
their sums. The median angle and the losses are not among them, and neither is the "batch"
convention (a mean of per-batch values), except with batches of one image.

The set's median angle comes from a histogram of ANGLE_BIN_DEG = 0.001 degree bins: each angle
is read as its bin's centre, so the median is within 0.0005 degrees of the exact one (the mean
and the rates are exact). A metric with no valid pixel in the whole set is None (JSON null).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from mbmt.device import to_numpy
from mbmt.losses import LOSS_TERMS, cosine, depth_valid, normal_valid, semantic_valid
from mbmt.tasks import NUM_CLASSES, TASKS

AVERAGINGS = ("pixel", "batch")
ANGLE_BIN_DEG = 1e-3
ANGLE_BINS = round(180 / ANGLE_BIN_DEG)
WITHIN_DEG = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}
# The quantities averaged per pixel ("sums", divided by "count") and per batch ("batch_sums",
# divided by "batches"), in this order.
PIXEL_MEANS = {"semantic": ("loss",), "depth": ("loss", "abs_err", "rel_err"), "normal": ("loss", "mean")}
BATCH_MEANS = {
    "semantic": ("loss",),
    "depth": ("loss", "abs_err", "rel_err"),
    "normal": ("loss", "mean", "median", *WITHIN_DEG),
}

# The per-image rows, by task: sums and counts over the image's valid pixels.
PER_IMAGE_KEYS = {
    "semantic": ("confusion",),
    "depth": ("depth_abs_sum", "depth_rel_sum", "depth_count"),
    "normal": ("normal_angle_sum", "normal_count", "normal_within"),
}
# The metrics that follow from the per-image sums, by task.
SUMMABLE_METRICS = {"semantic": ("miou", "pix_acc"), "depth": ("abs_err", "rel_err"),
                    "normal": ("mean", *WITHIN_DEG)}


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, scale: float = 1.0) -> float | None:
    return None if float(denominator) == 0 else float(numerator) / float(denominator) * scale


def median_of(values: torch.Tensor) -> torch.Tensor:
    """The median as numpy defines it: the mean of the two middle values of an even count."""
    n = values.numel()
    lower = values.kthvalue((n + 1) // 2).values
    upper = values.kthvalue(n // 2 + 1).values
    return (lower + upper) / 2


def histogram_median(histogram: torch.Tensor, bin_width: float) -> float | None:
    """`median_of` for values known only by their bin, each read as its bin's centre."""
    cumulative = histogram.cumsum(0)
    n = int(cumulative[-1])
    if n == 0:
        return None
    ranks = torch.tensor([(n - 1) // 2 + 1, n // 2 + 1], dtype=cumulative.dtype)  # 1-based middle ranks
    bins = torch.searchsorted(cumulative, ranks)  # the first bin holding that many values
    return float((bins.double() + 0.5).mean()) * bin_width


def miou_and_accuracy(confusion: torch.Tensor) -> tuple[float | None, float | None]:
    """(mIoU, pixel accuracy) in percent from a confusion matrix (rows: truth, columns: prediction)."""
    confusion = confusion.double()
    hits = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - hits
    present = union > 0
    miou = float((hits[present] / union[present]).mean()) * 100 if present.any() else None
    return miou, _ratio(hits.sum(), confusion.sum(), 100)


def _divide(numerator: np.ndarray, denominator: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """numerator / denominator * scale, NaN where the denominator is 0."""
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1) * scale, np.nan)


def metrics_from_sums(sums: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """SUMMABLE_METRICS of a set of images from their summed per-image rows (PER_IMAGE_KEYS without
    the image axis; any leading axes, e.g. bootstrap samples, are kept). NaN: no valid pixel."""
    results: dict[str, dict[str, np.ndarray]] = {}
    if "confusion" in sums:
        confusion = np.asarray(sums["confusion"], dtype=np.float64)
        hits = np.diagonal(confusion, axis1=-2, axis2=-1)
        union = confusion.sum(-2) + confusion.sum(-1) - hits
        present = union > 0
        iou = np.where(present, hits / np.where(present, union, 1), 0.0)
        results["semantic"] = {"miou": _divide(iou.sum(-1), present.sum(-1), 100),
                               "pix_acc": _divide(hits.sum(-1), confusion.sum((-2, -1)), 100)}
    if "depth_count" in sums:
        count = sums["depth_count"]
        results["depth"] = {"abs_err": _divide(sums["depth_abs_sum"], count),
                            "rel_err": _divide(sums["depth_rel_sum"], count)}
    if "normal_count" in sums:
        count = sums["normal_count"]
        within = np.asarray(sums["normal_within"])
        results["normal"] = {"mean": _divide(sums["normal_angle_sum"], count),
                             **{name: _divide(within[..., i], count, 100) for i, name in enumerate(WITHIN_DEG)}}
    return results


def depth_errors(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(valid, absolute error, relative error) per pixel, in float64; errors 0 where not valid."""
    valid = depth_valid(target)
    pred, target = pred.double(), target.double()
    error = torch.where(valid, (pred - target).abs(), 0.0)
    relative = torch.where(valid, error / torch.where(valid, target, 1.0), 0.0)
    return valid, error, relative


def normal_angles(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid, angle error in degrees) per pixel, in float64."""
    return normal_valid(target), torch.rad2deg(torch.acos(cosine(pred.double(), target.double()).clamp(-1, 1)))


def _thresholds(angle: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(WITHIN_DEG.values()), dtype=angle.dtype, device=angle.device)


def normal_batch_values(valid: torch.Tensor, angle: torch.Tensor, loss_sum: torch.Tensor) -> torch.Tensor:
    """A batch's values of BATCH_MEANS["normal"] from its angles (zeros without a valid pixel)."""
    # MTAN's per-batch median needs the batch's angles themselves (boolean indexing syncs).
    angles = angle[valid]
    if angles.numel() == 0:
        return torch.zeros(len(BATCH_MEANS["normal"]), dtype=torch.float64, device=angle.device)
    rates = (angles[:, None] < _thresholds(angle)).double().mean(0) * 100
    return torch.cat([torch.stack([loss_sum / angles.numel(), angles.mean(), median_of(angles)]), rates])


def batch_values(task: str, prediction: torch.Tensor, target: torch.Tensor, loss_sum: torch.Tensor,
                 count: torch.Tensor) -> torch.Tensor:
    """One batch's values of BATCH_MEANS[task] (MTAN's per-batch numbers); ``loss_sum``, ``count``:
    its `mbmt.losses.LOSS_TERMS` (the sum in float64). What `MetricAccumulator.update` adds per batch."""
    if task == "semantic":
        return loss_sum[None] / count.clamp(min=1)
    if task == "depth":
        _, error, relative = depth_errors(prediction, target)
        return torch.stack([loss_sum, error.sum(), relative.sum()]) / count.clamp(min=1)
    valid, angle = normal_angles(prediction, target)
    return normal_batch_values(valid, angle, loss_sum)


class MetricAccumulator:
    """Streaming metrics of ``tasks`` (see the module docstring for definitions and conventions).

    The state lives on the device of the first batch's outputs; `compute` reads it back. With
    ``per_image``, `per_image_rows` also gives each image's sums (one host sync per batch).
    """

    def __init__(self, tasks: Iterable[str], *, num_classes: int = NUM_CLASSES, per_image: bool = False,
                 batch_images: int | None = None):
        if batch_images is not None and batch_images < 1:
            raise ValueError(f"batch_images must be a positive number of images or None, not {batch_images!r}")
        tasks = tuple(tasks)
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; expected some of {TASKS}")
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.num_classes = num_classes
        self.state: dict[str, torch.Tensor] = {}
        for task in self.tasks:
            self.state[f"{task}.sums"] = torch.zeros(len(PIXEL_MEANS[task]), dtype=torch.float64)
            self.state[f"{task}.count"] = torch.zeros((), dtype=torch.int64)
            self.state[f"{task}.batch_sums"] = torch.zeros(len(BATCH_MEANS[task]), dtype=torch.float64)
            self.state[f"{task}.batches"] = torch.zeros((), dtype=torch.int64)
        if "semantic" in self.tasks:
            self.state["semantic.confusion"] = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        if "normal" in self.tasks:
            self.state["normal.within"] = torch.zeros(len(WITHIN_DEG), dtype=torch.int64)
            self.state["normal.histogram"] = torch.zeros(ANGLE_BINS, dtype=torch.int64)
        # Per-image rows, batch by batch, on the CPU: name -> list of (B, ...) arrays.
        self.rows: dict[str, list[np.ndarray]] | None = None
        # The "batch" averaging's batches: None = each update; n = runs of n images, the images of an
        # unfinished run kept here (task -> [(prediction, target)]) until the next update completes it.
        self.batch_images = batch_images
        self.pending: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {task: [] for task in self.tasks}
        if per_image:
            self.rows = {"index": []} | {key: [] for task in self.tasks for key in PER_IMAGE_KEYS[task]}

    def _to(self, device: torch.device) -> None:
        for name, value in self.state.items():
            self.state[name] = value.to(device)

    @torch.no_grad()
    def update(self, outputs: dict[str, torch.Tensor], batch: dict) -> None:
        """Add one batch: ``outputs`` as the model returns them, ``batch`` with the targets (and,
        for per-image rows, "index": each image's index in the split)."""
        if self.rows is not None:
            # Host metadata (mbmt.device.HOST_KEYS), but read back should a caller have moved it.
            self.rows["index"].append(to_numpy(batch["index"], dtype=np.int64).reshape(-1))
        for task in self.tasks:
            prediction = outputs[task]
            if self.state[f"{task}.count"].device != prediction.device:
                self._to(prediction.device)
            target = batch[task].to(prediction.device)
            loss_sum, count = LOSS_TERMS[task](prediction, target)
            sums, values = getattr(self, f"_{task}")(prediction, target, loss_sum.double(), count)
            self.state[f"{task}.sums"] += sums
            self.state[f"{task}.count"] += count
            if self.batch_images is None:
                self._add_batch(task, values, count)
            else:
                self._add_runs(task, prediction, target)

    def _add_batch(self, task: str, values: torch.Tensor, count: torch.Tensor) -> None:
        """Add one batch's values of BATCH_MEANS[task] (``count``: its valid pixels)."""
        # Sync-free: a batch without a valid pixel adds zeros and is not counted.
        self.state[f"{task}.batch_sums"] += torch.where(count > 0, values, 0.0)
        self.state[f"{task}.batches"] += (count > 0).long()

    def _add_group(self, task: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
        loss_sum, count = LOSS_TERMS[task](prediction, target)
        self._add_batch(task, batch_values(task, prediction, target, loss_sum.double(), count), count)

    def _add_runs(self, task: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add the complete runs of ``batch_images`` images among the pending ones and these."""
        pending = self.pending[task]
        if pending:
            prediction = torch.cat([p for p, _ in pending] + [prediction])
            target = torch.cat([t for _, t in pending] + [target])
        size, images = self.batch_images, prediction.shape[0]
        complete = images - images % size
        for start in range(0, complete, size):
            self._add_group(task, prediction[start:start + size], target[start:start + size])
        # A copy: the caller may reuse the batch's memory.
        self.pending[task] = [(prediction[complete:].clone(), target[complete:].clone())] if complete < images else []

    def finish(self) -> None:
        """Add the last, shorter run of ``batch_images`` images, if any (as a DataLoader's last batch).
        `all_reduce` and `compute` call it; no `update` may follow."""
        for task, pending in self.pending.items():
            if pending:
                self.pending[task] = []
                self._add_group(task, torch.cat([p for p, _ in pending]), torch.cat([t for _, t in pending]))

    # Each task's update returns (the sums of PIXEL_MEANS, this batch's values of BATCH_MEANS).

    def _semantic(self, logits, target, loss_sum, count) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.num_classes
        valid = semantic_valid(target)
        # Unlabelled pixels go to an overflow cell that is dropped: no boolean indexing, no sync.
        cells = torch.where(valid, target * n + logits.argmax(dim=1), n * n)
        self.state["semantic.confusion"] += torch.bincount(cells.flatten(), minlength=n * n + 1)[:-1].view(n, n)
        if self.rows is not None:
            images = cells.shape[0]
            offsets = torch.arange(images, device=cells.device).view(-1, *[1] * (cells.dim() - 1)) * (n * n + 1)
            per_image = torch.bincount((cells + offsets).flatten(), minlength=images * (n * n + 1))
            self._add_rows(confusion=per_image.view(images, n * n + 1)[:, :-1].view(images, n, n))
        sums = loss_sum[None]
        return sums, sums / count.clamp(min=1)

    def _depth(self, pred, target, loss_sum, count) -> tuple[torch.Tensor, torch.Tensor]:
        valid, error, relative = depth_errors(pred, target)
        sums = torch.stack([loss_sum, error.sum(), relative.sum()])
        if self.rows is not None:
            self._add_rows(depth_abs_sum=error.flatten(1).sum(1), depth_rel_sum=relative.flatten(1).sum(1),
                           depth_count=valid.flatten(1).sum(1))
        return sums, sums / count.clamp(min=1)

    def _normal(self, pred, target, loss_sum, count) -> tuple[torch.Tensor, torch.Tensor]:
        valid, angle = normal_angles(pred, target)
        # A NaN angle (a diverged model) is binned as the worst, 180 degrees, not as an invalid index.
        binned = torch.nan_to_num(angle, nan=180.0) / ANGLE_BIN_DEG
        bins = torch.where(valid, binned.long().clamp(max=ANGLE_BINS - 1), ANGLE_BINS)
        self.state["normal.histogram"] += torch.bincount(bins.flatten(), minlength=ANGLE_BINS + 1)[:-1]
        thresholds = _thresholds(angle)
        within = (angle[..., None] < thresholds) & valid[..., None]
        self.state["normal.within"] += within.flatten(0, -2).sum(0)
        sums = torch.stack([loss_sum, torch.where(valid, angle, 0.0).sum()])
        if self.rows is not None:
            self._add_rows(normal_angle_sum=torch.where(valid, angle, 0.0).flatten(1).sum(1),
                           normal_count=valid.flatten(1).sum(1), normal_within=within.flatten(1, -2).sum(1))
        return sums, normal_batch_values(valid, angle, loss_sum)

    def _add_rows(self, **rows: torch.Tensor) -> None:
        for key, value in rows.items():
            self.rows[key].append(to_numpy(value))

    def per_image_rows(self) -> dict[str, np.ndarray]:
        """The per-image rows (PER_IMAGE_KEYS of the tasks, and "index"), one per image added, in order."""
        if self.rows is None:
            raise ValueError("per-image rows need MetricAccumulator(..., per_image=True)")
        dtypes = {"depth_abs_sum": np.float64, "depth_rel_sum": np.float64, "normal_angle_sum": np.float64}
        return {key: np.concatenate(parts).astype(dtypes.get(key, np.int64)) if parts
                else np.zeros(0, dtype=dtypes.get(key, np.int64)) for key, parts in self.rows.items()}

    def all_reduce(self) -> None:
        """Sum the state over the ranks of torch.distributed, if initialised; call once, after the last update."""
        import torch.distributed as dist

        self.finish()
        if not (dist.is_available() and dist.is_initialized()):
            return
        # NCCL reduces CUDA tensors only; other backends take them where they are.
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        for name, value in self.state.items():
            value = value.to(device) if device is not None else value
            dist.all_reduce(value)
            self.state[name] = value

    def compute(self, averaging: str = "pixel") -> dict[str, dict[str, float | None]]:
        """The metrics of everything added so far, per task, in the paper's units."""
        if averaging not in AVERAGINGS:
            raise ValueError(f"averaging must be one of {AVERAGINGS}, not {averaging!r}")
        self.finish()
        state = {name: value.cpu() for name, value in self.state.items()}
        results = {}
        for task in self.tasks:
            if averaging == "pixel":
                names, sums, count = PIXEL_MEANS[task], state[f"{task}.sums"], state[f"{task}.count"]
            else:
                names, sums, count = BATCH_MEANS[task], state[f"{task}.batch_sums"], state[f"{task}.batches"]
            means = {name: _ratio(total, count) for name, total in zip(names, sums)}
            if task == "semantic":
                miou, pix_acc = miou_and_accuracy(state["semantic.confusion"])
                results[task] = {"loss": means["loss"], "miou": miou, "pix_acc": pix_acc}
            elif task == "depth":
                results[task] = means
            elif averaging == "pixel":
                rates = {name: _ratio(hits, count, 100) for name, hits in zip(WITHIN_DEG, state["normal.within"])}
                median = histogram_median(state["normal.histogram"], ANGLE_BIN_DEG)
                results[task] = {"loss": means["loss"], "mean": means["mean"], "median": median, **rates}
            else:
                results[task] = means
        return results
