"""The benchmark's estimate of the full protocol: per-model training time and the DAG's wall time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from protocol_estimate import ModelSpeed, dag_seconds, duration, profile_gpu_memory, training_seconds  # noqa: E402

PAPER = {"epochs": 200, "batch_size": 2, "steps_per_epoch": None, "val_every": 1}


def test_training_time_of_the_paper_protocol():
    speed = ModelSpeed(step_s=0.02, val_image_s=0.001, extras_s=0.5)
    # 398 steps of 2 images (795 = 397 x 2 + 1), 200 epochs, a 654-image validation after each.
    assert training_seconds(speed, PAPER) == pytest.approx(200 * (398 * 0.02 + 0.5) + 200 * 654 * 0.001)
    capped = dict(PAPER, steps_per_epoch=10, val_every=50)
    assert training_seconds(speed, capped) == pytest.approx(200 * (10 * 0.02 + 0.5) + 4 * 654 * 0.001)
    assert training_seconds(speed, dict(PAPER, val_every=0)) == pytest.approx(200 * (398 * 0.02 + 0.5))


TRAININGS = {"a": 10.0, "b": 10.0, "c": 10.0, "d": 5.0}
EVALUATIONS = dict.fromkeys(TRAININGS, 1.0)
INIT_FROM = {"d": ["a", "b"]}


def test_one_job_at_a_time_is_the_sum():
    assert dag_seconds(TRAININGS, EVALUATIONS, INIT_FROM) == pytest.approx(39.0)


def test_jobs_sharing_the_gpu_wait_for_memory_and_for_init_from():
    # Two trainings fit: a, b run 0-10; then c and d (d needed a and b) 10-20 and 10-15; the
    # evaluations of a, b, d run one after the other in d's place (15-18); c's 20-21.
    assert dag_seconds(TRAININGS, EVALUATIONS, INIT_FROM, 32, {"train": 16, "evaluate": 16}) == pytest.approx(21.0)
    # Half the memory per evaluation: a's and b's run together (15-16), then d's (16-17).
    assert dag_seconds(TRAININGS, EVALUATIONS, INIT_FROM, 32, {"train": 16, "evaluate": 8}) == pytest.approx(21.0)
    # Sharing slows every job by 1.5x: a, b 0-15; c, d 15-30 and 15-22.5; evaluations of a, b
    # 22.5-24; d's 24-25.5; c's 30-31.5.
    assert dag_seconds(TRAININGS, EVALUATIONS, INIT_FROM, 32, {"train": 16, "evaluate": 8},
                       slowdown=1.5) == pytest.approx(31.5)
    with pytest.raises(ValueError, match="requests 16"):
        dag_seconds(TRAININGS, EVALUATIONS, INIT_FROM, 8, {"train": 16, "evaluate": 8})


def test_the_default_profile_shares_the_gpu(tmp_path):
    memory, requests = profile_gpu_memory(REPO / "profiles" / "default" / "config.yaml")
    assert memory is not None and memory >= 2 * requests["train"], "several trainings at once"
    plain = tmp_path / "config.yaml"
    plain.write_text("cores: all\nresources:\n  - gpu=1\n")
    assert profile_gpu_memory(plain) == (None, {"train": 1.0, "evaluate": 1.0})


def test_duration_is_hours_minutes_seconds():
    assert duration(3 * 3600 + 7 * 60 + 5.4) == "3:07:05"
    assert duration(59.6) == "0:01:00"


def test_the_benchmark_measures_a_studys_jobs():
    """--study: every job of the preset's variants, in DAG order."""
    import bench_training

    params = bench_training.benchmark_params("tiny", 1, 0, "cpu", study=REPO / "config" / "studies" / "weighting.yaml")
    jobs = bench_training.study_jobs(params)
    assert jobs[:5] == ["st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial"]
    assert {"mtnet-weighting-equal", "mbmt_partial-weighting-pcgrad"} <= set(jobs) and "mtan" not in jobs
