"""The report's figures: training curves from the DVCLive logs, predictions beside the ground truth,
and each study's per-task changes and trade-off (numbers from mbmt.reporting.study).

Maps are coloured by mbmt.visual, so they look as `mbmt predict` draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mbmt.evaluation.protocol import read_curve
from mbmt.reporting.sources import Samples
from mbmt.tasks import HEADLINE_METRICS, TASK_ABBREVIATIONS, TASK_TITLES, TASKS

if TYPE_CHECKING:
    from mbmt.reporting.study import Bar, Point
from mbmt.visual import class_legend_handles, colorize_depth, colorize_normal, colorize_semantic


def training_curves(task: str, live_dirs: Mapping[str, Path], titles: Mapping[str, str], path: Path) -> None:
    """Training loss and the validation headline metric of ``task`` (mbmt.tasks.HEADLINE_METRICS) per
    epoch, one line per model."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    headline = HEADLINE_METRICS[task]
    panels = ((f"train/loss/{task}", f"training loss ({TASK_ABBREVIATIONS[task]})"),
              (headline.curve, f"validation {headline.axis}"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, (metric, ylabel) in zip(axes, panels):
        for name, live_dir in live_dirs.items():
            curve = read_curve(live_dir, metric)
            if curve is not None:
                ax.plot(*curve, marker="o" if len(curve[0]) < 30 else None, markersize=3, label=titles.get(name, name))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(f"Training curves: {TASK_TITLES[task]}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _depth_range(samples: Samples, index: int, predictions: Sequence[np.ndarray]) -> tuple[float, float]:
    """One colour scale per image: from 0 to the farthest valid ground-truth depth (or prediction)."""
    depth = samples.depth[index]
    valid = depth[depth > 0]
    far = float(valid.max()) if valid.size else max((float(p.max()) for p in predictions), default=1.0)
    return 0.0, max(far, 1e-3)


def _panel(ax, rgb: np.ndarray | None, title: str = "", note: str = "", caption: str = "") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if rgb is not None:
        ax.imshow(rgb, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=8)
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="white"
                if rgb is not None else "black")
    if caption:
        ax.set_xlabel(caption, fontsize=6)


def colour(task: str, array: np.ndarray, depth_range: tuple[float, float], predicted: bool = True) -> np.ndarray:
    """One map of ``task`` as (H, W, 3) uint8, coloured as `mbmt predict` colours it."""
    if task == "semantic":
        return colorize_semantic(array)
    if task == "depth":
        return colorize_depth(array, *depth_range, predicted=predicted)
    return colorize_normal(array)


def _ground_truth(samples: Samples, task: str, index: int) -> np.ndarray:
    return {"semantic": samples.semantic, "depth": samples.depth, "normal": samples.normal}[task][index]


def _legend(fig) -> None:
    fig.legend(handles=class_legend_handles(), loc="outside lower center", ncol=7, fontsize=7, frameon=False)


def qualitative(samples: Samples, predictions: Mapping[str, np.ndarray], model_title: str, path: Path) -> None:
    """Each image of ``samples`` in a row: RGB, then ground truth and prediction for every task."""
    import matplotlib.pyplot as plt

    n = len(samples)
    height, width = samples.image.shape[1:3]
    fig, axes = plt.subplots(n, 1 + 2 * len(TASKS), squeeze=False, layout="constrained",
                             figsize=(1.7 * (1 + 2 * len(TASKS)) * width / height, 1.7 * n + 0.9))
    for i in range(n):
        depth_range = _depth_range(samples, i, [predictions["depth"][i]])
        _panel(axes[i, 0], samples.image[i], "RGB" if i == 0 else "")
        for t, task in enumerate(TASKS):
            absent = samples.modalities.get(task) == "absent"
            truth = None if absent else colour(task, _ground_truth(samples, task, i), depth_range, predicted=False)
            _panel(axes[i, 1 + 2 * t], truth, f"{TASK_ABBREVIATIONS[task]} truth" if i == 0 else "",
                   "no ground truth" if absent else "")
            _panel(axes[i, 2 + 2 * t], colour(task, predictions[task][i], depth_range),
                   f"{TASK_ABBREVIATIONS[task]} predicted" if i == 0 else "")
    _legend(fig)
    fig.suptitle(f"{model_title} on {samples.split} images ({samples.source}); depth 0 m (dark) to the "
                 f"farthest true depth (yellow) per image; normals (x, y, z) as RGB", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def comparison(samples: Samples, rows: Sequence[tuple[str, Mapping[str, np.ndarray], Mapping[str, str]]],
               path: Path, index: int = 0) -> None:
    """Image ``index`` of ``samples``: the ground truth, then one row per model (its tasks only):
    (title, task -> predictions, task -> the caption under its panel, e.g. how far its training loss fell)."""
    import matplotlib.pyplot as plt

    height, width = samples.image.shape[1:3]
    depth_range = _depth_range(samples, index, [r["depth"][index] for _, r, _ in rows if "depth" in r])
    fig, axes = plt.subplots(1 + len(rows), 1 + len(TASKS), squeeze=False, layout="constrained",
                             figsize=(1.9 * (1 + len(TASKS)) * width / height, 1.6 * (1 + len(rows)) + 0.9))
    _panel(axes[0, 0], samples.image[index], "RGB")
    for t, task in enumerate(TASKS):
        absent = samples.modalities.get(task) == "absent"
        truth = None if absent else colour(task, _ground_truth(samples, task, index), depth_range, predicted=False)
        _panel(axes[0, 1 + t], truth, f"{TASK_ABBREVIATIONS[task]} truth", "no ground truth" if absent else "")
    for r, (title, predictions, captions) in enumerate(rows, start=1):
        _panel(axes[r, 0], None, note=title)
        for t, task in enumerate(TASKS):
            rgb = colour(task, predictions[task][index], depth_range) if task in predictions else None
            _panel(axes[r, 1 + t], rgb, caption=captions.get(task, "") if task in predictions else "")
    _legend(fig)
    # A short training (the CPU demo's) may leave a model's prediction still noise: the loss under
    # each panel says whether it learned the task, so such a row does not read as a bug.
    fig.suptitle(f"Every model on {samples.split} image {index} ({samples.source}); under each prediction: the "
                 "model's training loss of the task, first -> last epoch (a loss that barely fell: not yet "
                 "learned in this training)", fontsize=8, wrap=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _variant_colours(variants: Sequence[str]) -> dict[str, tuple]:
    """One colour per variant, the same in every panel (tab20 beyond 10 variants, so none repeats)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {variant: cmap(i % cmap.N) for i, variant in enumerate(variants)}


def study_task_changes(name: str, bars: Sequence[Bar], titles: Mapping[str, str], path: Path) -> None:
    """One panel per multi-task model, one group of bars per variant, one bar per task: the per-task
    Δm against the same variant's single-task models, the sample std over the seeds as error bars."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(bar.model for bar in bars))
    variants = list(dict.fromkeys(bar.variant for bar in bars))
    tasks = [task for task in TASKS if any(bar.task == task for bar in bars)]
    width = 0.8 / len(tasks)
    fig, axes = plt.subplots(len(models), 1, squeeze=False, layout="constrained",
                             figsize=(max(6.0, 1.5 + 0.6 * len(variants)), 0.6 + 2.8 * len(models)))
    for ax, model in zip(axes[:, 0], models):
        for t, task in enumerate(tasks):
            found = {bar.variant: bar for bar in bars if bar.model == model and bar.task == task}
            xs = [v + (t - (len(tasks) - 1) / 2) * width for v, variant in enumerate(variants) if variant in found]
            heights = [found[variant].mean for variant in variants if variant in found]
            errors = [found[variant].std or 0.0 for variant in variants if variant in found]
            ax.bar(xs, heights, width, yerr=errors if any(errors) else None, capsize=2,
                   label=f"{TASK_ABBREVIATIONS[task]} ({TASK_TITLES[task]})")
        ax.axhline(0.0, color="black", linewidth=0.8)
        rotate = len(variants) > 5
        ax.set_xticks(range(len(variants)), variants, rotation=35 if rotate else 0, ha="right" if rotate else "center")
        ax.set_ylabel("per-task Δm (%)\n↓ better")
        ax.set_title(titles.get(model, model), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Study {name}: per-task Δm against the single-task models", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def study_tradeoff(name: str, points: Sequence[Point], tasks: tuple[str, str], titles: Mapping[str, str],
                   path: Path) -> None:
    """One panel per model: each variant at the mean of two tasks' headline metrics (large marker),
    its seeds as small markers of the same colour; one legend of the variants for every panel."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    x_metric, y_metric = (HEADLINE_METRICS[task] for task in tasks)
    models = list(dict.fromkeys(point.model for point in points))
    colours = _variant_colours(list(dict.fromkeys(point.variant for point in points)))
    fig, axes = plt.subplots(1, len(models), squeeze=False, layout="constrained",
                             figsize=(1.6 + 4.2 * len(models), 4.0))
    for ax, model in zip(axes[0], models):
        for point in (p for p in points if p.model == model):
            colour_ = colours[point.variant]
            ax.scatter([np.mean(point.x)], [np.mean(point.y)], s=60, color=colour_, zorder=3,
                       edgecolors="black", linewidths=0.5)
            if len(point.x) > 1:
                ax.scatter(point.x, point.y, s=12, alpha=0.5, color=colour_, zorder=2)
        ax.set_xlabel(f"{TASK_ABBREVIATIONS[x_metric.task]} {x_metric.label} ({_better(x_metric.higher_is_better)})")
        ax.set_ylabel(f"{TASK_ABBREVIATIONS[y_metric.task]} {y_metric.label} ({_better(y_metric.higher_is_better)})")
        ax.set_title(titles.get(model, model), fontsize=9)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=v) for v, c in colours.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    fig.suptitle(f"Study {name}: {TASK_TITLES[x_metric.task]} against {TASK_TITLES[y_metric.task]}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _better(higher_is_better: bool) -> str:
    return "↑ better" if higher_is_better else "↓ better"
