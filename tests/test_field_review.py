"""Review findings of the field's survey (issue 24): the GPU claim reads the job's own params, and
a study table says when no comparison can reach significance after Holm's correction."""

from __future__ import annotations

import argparse

import yaml

from mbmt import cli
from test_studies import REPO


def test_gpu_claim_reads_the_study_jobs_device(tmp_path, monkeypatch):
    """A study variant on train.device cpu (and another weighting: its own job) claims no GPU, though
    the main models train on auto."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    preset = tmp_path / "study.yaml"
    preset.write_text(yaml.safe_dump({"studies": {"where": {
        "baseline": "gpu", "models": ["mtnet"],
        "variants": {"gpu": {"train": {"device": "auto"}}, "cpu": {"train": {"device": "cpu", "weighting": "equal"}}}}}}))
    asked = []
    monkeypatch.setattr("mbmt.gpus.place", lambda stage, device, **_: asked.append((stage, device)))
    for model in ("mtnet", "mtnet-where-cpu"):
        args = argparse.Namespace(stage="train", params=[str(params), str(preset)], model=model)
        cli.gpu_claim(args)
    assert asked == [("train", "auto"), ("train", "cpu")]


def test_study_tables_say_when_no_mark_can_be_reached():
    """Two comparisons at 2000 resamples can reach p (Holm) = 4/2001 < 0.05: no note. At 50 resamples
    the smallest reachable p is 2 x 2 / 51 = 0.0784 >= 0.05: both study tables say so and how many
    resamples would do (above 2 x 2 / 0.05 - 1 = 79)."""
    import numpy as np

    from mbmt.reporting.study import study_intervals, study_paired_table, study_table

    study = {"baseline": "a", "models": ["mtnet"], "variants": {"a": {}, "b": {}}}
    members = {"a": {"st_de": "st_de", "mtnet": "mtnet"}, "b": {"st_de": "st_de", "mtnet": "mtnet-s-b"}}
    rng = np.random.default_rng(0)
    base = {"index": np.arange(20), "depth_abs_sum": 50 + rng.random(20), "depth_rel_sum": 20 + rng.random(20),
            "depth_count": np.full(20, 100.0)}
    better = {**base, "depth_abs_sum": base["depth_abs_sum"] - 10.0}
    metrics = {job: [{"depth": {"abs_err": value, "rel_err": 0.2}, "context": {"protocol": "final",
                                                                            "averaging": "pixel"}}]
               for job, value in (("st_de", 0.5), ("mtnet", 0.5), ("mtnet-s-b", 0.4))}
    note = "no comparison can be significant over a family of 2"
    for samples, expected in ((2000, None), (50, "smallest Holm-adjusted p is 2 × 2 / (50 + 1) = 0.0784; raise "
                                                 "report.bootstrap.samples above 79.")):
        intervals = study_intervals(members, {"mtnet": [base], "mtnet-s-b": [better]}, "a", ["mtnet"],
                                    {"samples": samples, "seed": 0})
        for table in (study_table("s", study, members, metrics, intervals, single_task=["st_de"]),
                      study_paired_table("s", intervals)):
            notes = " ".join(table.notes)
            if expected is None:
                assert note not in notes
            else:
                assert f"With 50 resamples {note}: the {expected}" in notes, table.name
