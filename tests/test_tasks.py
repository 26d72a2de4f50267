"""The catalogue of tasks and metrics (mbmt.tasks) and the places that read it rather than repeat it."""

from __future__ import annotations

import pytest

from mbmt import paper
from mbmt.tasks import HEADLINE_METRICS, METRICS, TASKS, metric


def test_the_catalogue_is_the_papers_twelve_metrics_with_one_headline_per_task():
    published = {(task, key) for task, block in paper.RESULTS["mbmt_partial"].items() for key in block}
    assert {(m.task, m.key) for m in METRICS} == published
    assert [m.task for m in METRICS] == sorted((m.task for m in METRICS), key=TASKS.index)  # grouped by task
    assert len(METRICS) == len(published) == 12
    assert list(HEADLINE_METRICS) == list(TASKS)
    assert {task: m.key for task, m in HEADLINE_METRICS.items()} == {"semantic": "miou", "depth": "abs_err",
                                                                      "normal": "mean"}
    assert metric("depth", "abs_err").label == "Abs err (m)" and metric("depth", "rel_err").label == "Rel err"
    with pytest.raises(KeyError, match="depth/miou"):
        metric("depth", "miou")


def test_the_published_improvements_have_a_column_per_catalogued_metric():
    """mbmt.paper's relative improvements: trainable and total parameters, then METRICS in order."""
    for row in paper.RELATIVE_IMPROVEMENTS.values():
        assert len(row) == 2 + len(METRICS)


def test_curves_figures_and_the_progress_line_read_the_headline_metrics():
    from mbmt.dvc_yaml import CURVES
    from mbmt.training.live import describe_epoch

    for task, headline in HEADLINE_METRICS.items():
        title, curve, column = CURVES[task]
        assert curve == f"val/{task}/{headline.key}.tsv" and column == headline.key
        assert title.endswith(headline.axis)
    record = {"train/loss/total": 1.0, "train/loss/semantic": 0.5, "train/lr": 1e-4, "train/images_per_second": 2.0,
              **{f"val/{m.task}/{m.key}": 1.0 for m in METRICS}}
    line = describe_epoch("mtnet", 0, 2, record)
    assert line.endswith("; val semantic/miou 1, depth/abs_err 1, normal/mean 1")
