"""The three dense tasks and their metrics: the one catalogue every table, figure, curve and
progress line reads; head widths and NYUv2's 13 classes (MTAN conventions)."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("semantic", "depth", "normal")

# The paper's abbreviations, used in reports.
TASK_ABBREVIATIONS = {"semantic": "SS", "depth": "DE", "normal": "SNP"}
# What the report's figures call each task.
TASK_TITLES = {"semantic": "semantic segmentation", "depth": "depth", "normal": "surface normals"}

TASK_CHANNELS = {"semantic": 13, "depth": 1, "normal": 3}

NUM_CLASSES = 13
IGNORE_LABEL = -1

# Order of MTAN's labels 0..12 (NYUv2 13-class set of Handa et al.; label PNG value minus 1).
CLASS_NAMES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)


@dataclass(frozen=True)
class Metric:
    """A metric of the metrics JSON ({task: {key: value}}, mbmt.metrics computes it in the paper's
    units) and of the logged validation curves (val/<task>/<key>), and how the report shows it."""

    task: str
    key: str
    name: str  # the paper's row label without its unit, e.g. "mIoU"
    unit: str  # the unit the paper's label shows ("" for the losses and the relative error)
    higher_is_better: bool
    digits: int  # the paper's precision
    words: str  # what a curve's axis calls it, e.g. "abs error"
    headline: bool = False  # the task's metric the paper leads with (one per task)

    @property
    def label(self) -> str:
        """The paper's row label, e.g. "mIoU (%)"."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def axis(self) -> str:
        """A curve's axis label, e.g. "abs error (m)"."""
        return f"{self.words} ({self.unit})" if self.unit else self.words

    @property
    def curve(self) -> str:
        """The logged validation curve (DVCLive's metric name; its file is <curve>.tsv)."""
        return f"val/{self.task}/{self.key}"


# Every metric, in the paper's row order (its results table; mbmt.paper's relative improvements
# follow it).
METRICS = (
    Metric("semantic", "loss", "SS loss", "", False, 4, "loss"),
    Metric("semantic", "miou", "mIoU", "%", True, 2, "mIoU", headline=True),
    Metric("semantic", "pix_acc", "Pixel acc", "%", True, 2, "pixel accuracy"),
    Metric("depth", "loss", "DE loss", "", False, 4, "loss"),
    Metric("depth", "abs_err", "Abs err", "m", False, 4, "abs error", headline=True),
    Metric("depth", "rel_err", "Rel err", "", False, 4, "relative error"),
    Metric("normal", "loss", "SNP loss", "", False, 4, "loss"),
    Metric("normal", "mean", "Mean angle", "deg", False, 4, "mean angle error", headline=True),
    Metric("normal", "median", "Median angle", "deg", False, 4, "median angle error"),
    Metric("normal", "within_11_25", "< 11.25 deg", "%", True, 2, "pixels within 11.25 deg"),
    Metric("normal", "within_22_5", "< 22.5 deg", "%", True, 2, "pixels within 22.5 deg"),
    Metric("normal", "within_30", "< 30 deg", "%", True, 2, "pixels within 30 deg"),
)
# Each task's headline metric, in TASKS order.
HEADLINE_METRICS = {m.task: m for m in METRICS if m.headline}


def metric(task: str, key: str) -> Metric:
    """The catalogue's entry of ``task``'s metric ``key``."""
    for entry in METRICS:
        if (entry.task, entry.key) == (task, key):
            return entry
    raise KeyError(f"{task}/{key}: not a metric of mbmt.tasks.METRICS")
