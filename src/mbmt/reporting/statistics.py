"""Spread over seeds and paired comparisons over test images: pure functions, checkable by hand.

- `spread`: the mean and the sample standard deviation (ddof=1) of a metric over seeds; one seed
  has no spread (n=1).
- `paired_intervals`: a paired bootstrap of "model A minus model B" over the test images. Each
  resample draws the split's images with replacement; the same draw is applied to both models
  and to every seed (paired: the same images, the same seed's runs compared). For each seed
  pair the metric is recomputed from the summed per-image rows (mbmt.metrics.metrics_from_sums,
  pixel averaging), the differences are averaged over the seeds, and the 2.5 and 97.5
  percentiles of that average over the resamples bound the 95 % interval. Beside it: the
  two-sided bootstrap p (`bootstrap_p`) and the seed spread (the sample std of the per-seed
  differences).
- `holm` / `holm_adjusted`: the Holm–Bonferroni correction of those p over a family of
  comparisons. A difference is significant when its Holm-adjusted p is below ALPHA.

What each number covers (the report's paired-differences table says the same):
- the interval and p: the sampling of the test images, for the trained models held fixed (the
  seed-mean difference). The images are resampled one by one, as if independent: MTAN's
  preprocessed NYUv2 split records no scene ids, so frames of one scene (which are correlated)
  cannot be resampled together, and the interval is likely too narrow;
- the seed spread: training randomness (one model per seed) on the fixed test split;
- neither covers the other, nor the correlation of frames of one scene.

Every interval is of the trained models (protocol ``final``) with ``pixel`` averaging
(TESTED_PROTOCOL, TESTED_AVERAGING): that is what the per-image rows sum to. A number reported
under another protocol or averaging is not the tested one (mbmt.reporting.tables marks only
tested numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from mbmt.errors import MbmtError
from mbmt.metrics import PER_IMAGE_KEYS, SUMMABLE_METRICS, metrics_from_sums

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # family-wise error rate of the Holm-corrected significance
# What the per-image rows give, and so what every interval tests (mbmt.evaluation.protocol).
TESTED_PROTOCOL = "final"
TESTED_AVERAGING = "pixel"

Rows = Mapping[str, np.ndarray]  # one per-image file: "index" and PER_IMAGE_KEYS of some tasks
K = TypeVar("K")


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
    """A difference (A - B, in the metric's unit, averaged over seeds), its 95 % interval over
    test-image resamples, its bootstrap p, and the spread of the per-seed differences."""

    difference: float
    low: float
    high: float
    seeds: int
    p: float  # two-sided bootstrap p of this comparison alone (bootstrap_p)
    seed_std: float | None = None  # sample std (ddof=1) of the per-seed differences; None with one seed
    samples: int | None = None  # bootstrap resamples
    p_holm: float | None = None  # Holm-adjusted over ``family`` comparisons; None: not adjusted (a family of one)
    family: int = 1

    @property
    def p_decisive(self) -> float:
        """The p that decides significance: Holm-adjusted where a family was corrected."""
        return self.p if self.p_holm is None else self.p_holm

    @property
    def significant(self) -> bool:
        return self.p_decisive < ALPHA


def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided p of "the difference is 0" from its bootstrap draws: twice the smaller fraction of
    draws at or beyond 0 on either side, each counted as (count + 1) / (draws + 1) so that a finite
    bootstrap never claims p = 0 (its smallest p is 2 / (B + 1)), capped at 1. This inverts the
    percentile interval: the (1 - p) percentile interval just reaches 0. NaN draws are left out,
    as the interval leaves them out."""
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return float("nan")
    below, above = int((finite <= 0).sum()), int((finite >= 0).sum())
    return min(1.0, 2 * (min(below, above) + 1) / (len(finite) + 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p, in the order given: sorted ascending, the i-th smallest (i from 1)
    becomes max over j <= i of min(1, (m - j + 1) p_(j)); a comparison is significant at family-wise
    level alpha when its adjusted p < alpha. Ties keep the given order (a stable sort), and a NaN p
    (no finite draw) stays NaN and is left out of m. No dependency offers Holm (scipy has only
    Benjamini–Hochberg); these are its few lines."""
    order = sorted((i for i, p in enumerate(p_values) if math.isfinite(p)), key=lambda i: p_values[i])
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_adjusted(intervals: Mapping[K, Interval]) -> dict[K, Interval]:
    """The intervals with their p Holm-adjusted over all of them (one family), in the same order."""
    adjusted = holm([interval.p for interval in intervals.values()])
    return {key: replace(interval, p_holm=p, family=len(intervals))
            for (key, interval), p in zip(intervals.items(), adjusted)}


def smallest_family_p(samples: int, family: int) -> float:
    """The smallest Holm-adjusted p a family can reach with ``samples`` resamples: family × 2 / (B + 1);
    at or above ALPHA, nothing can be significant."""
    return min(1.0, family * 2 / (samples + 1))


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
        per_seed = spread([p[key] for p in points])
        point = float(np.mean([p[key] for p in points]))
        intervals[key] = Interval(point, float(low), float(high), len(a), bootstrap_p(mean_draws),
                                  None if per_seed is None else per_seed.std, samples)
    return intervals


def merge_rows(parts: Sequence[Rows], label: str = "") -> dict[str, np.ndarray]:
    """One model's rows from several single-task models' rows of the same images (the ST-Nets)."""
    merged: dict[str, np.ndarray] = {}
    for rows in parts:
        if "index" in merged and not np.array_equal(merged["index"], rows["index"]):
            raise MbmtError(f"{label}: the single-task models' per-image files do not cover the same images")
        merged |= dict(rows)
    return merged
