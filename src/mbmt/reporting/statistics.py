"""Spread over seeds and paired comparisons over test images: pure functions, checkable by hand.

- `spread`: the mean and the sample standard deviation (ddof=1) of a metric over seeds; one seed
  has no spread (n=1).
- `paired_intervals`: a paired bootstrap of "model A minus model B" over the test images. Each
  resample draws the split's images with replacement; the same draw is applied to both models
  and to every seed (paired: the same images, the same seed's runs compared). For each seed
  pair the metric is recomputed from the summed per-image rows (mbmt.metrics.metrics_from_sums,
  pixel averaging), the differences are averaged over the seeds, and the 2.5 and 97.5
  percentiles of that average over the resamples bound the 95 % interval. A difference is
  significant when its interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mbmt.errors import MbmtError
from mbmt.metrics import PER_IMAGE_KEYS, SUMMABLE_METRICS, metrics_from_sums

CONFIDENCE = 0.95

Rows = Mapping[str, np.ndarray]  # one per-image file: "index" and PER_IMAGE_KEYS of some tasks


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float | None  # sample standard deviation over seeds; None with one seed
    n: int


def spread(values: Sequence[float | None]) -> Spread | None:
    """Mean and sample std (ddof=1) of one metric over seeds; None if any seed lacks the value."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    array = np.asarray(values, dtype=np.float64)
    return Spread(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None, len(array))


@dataclass(frozen=True)
class Interval:
    """A difference (A - B, in the metric's unit, averaged over seeds) and its 95 % interval."""

    difference: float
    low: float
    high: float
    seeds: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def resample_counts(images: int, samples: int, seed: int) -> np.ndarray:
    """(samples, images): how often each image is drawn in each bootstrap resample of the split."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1.0 / images), size=samples)


def task_sums(rows: Rows, task: str, counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-image rows of ``task`` summed over the images; with ``counts`` (samples, images),
    once per resample, each image weighted by how often it is drawn."""
    sums = {}
    for key in PER_IMAGE_KEYS[task]:
        if key not in rows:
            raise MbmtError(f"per-image rows without {key!r}: the model does not predict {task}")
        values = np.asarray(rows[key])
        if counts is None:
            sums[key] = values.sum(0)
        else:
            flat = values.reshape(len(values), -1).astype(np.float64)
            sums[key] = (counts @ flat).reshape(len(counts), *values.shape[1:])
    return sums


def paired_intervals(a: Sequence[Rows], b: Sequence[Rows], task: str, *, samples: int, seed: int,
                     label: str = "") -> dict[str, Interval]:
    """Paired bootstrap intervals of A - B for each SUMMABLE_METRICS key of ``task``. ``a`` and
    ``b``: the per-image rows of the two models, one per seed, in the same seed order."""
    if len(a) != len(b) or not a:
        raise MbmtError(f"{label}: paired comparison needs the same seeds for both models "
                        f"({len(a)} and {len(b)} per-image files)")
    images = len(a[0]["index"])
    for rows in (*a, *b):
        if not np.array_equal(rows["index"], a[0]["index"]):
            raise MbmtError(f"{label}: the per-image files do not cover the same test images; "
                            "re-run `mbmt evaluate` for every model on the same split")
    counts = resample_counts(images, samples, seed)
    points, draws = [], []
    for rows_a, rows_b in zip(a, b):
        whole_a, whole_b = metrics_from_sums(task_sums(rows_a, task)), metrics_from_sums(task_sums(rows_b, task))
        drawn_a = metrics_from_sums(task_sums(rows_a, task, counts))
        drawn_b = metrics_from_sums(task_sums(rows_b, task, counts))
        points.append({key: whole_a[task][key] - whole_b[task][key] for key in SUMMABLE_METRICS[task]})
        draws.append({key: drawn_a[task][key] - drawn_b[task][key] for key in SUMMABLE_METRICS[task]})
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals = {}
    for key in SUMMABLE_METRICS[task]:
        mean_draws = np.mean([d[key] for d in draws], axis=0)
        low, high = np.nanpercentile(mean_draws, [tail, 100 - tail])
        point = float(np.mean([p[key] for p in points]))
        intervals[key] = Interval(point, float(low), float(high), len(a))
    return intervals


def merge_rows(parts: Sequence[Rows], label: str = "") -> dict[str, np.ndarray]:
    """One model's rows from several single-task models' rows of the same images (the ST-Nets)."""
    merged: dict[str, np.ndarray] = {}
    for rows in parts:
        if "index" in merged and not np.array_equal(merged["index"], rows["index"]):
            raise MbmtError(f"{label}: the single-task models' per-image files do not cover the same images")
        merged |= dict(rows)
    return merged
